"""Rewrite the recommendations of users whose ratings changed, from the fixed ranking champion.

`FoldIn` is the stream's `on_committed` callback (the CLI and the pipeline wire it in): after each
micro-batch it refreshes the users the batch touched, merging their new top-N into
ml.recommendations (one `MERGE INTO`, retried if it conflicts with a concurrent `lakehouse train`). Everything
the fold-in needs is read from the tables `lakehouse train` wrote (ml.item_factors, the champion's
parameters in ml.model_runs, gold.movies) and kept in memory until the champion changes; the
users' ratings are every rating they have, batch-loaded (gold.ratings) or streamed
(bronze.rating_events), the latest per movie. `lakehouse train` remains the way to retrain.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from lakehouse import delta, tables
from ml import tracking
from ml.fold_in import ColdStart, FoldInModel
from ml.ranking_model import RankingParams

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RECOMMENDATIONS = tables.RECOMMENDATIONS
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

    row = (spark.table(tables.ITEM_FACTORS.name).where(F.col("model_name") == tracking.RANKING_MODEL)
           .select("run_id").limit(1).collect())
    return row[0].run_id if row else None


def load_state(spark: SparkSession) -> ServingState:
    from pyspark.sql import functions as F

    for table in (tables.ITEM_FACTORS, tables.MODEL_RUNS, RECOMMENDATIONS, tables.GOLD_MOVIES):
        if not spark.catalog.tableExists(table.name):
            raise NoChampion(f"{table.name} does not exist: run `lakehouse train` (and dbt) before streaming")
    items = (spark.table(tables.ITEM_FACTORS.name).where(F.col("model_name") == tracking.RANKING_MODEL)
             .select("movie_id", "features", "model_version", "run_id").collect())
    if not items:
        raise NoChampion(f"ml.item_factors has no {tracking.RANKING_MODEL} rows: run `lakehouse train`")
    run_id, version = items[0].run_id, items[0].model_version
    runs = spark.table(tables.MODEL_RUNS.name).where(F.col("run_id") == run_id).select("params").collect()
    if not runs:
        raise NoChampion(f"run {run_id} of the served {tracking.RANKING_MODEL} is not in ml.model_runs")
    params = RankingParams.from_params(runs[0].params)
    listing = spark.table(RECOMMENDATIONS.name).agg(F.max("rank").alias("n"), F.min("generated_at").alias("at")).first()

    movies = spark.table(tables.GOLD_MOVIES.name).select("movie_id", "genres", "rating_count").collect()
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
    both = (spark.table(tables.GOLD_RATINGS.name).select(*columns, F.lit(0).alias("streamed"))
            .unionByName(spark.table(tables.RATING_EVENTS.name).select(*columns, F.lit(1).alias("streamed")))
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


def refresh(spark: SparkSession, state: ServingState, user_ids: list[int],
            log: Callable[[str], None] | None = None) -> DataFrame | None:
    """Merge these users' new top-N into ml.recommendations (their old rows beyond it deleted), in
    one commit; returns the new rows (None if no users)."""
    if not user_ids:
        return None
    rows = recommendation_rows(state, users_ratings(spark, user_ids), delta.utc_now())
    frame = spark.createDataFrame(rows, RECOMMENDATIONS.schema)
    if log is not None:
        log(f"fold-in: merging {len(user_ids)} users' lists into {RECOMMENDATIONS.name}")
    delta.retry_conflicts(lambda: delta.merge(frame, RECOMMENDATIONS, delete_unmatched_in="user_id"),
                          what="fold-in merge into ml.recommendations", log=log)
    return frame


_serving: dict[str, ServingState] = {}  # the champion's fold-in state, per process (the stream's worker)


@dataclass(frozen=True)
class FoldIn:
    """The stream's `on_committed` callback: fold a committed batch's users into the champion."""

    def __call__(self, spark: SparkSession, accepted: DataFrame, log: Callable[[str], None]) -> int:
        user_ids = [r.user_id for r in accepted.select("user_id").distinct().collect()]
        if not user_ids:
            return 0
        # Twice at most: `lakehouse train` may publish a new champion while this batch folds in with
        # the old one. It writes ml.recommendations last, so a merge of old-model lists that lands
        # after its replace is seen here (the champion changed) and done again with the new model.
        for _attempt in range(2):
            try:
                state = self.serving_state(spark, log)
            except NoChampion as reason:
                log(f"fold-in skipped: {reason}")
                return 0
            refresh(spark, state, user_ids, log)
            if champion_run_id(spark) == state.run_id:
                break
            log(f"fold-in: a new champion was published during the merge; folding the {len(user_ids)} users in again")
        return len(user_ids)

    @staticmethod
    def serving_state(spark: SparkSession, log: Callable[[str], None]) -> ServingState:
        run_id = champion_run_id(spark) if spark.catalog.tableExists(tables.ITEM_FACTORS.name) else None
        if run_id is None:
            raise NoChampion("no ranking champion yet: run `lakehouse train`")
        state = _serving.get(run_id)
        if state is None:
            state = load_state(spark)
            _serving.clear()
            _serving[run_id] = state
            log(f"fold-in: champion {state.model_version} (run {run_id}), {len(state.model.movie_ids)} movies")
        return state
