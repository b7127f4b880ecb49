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
    ratings: Grouped  # gold.ratings by user: movie_id, rating
    raters: Grouped  # gold.ratings by movie: user_id, rating
    events: Grouped  # the stream's bronze.rating_events (latest per pair) by user: movie_id, rating
    event_raters: Grouped  # the same by movie: user_id, rating
    recommendations: Grouped  # by user: movie_id, score, updated_at (µs), model (into list_models), by rank
    list_models: list[str]
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
        grouped = (self.ratings, self.raters, self.events, self.event_raters, self.recommendations, self.similar,
                   self.neighbours)
        return sum(g.nbytes for g in grouped) + self.item_vectors.nbytes + self.index.nbytes

    def user_ratings(self, user_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids, ratings) of the user: gold's, with the stream's events over them (newer)."""
        return _merged(self.ratings, self.events, user_id, "movie_id")

    def movie_raters(self, movie_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(user ids, ratings) of the movie, the same way."""
        return _merged(self.raters, self.event_raters, movie_id, "user_id")

    def known_user(self, user_id: int) -> bool:
        return user_id in self.ratings or user_id in self.events or user_id in self.recommendations

    def times_listed(self, movie_id: int) -> int:
        i = int(np.searchsorted(self.listed_ids, movie_id))
        return int(self.listed_counts[i]) if i < len(self.listed_ids) and self.listed_ids[i] == movie_id else 0

    def item_vector(self, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of ids in the item space, their unit vectors)."""
        at = np.searchsorted(self.item_ids, movie_ids)
        at = np.clip(at, 0, max(len(self.item_ids) - 1, 0))
        known = (self.item_ids[at] == movie_ids) if len(self.item_ids) else np.zeros(len(movie_ids), bool)
        return known, self.item_vectors[at[known]]


def _merged(base: Grouped, newer: Grouped, key: int, other: str) -> tuple[np.ndarray, np.ndarray]:
    ids, values = base.get(key, other), base.get(key, "rating")
    new_ids = newer.get(key, other)
    if not len(new_ids):
        return ids, values
    keep = ~np.isin(ids, new_ids)
    return np.concatenate([ids[keep], new_ids]), np.concatenate([values[keep], newer.get(key, "rating")])


def current_versions(warehouse: Path) -> dict[str, int]:
    """Each served table's newest Delta version, from log listings only: the refresh's poll."""
    found = {}
    for table in SERVED:
        version = delta_tables.latest_version(delta_tables.table_path(warehouse, table.name))
        if version is not None:
            found[table.name] = version
    return found


def load(warehouse: Path, previous: Catalog | None = None) -> Catalog:
    """Read the served tables into a new Catalog. A part whose tables have the version the
    previous snapshot holds is reused, not read again: a stream batch (new rating events, a
    fold-in's MERGE) re-reads those two tables, not the ratings or the movies. Raises NotReady
    when a required table is missing."""
    started = time.monotonic()
    versions: dict[str, int] = {}
    now = current_versions(warehouse)

    def read(table: tables.Table, columns: tuple[str, ...]) -> pa.Table | None:
        got = delta_tables.read(warehouse, table.name, columns)
        if got is None:
            if table in REQUIRED:
                raise NotReady(f"{table.name} does not exist yet: run `make run` (or the stage that writes it)")
            return None
        versions[table.name] = got.version
        return got.data

    def unchanged(*parts: tables.Table) -> bool:
        """The previous snapshot holds these tables at their newest version: its part is reused."""
        if previous is None or any(now.get(t.name) != previous.versions.get(t.name) for t in parts):
            return False
        versions.update({t.name: previous.versions[t.name] for t in parts if t.name in previous.versions})
        return True

    fields: dict[str, object] = {}
    if unchanged(tables.GOLD_MOVIES):
        fields.update(movies=previous.movies, index=previous.index, cold_start=previous.cold_start)
    else:
        movies = _movies(read(tables.GOLD_MOVIES, ("movie_id", "title", "release_year", "genres", "rating_count",
                                                    "rating_mean", "bayesian_rating")))
        order = np.lexsort((-movies.rating_count, -movies.bayesian_rating))
        fields.update(movies=movies, index=TitleIndex.build(movies), cold_start=movies.ids[order[:100]])

    if unchanged(tables.GOLD_RATINGS):
        fields.update(ratings=previous.ratings, raters=previous.raters)
    else:
        gold = read(tables.GOLD_RATINGS, ("user_id", "movie_id", "rating"))
        fields.update(ratings=Grouped.build(gold, "user_id", [("movie_id", "ascending")]),
                      raters=Grouped.build(gold, "movie_id", [("user_id", "ascending")]))

    if unchanged(tables.RATING_EVENTS):
        fields.update(events=previous.events, event_raters=previous.event_raters)
    else:
        events = _latest_events(read(tables.RATING_EVENTS, ("user_id", "movie_id", "rating", "rated_at")))
        fields.update(events=Grouped.build(events, "user_id", [("movie_id", "ascending")]),
                      event_raters=Grouped.build(events, "movie_id", [("user_id", "ascending")]))

    if unchanged(tables.RECOMMENDATIONS):
        for name in ("recommendations", "list_models", "listed_ids", "listed_counts", "model_name", "model_version", "run_id",
                     "updated_at"):
            fields[name] = getattr(previous, name)
    else:
        recs = read(tables.RECOMMENDATIONS, ("user_id", "movie_id", "rank", "score", "model_name", "model_version",
                                             "run_id", "updated_at"))
        listed = np.unique(recs.column("movie_id").to_numpy(), return_counts=True)
        # Each list's model (the champion's, or the fold-in's cold-start list), as a small code.
        models = pc.dictionary_encode(recs.column("model_name").fill_null("")).combine_chunks()
        newest = pc.max(recs.column("updated_at")).as_py() if recs.num_rows else None
        fields.update(
            recommendations=Grouped.build(recs.select(["user_id", "movie_id", "rank", "score", "updated_at"])
                                          .append_column("model", models.indices.cast(pa.int32())),
                                          "user_id", [("rank", "ascending")]),
            list_models=[str(x) for x in models.dictionary.to_pylist()],
            listed_ids=listed[0], listed_counts=listed[1],
            updated_at=newest.replace(tzinfo=timezone.utc) if newest is not None and newest.tzinfo is None else newest,
        )
        fields["model_name"], fields["model_version"], fields["run_id"] = _champion(recs)

    if unchanged(tables.ITEM_FACTORS) and previous.model_name == fields["model_name"]:
        fields.update(item_ids=previous.item_ids, item_vectors=previous.item_vectors)
    else:
        fields["item_ids"], fields["item_vectors"] = _item_space(
            read(tables.ITEM_FACTORS, ("model_name", "movie_id", "features")), fields["model_name"])

    if unchanged(tables.SIMILAR_MOVIES):
        fields["similar"] = previous.similar
    else:
        fields["similar"] = _grouped_or_empty(read(tables.SIMILAR_MOVIES, ("movie_id", "similar_movie_id", "rank",
                                                                          "similarity")),
                                              "movie_id", ("similar_movie_id", "similarity"), "rank")
    if unchanged(tables.USER_SIMILARITY):
        fields["neighbours"] = previous.neighbours
    else:
        fields["neighbours"] = _grouped_or_empty(read(tables.USER_SIMILARITY, ("user_id", "neighbour_id", "rank",
                                                                              "similarity", "co_rated")),
                                                 "user_id", ("neighbour_id", "similarity", "co_rated"), "rank")
    if unchanged(tables.MOVIES, tables.INGEST_LOG):
        fields.update(known_movies=previous.known_movies, scale=previous.scale)
    else:
        fields["known_movies"] = np.unique(read(tables.MOVIES, ("movie_id",)).column("movie_id").to_numpy())
        names = sorted(set(read(tables.INGEST_LOG, ("dataset",)).column("dataset").to_pylist()))
        if len(names) != 1:
            raise NotReady(f"bronze holds {len(names)} datasets ({names}); the API serves exactly one")
        fields["scale"] = get_dataset(names[0]).scale
    return Catalog(**fields, versions=versions, load_seconds=time.monotonic() - started)


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


def _latest_events(events: pa.Table | None) -> pa.Table:
    """The stream's events, the latest per (user, movie) (an empty table when there are none)."""
    schema = pa.schema([("user_id", pa.int32()), ("movie_id", pa.int32()), ("rating", pa.float64())])
    if events is None or not events.num_rows:
        return schema.empty_table()
    users = events.column("user_id").to_numpy().astype(np.int64)
    movies = events.column("movie_id").to_numpy().astype(np.int64)
    at = pc.cast(events.column("rated_at"), pa.timestamp("us")).cast(pa.int64()).fill_null(0).to_numpy()
    order = np.lexsort((at, movies, users))  # per pair, the latest last
    pair = users[order] * (1 << 32) + movies[order]
    last = np.append(pair[1:] != pair[:-1], True)
    return events.take(pa.array(order[last])).select(["user_id", "movie_id", "rating"]).cast(schema)


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
