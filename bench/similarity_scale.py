"""How the user similarity job scales: synthetic ratings for 10k and 100k users, end to end.

For each size the ratings are generated on the server (spark.range-based, nothing leaves it):
20-50 ratings per user, movie popularity Zipf-like (log-uniform ranks, so the most popular movie
draws a few percent of all ratings, as in MovieLens), and ten planted taste groups: half of a
user's picks come from the group's own genre, which the group rates higher. Then `lakehouse
similarity` runs on them with its defaults (ml.similarity_job) and the server's peak resident
memory (driver + JVM) is sampled throughout. Prints a table and writes
bench/results/similarity_scale.json.

It runs against the lakehouse server of the environment's settings; start one with its own data
directory and ports so a user's server is never touched:

    export LAKEHOUSE_HOME=/tmp/simbench LAKEHOUSE_THRIFT_PORT=10100 LAKEHOUSE_CONNECT_PORT=15100
    .venv/bin/lakehouse up
    .venv/bin/python bench/similarity_scale.py [--users 10000 100000]
    .venv/bin/lakehouse down
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.pipeline import PeakMemory  # noqa: E402
from lakehouse.console import console, table  # noqa: E402
from lakehouse.session import connect  # noqa: E402
from lakehouse.settings import load_settings  # noqa: E402
from lakehouse import delta  # noqa: E402
from ml.similarity_job import add_arguments, print_outcome, run_similarity  # noqa: E402

RESULTS = REPO / "bench" / "results" / "similarity_scale.json"
RATINGS_TABLE = "bench.similarity_ratings"
MOVIES_TABLE = "bench.similarity_movies"
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "War", "Western", "Animation")


# The printed table: one row per figure, one column per size.
FIGURES = (
    ("ratings", lambda r: f"{r['ratings']:,}"),
    ("candidate pairs", lambda r: f"{r['candidate_pairs']:,}"),
    ("edges (kNN rows)", lambda r: f"{r['edges']:,}"),
    ("users with a neighbour", lambda r: f"{r['users_covered'] / r['users']:.1%}"),
    ("communities", lambda r: f"{r['communities']:,}"),
    ("modularity", lambda r: f"{r['modularity']:.3f}"),
    ("label propagation iterations", lambda r: f"{r['label_propagation_iterations']}"),
    ("generate s", lambda r: f"{r['generate_s']:.1f}"),
    *((f"{stage} s", lambda r, stage=stage: f"{r['stage_seconds'][stage]:.1f}")
      for stage in ("load", "neighbours", "heatmap", "communities", "summary")),
    ("total s", lambda r: f"{r['total_s']:.1f}"),
    ("peak server RSS GiB", lambda r: f"{r['peak_server_rss_gib']:.2f}"),
)


def _uniform(*columns):
    """A deterministic uniform draw in [0, 1) from the hash of `columns`."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(*columns), F.lit(1_000_003)) / F.lit(1_000_003.0)


