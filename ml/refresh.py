"""Rewrite the recommendations of users whose ratings changed, from the fixed ranking champion.

The streaming job calls `refresh` after each micro-batch with the users it touched. Everything
the fold-in needs is read from the tables `lakehouse train` wrote (ml.item_factors, the champion's
parameters in ml.model_runs, gold.movies) and kept in memory until the champion changes; the
users' ratings are every rating they have, batch-loaded (gold.ratings) or streamed
(bronze.rating_events), the latest per movie. `lakehouse train` remains the way to retrain.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from ml import outputs, tracking
from ml.data import RATINGS_TABLE
from ml.fold_in import ColdStart, FoldInModel
from ml.ranking_model import RankingParams

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RECOMMENDATIONS = f"{outputs.SCHEMA}.recommendations"
STREAMED_RATINGS = "bronze.rating_events"
MOVIES = "gold.movies"
COLD_START_MODEL = "cold-start: popular in the user's first genres"
MIN_RATINGS = 5  # fewer ratings than this: a cold-start list rather than a fold-in


class NoChampion(RuntimeError):
    """There is nothing to fold into yet; the message says what to run."""


@dataclass
class ServingState:
    run_id: str
    model_version: str
    generated_at: datetime
    top_n: int
    model: FoldInModel
    cold_start: ColdStart


def champion_run_id(spark: SparkSession) -> str | None:
    """The run whose item factors are served; it changes when `lakehouse train` publishes."""
    from pyspark.sql import functions as F

    spark.catalog.refreshTable(f"{outputs.SCHEMA}.item_factors")
    row = (spark.table(f"{outputs.SCHEMA}.item_factors").where(F.col("model_name") == tracking.RANKING_MODEL)
           .select("run_id").limit(1).collect())
    return row[0].run_id if row else None


def load_state(spark: SparkSession) -> ServingState:
    from pyspark.sql import functions as F

    for table in (f"{outputs.SCHEMA}.item_factors", f"{outputs.SCHEMA}.model_runs", RECOMMENDATIONS, MOVIES):
        if not spark.catalog.tableExists(table):
            raise NoChampion(f"{table} does not exist: run `lakehouse train` (and dbt) before streaming")
        spark.catalog.refreshTable(table)
    items = (spark.table(f"{outputs.SCHEMA}.item_factors").where(F.col("model_name") == tracking.RANKING_MODEL)
             .select("movie_id", "features", "model_version", "run_id").collect())
    if not items:
        raise NoChampion(f"ml.item_factors has no {tracking.RANKING_MODEL} rows: run `lakehouse train`")
    run_id, version = items[0].run_id, items[0].model_version
    runs = spark.table(f"{outputs.SCHEMA}.model_runs").where(F.col("run_id") == run_id).select("params").collect()
    if not runs:
        raise NoChampion(f"run {run_id} of the served {tracking.RANKING_MODEL} is not in ml.model_runs")
    params = RankingParams.from_params(runs[0].params)
    listing = spark.table(RECOMMENDATIONS).agg(F.max("rank").alias("n"), F.min("generated_at").alias("at")).first()

    movies = spark.table(MOVIES).select("movie_id", "genres", "rating_count").collect()
    counts = {m.movie_id: float(m.rating_count) for m in movies}
    movie_ids = np.array([r.movie_id for r in items])
    offset = None
    if params.popularity_weight:
        top = max(counts.values(), default=1.0) or 1.0
        offset = params.popularity_weight * np.array([counts.get(int(m), 0.0) for m in movie_ids]) / top
    model = FoldInModel(movie_ids, np.array([r.features for r in items]), params.als.reg_param, params.als.alpha,
                        params.value == "binary", offset)
    cold = ColdStart(np.array([m.movie_id for m in movies]), np.array([counts[m.movie_id] for m in movies]),
                     [frozenset(m.genres or ()) for m in movies])
    return ServingState(run_id, version, listing.at, int(listing.n or 10), model, cold)


def users_ratings(spark: SparkSession, user_ids: list[int]) -> dict[int, list[tuple[int, float]]]:
    """Every rating of these users, batch or streamed, the latest per movie, oldest first."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    columns = ["user_id", "movie_id", "rating", "rated_at"]
    for table in (RATINGS_TABLE, STREAMED_RATINGS):
        spark.catalog.refreshTable(table)
    both = (spark.table(RATINGS_TABLE).select(*columns, F.lit(0).alias("streamed"))
            .unionByName(spark.table(STREAMED_RATINGS).select(*columns, F.lit(1).alias("streamed")))
            .where(F.col("user_id").isin(user_ids)))
    latest = Window.partitionBy("user_id", "movie_id").orderBy(F.desc("rated_at"), F.desc("streamed"))
    rows = (both.withColumn("n", F.row_number().over(latest)).where("n = 1")
            .orderBy("user_id", "rated_at", "movie_id").select("user_id", "movie_id", "rating").collect())
    ratings: dict[int, list[tuple[int, float]]] = {u: [] for u in user_ids}
    for row in rows:
        ratings[row.user_id].append((row.movie_id, row.rating))
    return ratings


def recommendation_rows(state: ServingState, ratings: dict[int, list[tuple[int, float]]], now: datetime) -> list[tuple]:
    """ml.recommendations rows for these users: a fold-in list, or a cold-start one."""
    rows = []
    for user_id, rated in ratings.items():
        seen = {m for m, _ in rated}
        vector = None
        if len(rated) >= MIN_RATINGS:
            vector = state.model.user_vector(np.array([m for m, _ in rated]), np.array([r for _, r in rated]))
        if vector is not None:
            picked, model_name = state.model.top_n(vector, seen, state.top_n), tracking.RANKING_MODEL
        else:
            picked, model_name = state.cold_start.top_n([m for m, _ in rated], seen, state.top_n), COLD_START_MODEL
        for rank, (movie_id, score) in enumerate(picked, start=1):
            rows.append((user_id, movie_id, rank, score, model_name, state.model_version, state.run_id,
                         state.generated_at, now))
    return rows


RECOMMENDATIONS_SCHEMA = (
    "user_id int, movie_id int, rank int, score double, model_name string, model_version string, "
    "run_id string, generated_at timestamp, updated_at timestamp"
)


def refresh(spark: SparkSession, state: ServingState, user_ids: list[int]) -> DataFrame | None:
    """Rewrite these users' rows of ml.recommendations; returns the new rows (None if no users)."""
    from lakehouse.table_format import replace_rows

    if not user_ids:
        return None
    rows = recommendation_rows(state, users_ratings(spark, user_ids), outputs.now())
    frame = spark.createDataFrame(rows, RECOMMENDATIONS_SCHEMA)
    replace_rows(frame, RECOMMENDATIONS, "user_id")
    return frame
