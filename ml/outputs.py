"""The `ml` schema: every table the recommender jobs write, with its columns, in one place.

Each table is rewritten whole by the job that owns it (in the resolved table format, through
`lakehouse.table_format.save_table`); dbt declares them as sources and tests them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

from lakehouse.table_format import save_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SCHEMA = "ml"
COLUMNS = {
    "recommendations": ["user_id", "movie_id", "rank", "score", "model_name", "model_version", "run_id", "generated_at", "updated_at"],
    "predictions": ["run_id", "model_name", "protocol", "split", "user_id", "movie_id", "rating", "prediction", "error", "cold_start"],
    "user_factors": ["model_name", "model_version", "run_id", "user_id", "bias", "features", "updated_at"],
    "item_factors": ["model_name", "model_version", "run_id", "movie_id", "bias", "features"],
    "similar_movies": ["movie_id", "similar_movie_id", "rank", "similarity", "model_name", "model_version"],
    # written by `lakehouse similarity` (ml.similarity_job)
    "user_similarity": ["user_id", "neighbour_id", "rank", "similarity", "co_rated", "vectors", "run_id"],
    "user_similarity_matrix": ["user_id", "other_user_id", "similarity", "user_position", "other_user_position"],
    "user_communities": ["user_id", "community_id", "community_size", "run_id"],
    "community_summary": ["community_id", "size", "internal_edges", "top_genres", "modularity", "algorithm", "run_id"],
}


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # the server's session time zone is UTC


def ensure_schema(spark: SparkSession) -> None:
    spark.sql(f"create schema if not exists {SCHEMA}")


def write(df: DataFrame, table: str) -> None:
    """Replace ml.<table> with `df`, whose columns must be exactly the declared ones, in order."""
    expected = COLUMNS[table]
    if df.columns != expected:
        raise ValueError(f"ml.{table}: columns {df.columns} differ from the declared {expected}")
    ensure_schema(df.sparkSession)
    save_table(df, f"{SCHEMA}.{table}", mode="overwrite")


def replace_rows_of_model(df: DataFrame, table: str, model_name: str) -> None:
    """Rewrite ml.<table> keeping other models' rows (factors of both champions share a table)."""
    from pyspark.sql import functions as F

    spark = df.sparkSession
    name = f"{SCHEMA}.{table}"
    if spark.catalog.tableExists(name):
        spark.catalog.refreshTable(name)
        # Materialise the rows we keep before the table they come from is overwritten.
        others = spark.table(name).where(F.col("model_name") != model_name).localCheckpoint()
        df = others.unionByName(df)
    write(df, table)


def run_rows(runs: Iterable[dict]) -> list[tuple]:
    return [tuple(run[c] for c in MODEL_RUNS_COLUMNS) for run in runs]


MODEL_RUNS_COLUMNS = [
    "run_id", "parent_run_id", "experiment", "run_name", "model_type", "protocol", "status", "is_champion",
    "started_at", "ended_at", "rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10",
    "val_rmse", "val_ndcg_at_10", "input_rows", "input_fingerprint", "code_version", "params", "metrics",
]
MODEL_RUNS_SCHEMA = (
    "run_id string, parent_run_id string, experiment string, run_name string, model_type string, "
    "protocol string, status string, is_champion boolean, started_at timestamp, ended_at timestamp, "
    "rmse double, mae double, precision_at_10 double, recall_at_10 double, ndcg_at_10 double, "
    "map_at_10 double, val_rmse double, val_ndcg_at_10 double, input_rows bigint, input_fingerprint string, "
    "code_version string, params map<string,string>, metrics map<string,double>"
)


def write_model_runs(spark: SparkSession, experiment_names: Iterable[str]) -> int:
    """ml.model_runs: one row per MLflow run of the given experiments (MLflow is the source of truth)."""
    import mlflow

    rows = []
    for name in experiment_names:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            continue
        for run in mlflow.search_runs([experiment.experiment_id], output_format="list"):
            info, data = run.info, run.data
            metrics, tags = data.metrics, data.tags
            rows.append(
                {
                    "run_id": info.run_id,
                    "parent_run_id": tags.get("mlflow.parentRunId"),
                    "experiment": name,
                    "run_name": info.run_name,
                    "model_type": tags.get("model_type"),
                    "protocol": tags.get("protocol"),
                    "status": info.status,
                    "is_champion": tags.get("champion") == "true",
                    "started_at": _from_millis(info.start_time),
                    "ended_at": _from_millis(info.end_time),
                    **{m: metrics.get(m) for m in ("rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "val_rmse", "val_ndcg_at_10")},
                    "input_rows": int(tags["input.rows"]) if tags.get("input.rows") else None,
                    "input_fingerprint": tags.get("input.fingerprint"),
                    "code_version": tags.get("code_version"),
                    "params": dict(data.params),
                    "metrics": {k: float(v) for k, v in metrics.items()},
                }
            )
    ensure_schema(spark)
    df = spark.createDataFrame(run_rows(rows), MODEL_RUNS_SCHEMA)
    save_table(df, f"{SCHEMA}.model_runs", mode="overwrite")
    return len(rows)


def _from_millis(millis: int | None) -> datetime | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).replace(tzinfo=None)
