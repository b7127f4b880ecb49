"""A small lakehouse for the API's tests: the tables the API serves, written as real Delta tables
with delta-rs (no Spark), with the column types the Spark server writes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from api.delta_tables import table_path

# Titles chosen for the search cases (typos, accents, articles, years) and an ambiguous title.
TITLES = [
    ("Toy Story", 1995, ["Animation", "Children", "Comedy"]),
    ("Toy Story 2", 1999, ["Animation", "Children", "Comedy"]),
    ("Godfather, The", 1972, ["Crime", "Drama"]),
    ("Godfather: Part II, The", 1974, ["Crime", "Drama"]),
    ("Star Wars", 1977, ["Action", "Adventure", "Sci-Fi"]),
    ("Star Trek: First Contact", 1996, ["Action", "Sci-Fi"]),
    ("Star Maps", 1997, ["Drama"]),
    ("Amélie", 2001, ["Comedy", "Romance"]),
    ("Matrix, The", 1999, ["Action", "Sci-Fi", "Thriller"]),
    ("Matrix Reloaded, The", 2003, ["Action", "Sci-Fi"]),
    ("Hamlet", 1990, ["Drama"]),
    ("Hamlet", 1996, ["Drama"]),
    ("Alien", 1979, ["Horror", "Sci-Fi"]),
    ("Aliens", 1986, ["Action", "Horror", "Sci-Fi"]),
]
FILLER_WORDS = ["river", "night", "summer", "city", "garden", "winter", "road", "house", "ocean", "mountain"]
USERS = 60
TOP_N = 10
RANK = 4
T0 = datetime(2020, 1, 1, tzinfo=timezone.utc)


def movie_rows() -> list[tuple[str, int, list[str]]]:
    filler = [(f"{a.title()} {b.title()}", 1980 + i % 30, ["Drama"])
              for i, (a, b) in enumerate((a, b) for a in FILLER_WORDS for b in FILLER_WORDS if a != b)][:46]
    return TITLES + filler


def write(table: str, home: Path, data: pa.Table, mode: str = "overwrite") -> None:
    write_deltalake(str(table_path(home / "warehouse", table)), data, mode=mode)


def ts(values) -> pa.Array:
    return pa.array(values, pa.timestamp("us", tz="UTC"))


def build(home: Path, seed: int = 7) -> dict:
    """Write every served table into <home>/warehouse; returns what the tests check against."""
    rng = np.random.default_rng(seed)
    movies = movie_rows()
    ids = np.arange(1, len(movies) + 1, dtype=np.int32)
    users = np.arange(1, USERS + 1, dtype=np.int32)
    # Every user rates 12 movies; popular movies (low ids) more often.
    weights = 1.0 / np.arange(1, len(ids) + 1)
    pairs = [(u, int(m)) for u in users for m in rng.choice(ids, 12, replace=False, p=weights / weights.sum())]
    ratings = pa.table({
        "user_id": pa.array([u for u, _ in pairs], pa.int32()),
        "movie_id": pa.array([m for _, m in pairs], pa.int32()),
        "rating": pa.array(rng.integers(1, 6, len(pairs)).astype(float), pa.float64()),
        "rated_at": ts([T0 + timedelta(minutes=i) for i in range(len(pairs))]),
    })
    counts = np.bincount(ratings.column("movie_id").to_numpy(), minlength=len(ids) + 1)[1:]
    sums = np.bincount(ratings.column("movie_id").to_numpy(), weights=ratings.column("rating").to_numpy(),
                       minlength=len(ids) + 1)[1:]
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    write("gold.movies", home, pa.table({
        "movie_id": pa.array(ids, pa.int32()),
        "title": [t for t, _, _ in movies],
        "release_year": pa.array([y for _, y, _ in movies], pa.int32()),
        "genres": pa.array([g for _, _, g in movies], pa.list_(pa.string())),
        "rating_count": pa.array(counts, pa.int64()),
        "rating_mean": pa.array([None if np.isnan(x) else x for x in mean], pa.float64()),
        "bayesian_rating": pa.array((sums + 10 * 3.5) / (counts + 10), pa.float64()),
    }))
    write("gold.ratings", home, ratings)
    write("bronze.movies", home, pa.table({"movie_id": pa.array(ids, pa.int32()), "title": [t for t, _, _ in movies]}))
    write("bronze.ingest_log", home, pa.table({"dataset": ["ml-100k"] * 3}))
    factors = rng.normal(size=(len(ids), RANK)).astype(np.float32)
    write("ml.item_factors", home, item_factors(ids, factors, "als-ranking", "1"))
    write("ml.recommendations", home, recommendations(ratings, ids, factors, "1", T0))
    similar = []
    for i, m in enumerate(ids):
        sims = factors @ factors[i]
        order = [j for j in np.argsort(-sims) if j != i][:TOP_N]
        similar += [(int(m), int(ids[j]), r + 1, float(sims[j])) for r, j in enumerate(order)]
    write("ml.similar_movies", home, pa.table({
        "movie_id": pa.array([s[0] for s in similar], pa.int32()),
        "similar_movie_id": pa.array([s[1] for s in similar], pa.int32()),
        "rank": pa.array([s[2] for s in similar], pa.int32()),
        "similarity": pa.array([s[3] for s in similar], pa.float64()),
    }))
    edges = [(int(u), int(v), r + 1, 0.9 - 0.1 * r, 3) for u in users
             for r, v in enumerate(x for x in rng.choice(users, 6, replace=False) if x != u) if r < 5]
    write("ml.user_similarity", home, pa.table({
        "user_id": pa.array([e[0] for e in edges], pa.int32()),
        "neighbour_id": pa.array([e[1] for e in edges], pa.int32()),
        "rank": pa.array([e[2] for e in edges], pa.int32()),
        "similarity": pa.array([e[3] for e in edges], pa.float64()),
        "co_rated": pa.array([e[4] for e in edges], pa.int64()),
    }))
    write("bronze.rating_events", home, rating_events([]))
    return {"ids": ids, "factors": factors, "ratings": ratings, "titles": [t for t, _, _ in movies]}


def item_factors(ids: np.ndarray, factors: np.ndarray, model_name: str, version: str) -> pa.Table:
    return pa.table({
        "model_name": [model_name] * len(ids), "model_version": [version] * len(ids),
        "movie_id": pa.array(ids, pa.int32()),
        "features": pa.array([list(map(float, f)) for f in factors], pa.list_(pa.float32())),
    })


def recommendations(ratings: pa.Table, ids: np.ndarray, factors: np.ndarray, version: str, at: datetime,
                    users: list[int] | None = None, user_vectors: np.ndarray | None = None) -> pa.Table:
    """Top-N unseen movies per user by a random user vector (the model is not what is tested)."""
    rng = np.random.default_rng(int(version))
    seen: dict[int, set[int]] = {}
    for u, m in zip(ratings.column("user_id").to_pylist(), ratings.column("movie_id").to_pylist()):
        seen.setdefault(u, set()).add(m)
    users = users if users is not None else sorted(seen)
    rows = []
    for i, u in enumerate(users):
        vector = user_vectors[i] if user_vectors is not None else rng.normal(size=factors.shape[1])
        scores = factors @ vector
        order = [j for j in np.argsort(-scores) if int(ids[j]) not in seen.get(u, set())][:TOP_N]
        rows += [(u, int(ids[j]), r + 1, float(scores[j])) for r, j in enumerate(order)]
    n = len(rows)
    return pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int32()), "movie_id": pa.array([r[1] for r in rows], pa.int32()),
        "rank": pa.array([r[2] for r in rows], pa.int32()), "score": pa.array([r[3] for r in rows], pa.float64()),
        "model_name": ["als-ranking"] * n, "model_version": [version] * n, "run_id": [f"run-{version}"] * n,
        "generated_at": ts([at] * n), "updated_at": ts([at] * n),
    })


def rating_events(rows: list[tuple[int, int, float, datetime]]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int32()), "movie_id": pa.array([r[1] for r in rows], pa.int32()),
        "rating": pa.array([r[2] for r in rows], pa.float64()), "rated_at": ts([r[3] for r in rows]),
    })
