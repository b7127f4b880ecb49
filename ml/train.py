"""`lakehouse train`: the rating and ranking sweeps, the champions registered, the `ml` tables written."""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, tables
from lakehouse.console import console, table
from lakehouse.settings import Settings
from ml import outputs, tracking
from ml.als import AlsParams
from ml.data import RATINGS_TABLE, load_ratings
from ml.knn import KnnParams
from ml.protocols import PROTOCOLS, describe, make_splits
from ml.ranking_job import K, RankingResult, run_ranking_sweep
from ml.ranking_model import RankingParams
from ml.rating_job import RatingGrid, RatingResult, run_rating_sweep

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Named grids. `default` (what `make run` trains) keeps the full sweep's winners: on ml-100k its
# champions are 0.0010 RMSE and 0.0019 NDCG@10 from the full sweep's (bench/grids.py), which takes
# 5.7 times as long. Across the full grid the baseline's damping moves validation RMSE by < 0.002,
# and the user-kNN family adds < 0.001 to the blend; dropping plain ALS costs 0.013 RMSE.
# `quick` is for tests; `full` is one flag away (`--grid full`).
RATING_GRIDS = {
    "quick": RatingGrid(damping=((5.0, 2.0),), plain_als=(AlsParams(rank=8, reg_param=0.1, max_iter=5),),
                        residual_als=(AlsParams(rank=8, reg_param=0.1, max_iter=5),),
                        item_knn=(KnnParams(by="item", k=20, shrinkage=100.0),),
                        user_knn=(KnnParams(by="user", k=20, shrinkage=100.0),)),
    "default": RatingGrid(),
    "full": RatingGrid(
        damping=tuple((u, i) for u in (3.0, 5.0, 10.0) for i in (1.0, 2.0, 5.0)),
        plain_als=tuple(AlsParams(rank=50, reg_param=g) for g in (0.08, 0.10, 0.12)),
        residual_als=tuple(AlsParams(rank=r, reg_param=g) for r in (10, 50) for g in (0.10, 0.12, 0.15)),
        item_knn=tuple(KnnParams(by="item", k=k, shrinkage=s) for k in (40, 80) for s in (100.0, 400.0)),
        user_knn=tuple(KnnParams(by="user", k=k, shrinkage=s) for k in (40, 80) for s in (100.0, 400.0)),
    ),
}
RANKING_GRIDS = {
    "quick": (RankingParams(AlsParams(rank=8, reg_param=0.15, max_iter=5, alpha=0.3)),),
    "default": (RankingParams(AlsParams(rank=16, reg_param=0.15, max_iter=15, alpha=0.3)),),
    "full": tuple(
        RankingParams(AlsParams(rank=r, reg_param=g, max_iter=20, alpha=a), value=v)
        for r in (16, 32, 64) for g in (0.15, 0.3, 0.5) for a in (0.3, 1.2) for v in ("binary", "rating")
    ),
}


@dataclass
class TrainOutcome:
    rating: RatingResult | None
    ranking: RankingResult | None
    registered: dict[str, str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("all", "rating", "ranking"), default="all")
    parser.add_argument("--table", default=RATINGS_TABLE, help="ratings table (default %(default)s)")
    parser.add_argument("--as-of", type=int, metavar="VERSION",
                        help="train on this Delta version of the ratings table (time travel; default: the current one)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="holdout", help="rating-prediction protocol")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held out by holdout/temporal/per-user")
    parser.add_argument("--folds-dir", type=Path, help="ml-100k folder with u1.base/u1.test ... (official-folds)")
    parser.add_argument("--folds", default="1,2,3,4,5", help="official folds to run (default %(default)s)")
    parser.add_argument("--ranking-protocol", choices=("per-user", "temporal"), default="per-user")
    parser.add_argument("--ranking-test-fraction", type=float, default=0.25)
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="carved out of training for tuning")
    parser.add_argument("--grid", choices=tuple(RATING_GRIDS), default="default", help="hyperparameter sweep size")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top-n", type=int, default=10, help="recommendations kept per user")
    parser.add_argument("--no-publish", dest="publish", action="store_false",
                        help="evaluate only: no refit for serving, no model registration, no ml tables (benchmarks)")


