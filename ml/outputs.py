"""Writing the `ml` tables (declared in lakehouse/tables.py), each write one Delta commit.

A job replaces the tables it owns whole (`create or replace`: readers see the old rows or the new
ones, and `VERSION AS OF` reaches the old), or, where two models share a table, only its model's
rows (`replaceWhere`). dbt declares them as sources and tests them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

from lakehouse import delta, tables
from lakehouse.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def now() -> datetime:
    return delta.utc_now()


def _check(df: DataFrame, table: Table) -> None:
    if tuple(df.columns) != table.columns:
        raise ValueError(f"{table.name}: columns {df.columns} differ from the declared {list(table.columns)}")


def write(df: DataFrame, table: Table) -> None:
    """Replace `table` with `df`, whose columns must be exactly the declared ones, in order."""
    _check(df, table)
    delta.replace(df, table)


def replace_rows_of_model(df: DataFrame, table: Table, model_name: str) -> None:
    """Replace one model's rows of `table`, keeping the other's (both champions' factors share one)."""
    _check(df, table)
    delta.replace_where(df, table, f"model_name = {delta.quote(model_name)}")


def run_rows(runs: Iterable[dict]) -> list[tuple]:
    return [tuple(run[c] for c in tables.MODEL_RUNS.columns) for run in runs]


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
    delta.replace(spark.createDataFrame(run_rows(rows), tables.MODEL_RUNS.schema), tables.MODEL_RUNS)
    return len(rows)


def _from_millis(millis: int | None) -> datetime | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).replace(tzinfo=None)