def synthetic_ratings(spark, users: int, movies: int, seed: int):
    """(user_id, movie_id, rating, rated_at): see the module docstring for the shape."""
    from pyspark.sql import functions as F

    groups = len(GENRES)
    seed_col = F.lit(seed)
    people = spark.range(1, users + 1).select(
        F.col("id").cast("int").alias("user_id"),
        F.pmod(F.xxhash64(seed_col, F.col("id"), F.lit("group")), F.lit(groups)).cast("int").alias("taste"),
        (20 + F.pmod(F.xxhash64(seed_col, F.col("id"), F.lit("count")), F.lit(31))).cast("int").alias("n"),
    )
    picks = people.select("user_id", "taste", F.explode(F.sequence(F.lit(1), F.col("n"))).alias("slot"))
    draw = _uniform(seed_col, F.col("user_id"), F.col("slot"), F.lit("movie"))
    popularity_rank = F.least(F.floor(F.pow(F.lit(float(movies)), draw)), F.lit(movies)).cast("int")  # P(rank) ~ 1/rank
    own_genre = _uniform(seed_col, F.col("user_id"), F.col("slot"), F.lit("own")) < 0.5
    # Movie m has genre (m - 1) % groups: snap the rank to the nearest movie of the user's genre.
    snapped = F.least(F.floor((F.col("rank") - 1) / groups) * groups + F.col("taste") + 1, F.lit(movies)).cast("int")
    chosen = picks.withColumn("rank", popularity_rank).select(
        "user_id", "taste", F.when(own_genre, snapped).otherwise(F.col("rank")).alias("movie_id"), "slot"
    )
    quality = F.pmod(F.xxhash64(seed_col, F.col("movie_id"), F.lit("quality")), F.lit(3)) + 2  # 2..4
    affinity = F.when(F.pmod(F.col("movie_id") - 1, F.lit(groups)) == F.col("taste"), 1).otherwise(-1)
    noise = F.floor(_uniform(seed_col, F.col("user_id"), F.col("slot"), F.lit("noise")) * 3) - 1  # -1, 0, 1
    rating = F.least(F.greatest(quality + affinity + noise, F.lit(1)), F.lit(5)).cast("double")
    rated = chosen.select("user_id", "movie_id", rating.alias("rating"))
    # A user who drew the same movie twice rated it once.
    once = rated.groupBy("user_id", "movie_id").agg(F.max("rating").alias("rating"))
    rated_at = F.lit("2020-01-01 00:00:00").cast("timestamp")
    return once.select("user_id", "movie_id", "rating", rated_at.alias("rated_at"))


def synthetic_movies(spark, movies: int):
    """(movie_id, genres): one genre per movie, cycling through GENRES."""
    from pyspark.sql import functions as F

    names = F.array(*(F.lit(g) for g in GENRES))
    return spark.range(1, movies + 1).select(
        F.col("id").cast("int").alias("movie_id"),
        F.array(F.element_at(names, (F.pmod(F.col("id") - 1, F.lit(len(GENRES))) + 1).cast("int"))).alias("genres"),
    )


def one_size(spark, settings, users: int, seed: int, flags: list[str]) -> dict:
    movies = max(1000, users // 10)
    console.rule(f"[bold]{users:,} users, {movies:,} movies")
    started = time.monotonic()
    spark.sql("create schema if not exists bench")
    delta.replace(synthetic_ratings(spark, users, movies, seed), RATINGS_TABLE)
    delta.replace(synthetic_movies(spark, movies), MOVIES_TABLE)
    generate_s = time.monotonic() - started
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--ratings-table", RATINGS_TABLE, "--movies-table", MOVIES_TABLE, *flags])
    with PeakMemory(settings) as memory:
        started = time.monotonic()
        outcome = run_similarity(spark, settings, args)
        total_s = time.monotonic() - started
    print_outcome(outcome)
    return {
        "users": outcome.users,
        "movies": movies,
        "ratings": outcome.ratings,
        "candidate_pairs": outcome.candidate_pairs,
        "edges": outcome.edges,
        "users_covered": outcome.users_covered,
        "communities": outcome.communities,
        "modularity": round(outcome.modularity, 4),
        "largest_community_share": round(outcome.largest_community_share, 4),
        "label_propagation_iterations": outcome.iterations,
        "converged": outcome.converged,
        "generate_s": round(generate_s, 1),
        "stage_seconds": {name: round(s, 1) for name, s in outcome.stage_seconds.items()},
        "total_s": round(total_s, 1),
        "peak_server_rss_gib": round(memory.peak / 2**30, 2),
        "params": {k: v for k, v in vars(args).items() if k not in ("ratings_table", "movies_table")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=1, help="of the synthetic data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args, job_flags = parser.parse_known_args()  # anything else goes to the job (--k 30, ...)

    settings = load_settings()
    settings = dataclasses.replace(settings, mlflow_dir=settings.home / "mlflow")  # the bench's runs stay apart
    spark = connect(settings)
    results = [one_size(spark, settings, users, args.seed, job_flags) for users in args.users]
    machine = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "server_driver_memory": settings.driver_memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    console.print(table(
        f"User similarity at scale ({machine['cpus']} cores, server driver memory {settings.driver_memory})",
        ["", *(f"{r['users']:,} users" for r in results)],
        [(label, *(fmt(r) for r in results)) for label, fmt in FIGURES],
    ))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