def run_training(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> TrainOutcome:
    from lakehouse import locks

    # Beside the stream and housekeeping, never while an erasure purges old files.
    with locks.shared(settings, locks.TABLES, wait=locks.TABLES_WAIT_SECONDS, what="an erasure"):
        return _train(spark, settings, args)


def _train(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> TrainOutcome:
    started = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:7.1f}s[/] {message}")

    client = tracking.configure(settings)
    ratings, input_table = load_ratings(spark, args.table, getattr(args, "as_of", None))
    ratings = ratings.localCheckpoint()
    progress(f"{input_table.name} version {input_table.version}{' (--as-of)' if input_table.as_of else ''}: "
             f"{input_table.rows:,} ratings, fingerprint {input_table.fingerprint}")
    rating = ranking = None
    registered: dict[str, str] = {}
    # Evaluate only (--no-publish): no refit on all ratings for serving.
    common = {"settings": settings, "input_table": input_table, "validation_fraction": args.validation_fraction,
              "seed": args.seed, "progress": progress, "serve": args.publish}
    if args.task in ("all", "rating"):
        folds = tuple(int(f) for f in args.folds.split(","))
        splits = make_splits(ratings, args.protocol, fraction=args.test_fraction, seed=args.seed,
                             folds_dir=args.folds_dir, folds=folds)
        rating = run_rating_sweep(ratings, splits, protocol=args.protocol, grid=RATING_GRIDS[args.grid],
                                  protocol_description=describe(args.protocol, args.test_fraction, args.seed), **common)
        if args.publish:
            registered[tracking.RATING_MODEL] = _publish_rating(client, rating, ratings, args)
            progress(f"{tracking.RATING_MODEL} version {registered[tracking.RATING_MODEL]} registered as champion")
    if args.task in ("all", "ranking"):
        splits = make_splits(ratings, args.ranking_protocol, fraction=args.ranking_test_fraction, seed=args.seed,
                             folds_dir=None, folds=())
        ranking = run_ranking_sweep(ratings, splits, protocol=args.ranking_protocol, grid=RANKING_GRIDS[args.grid],
                                    protocol_description=describe(args.ranking_protocol, args.ranking_test_fraction, args.seed),
                                    **common)
        if args.publish:
            registered[tracking.RANKING_MODEL], recommendations = _publish_ranking(client, ranking, ratings, args)
            progress(f"{tracking.RANKING_MODEL} version {registered[tracking.RANKING_MODEL]} registered as champion; "
                     "ml.similar_movies and the factors written")
    if args.publish:
        runs = outputs.write_model_runs(spark, tracking.EXPERIMENTS.values())
        progress(f"ml.model_runs: {runs} MLflow runs")
    if args.publish and ranking is not None:
        # Last: by now the stream's fold-in can load the new champion (factors, parameters), and a
        # fold-in that merged old-model lists after this replace notices the new champion and
        # merges its users again (ml/refresh.py). The fold-in merges meanwhile: a conflict is retried.
        delta.retry_conflicts(lambda: outputs.write(recommendations, tables.RECOMMENDATIONS),
                              what="ml.recommendations", log=console.print)
        progress("ml.recommendations written")
    if args.publish and registered:
        from lakehouse.governance.erasure import clear_retrain_tags

        if cleared := clear_retrain_tags(settings):  # new champions: no model of an erased user is served
            progress(f"{cleared} MLflow runs no longer tagged for retraining after an erasure")
    return TrainOutcome(rating, ranking, registered)


def _log_model(run_id: str, python_model, artifacts: dict[str, str], name: str, description: str, client) -> str:
    import mlflow

    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=python_model, artifacts=artifacts,
            pip_requirements=tracking.pip_requirements(), code_paths=[str(Path(__file__).parent)],
        )
    return tracking.register_champion(client, info.model_uri, name, run_id, description)


def _publish_rating(client, result: RatingResult, ratings, args) -> str:
    from pyspark.sql import functions as F

    from ml.rating_model import FittedAls
    from ml.serving_model import RatingPyfunc, export_rating_model

    with tempfile.TemporaryDirectory() as folder:
        artifacts = export_rating_model(result.serving, Path(folder) / "rating")
        version = _log_model(result.champion_run_id, RatingPyfunc(), artifacts, tracking.RATING_MODEL,
                             f"{result.champion.name}; refitted on all {args.table} ratings for serving", client)
    name = tracking.RATING_MODEL
    predictions = result.predictions.select(
        F.lit(result.champion_run_id).alias("run_id"), F.lit(name).alias("model_name"), F.lit(args.protocol).alias("protocol"),
        "split", "user_id", "movie_id", "rating", "prediction", (F.col("prediction") - F.col("rating")).alias("error"), "cold_start",
    )
    outputs.write(predictions, tables.PREDICTIONS)
    als = next((c for c in result.serving.components if isinstance(c, FittedAls) and c.on_residuals), None)
    if als is not None:  # the fold-in of new ratings needs the residual factors and the biases
        _write_factors(als.model, name, version, result.champion_run_id,
                       result.serving.baseline.user_bias, result.serving.baseline.item_bias)
    return version


