"""`make run`: start the server, ingest MovieLens (the latest 10% held out), build the dbt project,
train the recommenders, build the similarity graph, build the ml marts, start the stream and replay
held-out ratings into it, check the sources' freshness (a warning when bronze is stale), import
the dashboards, run the housekeeping, serve the API, print a summary. The MLflow UI and Superset
start beside the first stages, the stream beside the similarity graph and the ml marts, the
housekeeping beside the dashboards' import."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from lakehouse import api_service, housekeeping, mlflow_ui, server, tables
from lakehouse.beside import Beside
from lakehouse.console import Stages, console, key_values, table
from lakehouse.dbt_runner import LIVE_BUILD, ML_NODES, run_dbt, source_freshness
from lakehouse.ingest.load import HoldoutMismatch
from lakehouse.ingest_command import ingest_with_progress, print_ingest_report
from lakehouse.session import connect, table_overview
from lakehouse.settings import Settings
from lakehouse.stream import job
from lakehouse.stream.showcase import replay_and_compare, showcase_table
from lakehouse.superset import service as superset
from lakehouse.superset.cli import print_provisioned
from ml import tracking
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
# The latest 10% of ratings by time stay out of the initial load; the stream stage replays some.
HOLDOUT_FRACTION = 0.1
REPLAYED_RATINGS = 1000
# Ratings per second of the replay: 1,000 land in 2 s, two or three batches at the default trigger.
REPLAY_RATE = 500.0


def _job_arguments(add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str] = ()) -> argparse.Namespace:
    """A job's flags as `make run` runs it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def api_examples(settings: Settings, spark) -> list[str]:
    """Three curl commands that answer on this lakehouse: a user's recommendations (the first
    user with a list), a search with a typo, and the title flow on the most-rated movie."""
    from pyspark.sql import functions as F

    user = spark.table(tables.RECOMMENDATIONS.name).agg(F.min("user_id")).first()[0]
    url = api_service.url(settings)
    return [
        f"curl -s '{url}/v1/users/{user}/recommendations?k=3'",
        f"curl -s '{url}/v1/movies/search?q=toy%20stroy&limit=3'",
        f"curl -s '{url}/v1/recommendations?title=toy%20story&k=3'",
    ]


def _mlflow_up(settings: Settings) -> bool:
    import mlflow

    # The tracking store's schema before the UI starts: the two never both create it.
    tracking.configure(settings)
    mlflow.search_experiments(max_results=1)
    return mlflow_ui.up(settings)


