"""One consistent, read-only snapshot of everything the API serves, held in NumPy arrays.

Built in full from the tables (one pinned Delta version each), then swapped in by `refresh.py`:
a request works on the snapshot it started with, so it never sees a half-loaded state. Per-user
and per-movie lists are CSR-style (sorted keys, offsets, flat value arrays): a few bytes per
rating, no Python object per row.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from api import delta_tables
from api.search import TitleIndex
from lakehouse import tables
from lakehouse.datasets import RatingScale, get_dataset

# The tables a snapshot reads; a new version of any of them triggers a rebuild.
SERVED = (tables.GOLD_MOVIES, tables.GOLD_RATINGS, tables.RATING_EVENTS, tables.RECOMMENDATIONS,
          tables.ITEM_FACTORS, tables.SIMILAR_MOVIES, tables.USER_SIMILARITY, tables.MOVIES, tables.INGEST_LOG)
REQUIRED = (tables.GOLD_MOVIES, tables.GOLD_RATINGS, tables.RECOMMENDATIONS, tables.MOVIES, tables.INGEST_LOG)


class NotReady(RuntimeError):
    """The lakehouse has no data to serve yet (the message says which table is missing)."""


@dataclass(frozen=True)
class Grouped:
    """Rows grouped by an integer key: rows of key k are values[start[i]:start[i+1]] for the i
    with keys[i] == k, in the order they were sorted in."""

    keys: np.ndarray
    starts: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def build(cls, data: pa.Table, key: str, order: Iterable[tuple[str, str]] = ()) -> Grouped:
        data = data.sort_by([(key, "ascending"), *order]) if data.num_rows else data
        keys_all = data.column(key).to_numpy(zero_copy_only=False).astype(np.int64)
        keys, starts = np.unique(keys_all, return_index=True)
        starts = np.append(starts, len(keys_all)).astype(np.int64)
        values = {name: _numpy(data.column(name)) for name in data.column_names if name != key}
        return cls(keys, starts, values)

    def span(self, key: int) -> slice | None:
        i = int(np.searchsorted(self.keys, key))
        if i < len(self.keys) and self.keys[i] == key:
            return slice(int(self.starts[i]), int(self.starts[i + 1]))
        return None

    def get(self, key: int, name: str) -> np.ndarray:
        at = self.span(key)
        return self.values[name][at] if at is not None else self.values[name][:0]

    def __contains__(self, key: int) -> bool:
        return self.span(key) is not None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.starts.nbytes + sum(v.nbytes for v in self.values.values())


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_timestamp(column.type):
        return pc.cast(column, pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy()
    if pa.types.is_integer(column.type):
        return column.fill_null(0).to_numpy().astype(np.int32 if pa.types.is_int32(column.type) else np.int64)
    if pa.types.is_floating(column.type):
        return column.to_numpy(zero_copy_only=False).astype(np.float32)
    return np.asarray(column.to_pylist(), dtype=object)


@dataclass(frozen=True)
class Movies:
    ids: np.ndarray  # sorted movie ids
    titles: list[str]
    years: np.ndarray  # 0 when unknown
    genres: list[tuple[str, ...]]
    rating_count: np.ndarray
    rating_mean: np.ndarray  # NaN without ratings
    bayesian_rating: np.ndarray

    def row(self, movie_id: int) -> int | None:
        i = int(np.searchsorted(self.ids, movie_id))
        return i if i < len(self.ids) and self.ids[i] == movie_id else None


@dataclass(frozen=True)
class Catalog:
    """The served snapshot. `versions`: each table's Delta version (absent: no such table)."""

    movies: Movies
    index: TitleIndex
    ratings: Grouped  # by user: movie_id, rating (gold.ratings and the stream's newer events)
    raters: Grouped  # by movie: user_id, rating
    recommendations: Grouped  # by user: movie_id, score, updated_at (µs), model_name, ordered by rank
    similar: Grouped  # by movie: similar_movie_id, similarity
    neighbours: Grouped  # by user: neighbour_id, similarity, co_rated
    item_ids: np.ndarray  # champion's item space: sorted movie ids and unit-length factors
    item_vectors: np.ndarray
    cold_start: np.ndarray  # movie ids, best first (Bayesian rating, then rating count)
    listed_ids: np.ndarray  # sorted movie ids in some user's list, and in how many lists
    listed_counts: np.ndarray
    scale: RatingScale
    known_movies: np.ndarray  # bronze.movies' ids: what the stream accepts ratings for
    model_name: str
    model_version: str
    run_id: str
    updated_at: datetime | None  # the newest recommendation's updated_at (stream fold-in or training)
    versions: dict[str, int]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    load_seconds: float = 0.0

    @property
    def nbytes(self) -> int:
        grouped = (self.ratings, self.raters, self.recommendations, self.similar, self.neighbours)
        return sum(g.nbytes for g in grouped) + self.item_vectors.nbytes + self.index.nbytes

    def times_listed(self, movie_id: int) -> int:
        i = int(np.searchsorted(self.listed_ids, movie_id))
        return int(self.listed_counts[i]) if i < len(self.listed_ids) and self.listed_ids[i] == movie_id else 0

    def item_vector(self, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of ids in the item space, their unit vectors)."""
        at = np.searchsorted(self.item_ids, movie_ids)
        at = np.clip(at, 0, max(len(self.item_ids) - 1, 0))
        known = (self.item_ids[at] == movie_ids) if len(self.item_ids) else np.zeros(len(movie_ids), bool)
        return known, self.item_vectors[at[known]]


def current_versions(warehouse: Path) -> dict[str, int]:
    """Each served table's newest Delta version, from log listings only: the refresh's poll."""
    found = {}
    for table in SERVED:
        version = delta_tables.latest_version(delta_tables.table_path(warehouse, table.name))
        if version is not None:
            found[table.name] = version
    return found


def load(warehouse: Path, previous: Catalog | None = None) -> Catalog:
    """Read the served tables into a new Catalog. The search index is reused when the movies
    did not change. Raises NotReady when a required table is missing."""
    started = time.monotonic()
    reads: dict[str, delta_tables.TableRead] = {}

    def read(table: tables.Table, columns: tuple[str, ...], where: str = "") -> pa.Table | None:
        got = delta_tables.read(warehouse, table.name, columns, where)
        if got is None:
            if table in REQUIRED:
                raise NotReady(f"{table.name} does not exist yet: run `make run` (or the stage that writes it)")
            return None
        reads[table.name] = got
        return got.data

    movies_data = read(tables.GOLD_MOVIES, ("movie_id", "title", "release_year", "genres", "rating_count",
                                             "rating_mean", "bayesian_rating"))
    movies = _movies(movies_data)
    if previous is not None and previous.versions.get(tables.GOLD_MOVIES.name) == reads[tables.GOLD_MOVIES.name].version:
        index = previous.index
    else:
        index = TitleIndex.build(movies)

    ratings = _latest_ratings(read(tables.GOLD_RATINGS, ("user_id", "movie_id", "rating", "rated_at")),
                              read(tables.RATING_EVENTS, ("user_id", "movie_id", "rating", "rated_at")))
    by_user = Grouped.build(ratings, "user_id", [("movie_id", "ascending")])
    by_movie = Grouped.build(ratings, "movie_id", [("rating", "descending"), ("user_id", "ascending")])

    recs = read(tables.RECOMMENDATIONS, ("user_id", "movie_id", "rank", "score", "model_name", "model_version",
                                         "run_id", "updated_at"))
    recommendations = Grouped.build(recs.select(["user_id", "movie_id", "rank", "score", "updated_at", "model_name"]),
                                    "user_id", [("rank", "ascending")])
    model_name, model_version, run_id = _champion(recs)
    listed = np.unique(recs.column("movie_id").to_numpy(), return_counts=True)
    newest = pc.max(recs.column("updated_at")).as_py() if recs.num_rows else None

    factors = read(tables.ITEM_FACTORS, ("model_name", "movie_id", "features"))
    item_ids, item_vectors = _item_space(factors, model_name)

    similar = read(tables.SIMILAR_MOVIES, ("movie_id", "similar_movie_id", "rank", "similarity"))
    neighbours = read(tables.USER_SIMILARITY, ("user_id", "neighbour_id", "rank", "similarity", "co_rated"))
    known = read(tables.MOVIES, ("movie_id",))
    datasets = read(tables.INGEST_LOG, ("dataset",))
    names = sorted(set(datasets.column("dataset").to_pylist()))
    if len(names) != 1:
        raise NotReady(f"bronze holds {len(names)} datasets ({names}); the API serves exactly one")

    order = np.lexsort((-movies.rating_count, -movies.bayesian_rating))
    return Catalog(
        movies=movies,
        index=index,
        ratings=by_user,
        raters=by_movie,
        recommendations=recommendations,
        similar=_grouped_or_empty(similar, "movie_id", ("similar_movie_id", "similarity"), "rank"),
        neighbours=_grouped_or_empty(neighbours, "user_id", ("neighbour_id", "similarity", "co_rated"), "rank"),
        item_ids=item_ids,
        item_vectors=item_vectors,
        cold_start=movies.ids[order[:100]],
        listed_ids=listed[0], listed_counts=listed[1],
        scale=get_dataset(names[0]).scale,
        known_movies=np.unique(known.column("movie_id").to_numpy()),
        model_name=model_name,
        model_version=model_version,
        run_id=run_id,
        updated_at=newest.replace(tzinfo=timezone.utc) if newest is not None and newest.tzinfo is None else newest,
        versions={name: got.version for name, got in reads.items()},
        load_seconds=time.monotonic() - started,
    )


def _movies(data: pa.Table) -> Movies:
    data = data.sort_by("movie_id")
    return Movies(
        ids=data.column("movie_id").to_numpy().astype(np.int64),
        titles=data.column("title").to_pylist(),
        years=data.column("release_year").fill_null(0).to_numpy().astype(np.int32),
        genres=[tuple(g or ()) for g in data.column("genres").to_pylist()],
        rating_count=data.column("rating_count").fill_null(0).to_numpy().astype(np.int64),
        rating_mean=data.column("rating_mean").to_numpy(zero_copy_only=False).astype(np.float64),
        bayesian_rating=data.column("bayesian_rating").to_numpy(zero_copy_only=False).astype(np.float64),
    )


def _latest_ratings(gold: pa.Table, events: pa.Table | None) -> pa.Table:
    """gold.ratings plus the stream's events dbt has not merged yet: the latest per (user, movie)."""
    parts = [gold.select(["user_id", "movie_id", "rating", "rated_at"])]
    if events is not None and events.num_rows:
        parts.append(events.select(["user_id", "movie_id", "rating", "rated_at"]).cast(parts[0].schema))
    both = pa.concat_tables(parts)
    if len(parts) == 1:
        return both.drop_columns(["rated_at"])
    users = both.column("user_id").to_numpy().astype(np.int64)
    movies = both.column("movie_id").to_numpy().astype(np.int64)
    at = pc.cast(both.column("rated_at"), pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy()
    order = np.lexsort((at, movies, users))  # per pair, the latest last
    pair = users[order] * (1 << 32) + movies[order]
    last = np.append(pair[1:] != pair[:-1], True)
    return both.take(pa.array(order[last])).drop_columns(["rated_at"])


def _champion(recs: pa.Table) -> tuple[str, str, str]:
    """The model most recommendations come from (fold-in cold-start rows aside)."""
    if not recs.num_rows:
        return "", "", ""
    counts = recs.group_by(["model_name", "model_version", "run_id"]).aggregate([("user_id", "count")])
    best = counts.sort_by([("user_id_count", "descending")]).slice(0, 1).to_pylist()[0]
    return str(best["model_name"] or ""), str(best["model_version"] or ""), str(best["run_id"] or "")


def _item_space(factors: pa.Table | None, model_name: str) -> tuple[np.ndarray, np.ndarray]:
    if factors is None or not factors.num_rows:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    mine = factors.filter(pc.equal(factors.column("model_name"), model_name))
    if not mine.num_rows:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    mine = mine.sort_by("movie_id")
    ids = mine.column("movie_id").to_numpy().astype(np.int64)
    flat = pc.list_flatten(mine.column("features")).to_numpy(zero_copy_only=False).astype(np.float32)
    vectors = flat.reshape(len(ids), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids, vectors / np.where(norms > 0, norms, 1.0)


def _grouped_or_empty(data: pa.Table | None, key: str, columns: tuple[str, ...], order: str) -> Grouped:
    if data is None:
        empty = {c: np.zeros(0, np.float32 if c == "similarity" else np.int64) for c in columns}
        return Grouped(np.zeros(0, np.int64), np.zeros(1, np.int64), empty)
    return Grouped.build(data.select([key, *columns, order]), key, [(order, "ascending")])