def _publish_ranking(client, result: RankingResult, ratings, args):
    """Register the ranking champion, write its factors and similar movies; returns the version and
    the recommendations to write once the rest is published."""
    from pyspark.sql import functions as F

    from ml.serving_model import RankingPyfunc, export_ranking_model
    from ml.top_n import similar_items

    with tempfile.TemporaryDirectory() as folder:
        artifacts = export_ranking_model(result.serving, ratings, Path(folder) / "ranking")
        version = _log_model(result.champion_run_id, RankingPyfunc(), artifacts, tracking.RANKING_MODEL,
                             f"{result.champion.name}; refitted on all {args.table} ratings for serving", client)
    name = tracking.RANKING_MODEL
    generated_at = F.lit(outputs.now()).cast("timestamp")
    recommendations = result.serving.recommend(ratings, ratings, args.top_n).select(
        "user_id", "movie_id", "rank", "score", F.lit(name).alias("model_name"), F.lit(version).alias("model_version"),
        F.lit(result.champion_run_id).alias("run_id"), generated_at.alias("generated_at"), generated_at.alias("updated_at"),
    )
    _write_factors(result.serving.als, name, version, result.champion_run_id, None, None)
    items = result.serving.als.itemFactors.select(F.col("id").alias("movie_id"), F.col("features").alias("i_features"))
    similar = similar_items(items, args.top_n).select(
        "movie_id", "similar_movie_id", "rank", "similarity", F.lit(name).alias("model_name"), F.lit(version).alias("model_version")
    )
    outputs.write(similar, tables.SIMILAR_MOVIES)
    return version, recommendations


def _write_factors(model, name: str, version: str, run_id: str, user_bias, item_bias) -> None:
    from pyspark.sql import functions as F

    def with_bias(factors, key: str, bias):
        frame = factors.select(F.col("id").alias(key), "features")
        if bias is None:
            return frame.withColumn("bias", F.lit(None).cast("double"))
        return frame.join(bias.withColumnRenamed(bias.columns[1], "bias"), key, "left")

    meta = [F.lit(name).alias("model_name"), F.lit(version).alias("model_version"), F.lit(run_id).alias("run_id")]
    users = with_bias(model.userFactors, "user_id", user_bias).select(
        *meta, "user_id", "bias", "features", F.lit(outputs.now()).cast("timestamp").alias("updated_at"))
    items = with_bias(model.itemFactors, "movie_id", item_bias).select(*meta, "movie_id", "bias", "features")
    outputs.replace_rows_of_model(users, tables.USER_FACTORS, name)
    outputs.replace_rows_of_model(items, tables.ITEM_FACTORS, name)


def print_outcome(outcome: TrainOutcome) -> None:
    if outcome.rating:
        rows = [(c.family, c.name, _fmt(c.mean("validation", "rmse")), _fmt(c.mean("test", "rmse")), _fmt(c.mean("test", "mae")),
                 f"{sum(c.fit_seconds) / max(len(c.fit_seconds), 1):.1f}") for c in outcome.rating.candidates]
        console.print(table("Rating prediction (RMSE: lower is better; chosen on validation)",
                            ["family", "run", "val RMSE", "test RMSE", "test MAE", "fit s"], rows))
    if outcome.ranking:
        rows = [(c.family, c.name, _fmt(c.mean("validation", f"ndcg_at_{K}")),
                 *(_fmt(c.mean("test", f"{m}_at_{K}")) for m in ("precision", "recall", "ndcg", "map")))
                for c in outcome.ranking.candidates]
        console.print(table(f"Top-{K} ranking (chosen on validation NDCG@{K})",
                            ["family", "run", f"val NDCG@{K}", f"P@{K}", f"R@{K}", f"NDCG@{K}", f"MAP@{K}"], rows))
    for name, version in outcome.registered.items():
        console.print(f"registered [bold]{name}[/] version {version} with alias @{tracking.CHAMPION}")


def champions_beside_baselines(outcome: TrainOutcome):
    """The champions' test figures next to the baselines they must beat."""
    rows = []
    if outcome.rating:
        by_family = {c.family: c for c in outcome.rating.candidates}
        for family, label in (("mean_of_means", "(user mean + movie mean) / 2 (seeds)"), ("baseline", "baseline: mean + biases"),
                              ("als", "plain ALS"), ("champion", "champion: blend")):
            if family in by_family:
                c = by_family[family]
                rows.append(("rating", label, _fmt(c.mean("test", "rmse")), _fmt(c.mean("test", "mae")), "-", "-"))
    if outcome.ranking:
        by_family = {c.family: c for c in outcome.ranking.candidates}
        for family, label in (("popularity", "popularity"), ("champion", "champion: implicit ALS")):
            c = by_family[family]
            rows.append(("ranking", label, "-", "-", _fmt(c.mean("test", f"precision_at_{K}")), _fmt(c.mean("test", f"ndcg_at_{K}"))))
    return table("Champions beside the baselines (test split)", ["task", "model", "RMSE", "MAE", f"P@{K}", f"NDCG@{K}"], rows)


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.4f}"
