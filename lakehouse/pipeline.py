"""`make run`: start the server, ingest MovieLens, build the dbt project, train the recommenders,
build the similarity graph, build the ml marts, serve the MLflow UI, print a summary."""
from __future__ import annotations

from pathlib import Path

import argparse
from typing import Callable

from lakehouse import mlflow_ui, server
from lakehouse.console import Stages, console, key_values, table
from lakehouse.dbt_runner import ML_NODES, run_dbt
from lakehouse.ingest_command import ingest_with_progress, print_ingest_report
from lakehouse.session import connect, table_row_counts
from lakehouse.settings import Settings
from ml.similarity_job import add_arguments as add_similarity_arguments
from ml.similarity_job import print_outcome as print_similarity
from ml.similarity_job import run_similarity
from ml.tracking import EXPERIMENTS
from ml.train import add_arguments as add_train_arguments
from ml.train import champions_beside_baselines, run_training
from ml.train import print_outcome as print_training


# On ml-100k the co-rated kNN graph is one dense cluster (label propagation finds a single
# community); the champion's ALS factors with k=10 give a partition with modularity ~0.59.
SIMILARITY_FLAGS = ["--vectors", "factors", "--k", "10"]


def _job_arguments(add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str] = ()) -> argparse.Namespace:
    """A job's flags as `make run` runs it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def run_pipeline(settings: Settings, dataset: str, source: Path | None) -> int:
    stages = Stages()
    with stages.stage("lakehouse server") as notes:
        state, started = server.up(settings)
        notes.append(("started" if started else "already running") + f", format {state.table_format}")
        console.print(f"table format: {state.table_format} — {state.table_format_reason}")
    spark = connect(settings)
    with stages.stage(f"ingest {dataset}") as notes:
        report = ingest_with_progress(spark, settings, dataset, source)
        print_ingest_report(report)
        ratings = sum(f.rows_loaded for f in report.files if f.target_table == "bronze.ratings")
        quarantined = sum(f.rows_quarantined for f in report.files)
        skipped = sum(1 for f in report.files if f.skipped_reason)
        notes.append(f"{ratings:,} ratings loaded, {quarantined:,} rows quarantined, {skipped} files unchanged")
    with stages.stage("dbt build") as notes:
        # The ml sources and their marts wait for the jobs below.
        outcome = run_dbt(settings, "build", "--exclude", ML_NODES)
        notes.append(outcome.describe())
    if not outcome.ok:
        console.print(f"[red]dbt build failed:[/] {', '.join(outcome.failures) or 'see the dbt log'}")
        return 1
    with stages.stage("train recommenders (MLflow)") as notes:
        trained = run_training(spark, settings, _job_arguments(add_train_arguments))
        print_training(trained)
        notes.append(", ".join(f"{name} v{version} @champion" for name, version in trained.registered.items()))
    with stages.stage("user similarity + communities") as notes:
        similarity = run_similarity(spark, settings, _job_arguments(add_similarity_arguments, SIMILARITY_FLAGS))
        print_similarity(similarity)
        notes.append("ml.user_similarity, ml.user_communities")
    with stages.stage("dbt build (ml marts)") as notes:
        outcome = run_dbt(settings, "build", "--select", ML_NODES)
        notes.append(outcome.describe())
    with stages.stage("MLflow UI") as notes:
        started = mlflow_ui.up(settings)
        notes.append(f"{'started' if started else 'already running'} on {mlflow_ui.url(settings)}")
    counts = table_row_counts(spark)
    console.rule("[bold]Summary")
    console.print(stages.summary())
    console.print(table("Tables", ["schema", "table", "rows"], counts))
    console.print(champions_beside_baselines(trained))
    console.print(
        key_values(
            "Where to look",
            [
                ("dbt (Thrift)", f"{settings.host}:{settings.thrift_port}  —  `dbt build`, `dbt docs generate`"),
                ("PySpark (Spark Connect)", settings.connect_url),
                ("Spark UI", state.ui_url or "-"),
                ("server log", str(settings.server_log)),
                ("dbt log", str(settings.logs_dir / "dbt" / "dbt.log")),
                ("MLflow UI", f"{mlflow_ui.url(settings)}  —  experiments {', '.join(EXPERIMENTS.values())}"),
                ("status / stop", "`lakehouse status`, `make down`"),
            ],
        )
    )
    if not outcome.ok:
        console.print(f"[red]dbt build failed:[/] {', '.join(outcome.failures) or 'see the dbt log'}")
        return 1
    console.print("[green]Pipeline finished: champions registered, every dbt model built and every dbt test passed.[/]")
    return 0