def run_pipeline(settings: Settings, dataset: str, source: Path | None, stages: Stages | None = None) -> int:
    """The pipeline's exit code; `stages` (when given) keeps each stage's timing for the caller."""
    stages = stages if stages is not None else Stages()
    with stages.stage("lakehouse server") as notes:
        state, started = server.up(settings)
        notes.append(("started" if started else "already running") + f", Delta Lake {state.delta_version}")
    beside = Beside()
    beside.start("mlflow", lambda say: _mlflow_up(settings))
    beside.start("superset", lambda say: superset.up(settings, say=say))
    spark = connect(settings)
    with stages.stage(f"ingest {dataset}") as notes:
        try:
            report = ingest_with_progress(spark, settings, dataset, source, holdout_fraction=HOLDOUT_FRACTION)
        except HoldoutMismatch as mismatch:  # a data directory from before the stream stage
            console.print(f"[yellow]{mismatch}[/]\nReloading bronze with the held-out split (--replace).")
            report = ingest_with_progress(spark, settings, dataset, source, replace=True,
                                          holdout_fraction=HOLDOUT_FRACTION)
        print_ingest_report(report)
        if not report.ok:  # e.g. a file whose every line was quarantined: nothing to build on
            console.print("[red]ingest failed:[/] " + "; ".join(report.problems))
            return 1
        ratings = sum(f.rows_loaded for f in report.files if f.target_table == tables.RATINGS.name)
        quarantined = sum(f.rows_quarantined for f in report.files)
        skipped = sum(1 for f in report.files if f.skipped_reason)
        held_out = sum(f.rows_held_out for f in report.files)
        notes.append(f"{ratings:,} ratings loaded, {held_out:,} held out for the stream, {quarantined:,} rows "
                     f"quarantined, {skipped} files unchanged")
    with stages.stage("dbt build") as notes:
        # The ml sources and their marts wait for the jobs below.
        outcome = run_dbt(settings, "build", "--exclude", ML_NODES)
        notes.append(outcome.describe())
    if not outcome.ok:
        console.print(f"[red]dbt build failed:[/] {', '.join(outcome.failures) or 'see the dbt log'}")
        return 1
    with stages.stage("train recommenders (MLflow)") as notes:
        beside.wait("mlflow", notes, f"MLflow UI on {mlflow_ui.url(settings)}")
        trained = run_training(spark, settings, _job_arguments(add_train_arguments))
        print_training(trained)
        notes.append(", ".join(f"{name} v{version} @champion" for name, version in trained.registered.items()))
    # The stream starts beside the next stages: its fold-in has a champion from here on.
    beside.start("stream", lambda say: job.detach(settings) if job.running_pid(settings) is None else None)
    with stages.stage("user similarity + communities") as notes:
        similarity = run_similarity(spark, settings, _job_arguments(add_similarity_arguments, SIMILARITY_FLAGS))
        print_similarity(similarity)
        notes.append("ml.user_similarity, ml.user_communities")
    with stages.stage("dbt build (ml marts)") as notes:
        outcome = run_dbt(settings, "build", "--select", ML_NODES)
        notes.append(outcome.describe())
    with stages.stage("stream: replay held-out ratings, fold them in") as notes:
        beside.wait("stream", notes, "the stream", lambda pid: pid is not None)
        showcase = replay_and_compare(spark, settings, limit=REPLAYED_RATINGS, rate=REPLAY_RATE)
        console.print(showcase_table(showcase))
        notes.append(showcase.describe())
    with stages.stage("source freshness (dbt)") as notes:
        # How long since bronze was last loaded, per source with a `freshness` (the ingest's and
        # the stream's ledgers, ...): a stale source is a warning, never a failure of the run.
        freshness = source_freshness(settings)
        for stale in freshness.stale:
            console.print(f"[yellow]warning:[/] source {stale.describe()}")
        notes.append(freshness.describe())
    with stages.stage("dbt build (live marts)") as notes:
        live = run_dbt(settings, "build", *LIVE_BUILD)
        notes.append(live.describe())
    # Beside the dashboards' import, which waits on Superset and reads only table schemas; Delta
    # readers see a snapshot, never a half-done OPTIMIZE.
    beside.start("housekeeping", lambda say: housekeeping.run(spark, settings))
    with stages.stage("Superset dashboards") as notes:
        up = beside.wait("superset", notes, "Superset", lambda outcome: outcome.started)
        provisioned = superset.Provisioned(up, superset.import_dashboards(settings))
        print_provisioned(settings, provisioned)
        notes.append(provisioned.describe())
    outcome = outcome if not outcome.ok else live
    with stages.stage("housekeeping (OPTIMIZE, retention, VACUUM)") as notes:
        kept = beside.wait("housekeeping", notes, "housekeeping", lambda _report: True, done="ran")
        housekeeping.print_report(kept)
        notes.append(kept.describe())
    with stages.stage("REST API") as notes:
        started = api_service.up(settings)  # a running API picks up the new table versions itself
        examples = api_examples(settings, spark)
        notes.append(f"{'started' if started else 'already running'} on {api_service.url(settings)}, "
                     f"{settings.api_workers} workers")
    counts = table_overview(spark)
    console.rule("[bold]Summary")
    console.print(stages.summary())
    console.print(table("Tables (Delta version and last commit)", ["schema", "table", "rows", "version", "last operation", "written by"],
                        counts))
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
                ("Superset", f"{superset.url(settings)}  —  user {superset.ADMIN_USER}, password in "
                             f"{provisioned.up.credentials.path} ({superset.PASSWORD_VAR})"),
                *((f"  {title}", link) for title, link in provisioned.imported.dashboards),
                ("stream", f"drop rating files into {settings.stream_dir}, or `lakehouse land FILE` "
                           f"(`lakehouse replay` simulates); log {settings.stream_log}"),
                ("REST API", f"{api_service.url(settings)}  —  OpenAPI docs {api_service.url(settings)}/docs, "
                             f"log {api_service.service(settings).log_file}"),
                ("status / stop", "`lakehouse status`, `lakehouse stream --status`, `make down`"),
            ],
        )
    )
    console.print("Try the API:")
    for example in examples:
        console.print(f"  {example}", soft_wrap=True)
    if not outcome.ok:
        console.print(f"[red]dbt build failed:[/] {', '.join(outcome.failures) or 'see the dbt log'}")
        return 1
    console.print("[green]Pipeline finished: champions registered, every dbt model built and every dbt test passed; "
                  "the stream keeps running (`lakehouse stream --stop` or `make down` stops it).[/]")
    return 0
