"""`make run`: start the server, ingest MovieLens, build the dbt project, print a summary."""
from __future__ import annotations

from pathlib import Path

from lakehouse import server
from lakehouse.console import Stages, console, key_values, table
from lakehouse.dbt_runner import run_dbt
from lakehouse.ingest_command import ingest_with_progress, print_ingest_report
from lakehouse.session import connect, table_row_counts
from lakehouse.settings import Settings


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
        outcome = run_dbt(settings, "build")
        notes.append(outcome.describe())
    counts = table_row_counts(spark)
    console.rule("[bold]Summary")
    console.print(stages.summary())
    console.print(table("Tables", ["schema", "table", "rows"], counts))
    console.print(
        key_values(
            "Where to look",
            [
                ("dbt (Thrift)", f"{settings.host}:{settings.thrift_port}  —  `dbt build`, `dbt docs generate`"),
                ("PySpark (Spark Connect)", settings.connect_url),
                ("Spark UI", state.ui_url or "-"),
                ("server log", str(settings.server_log)),
                ("dbt log", str(settings.logs_dir / "dbt" / "dbt.log")),
                ("status / stop", "`lakehouse status`, `make down`"),
            ],
        )
    )
    if not outcome.ok:
        console.print(f"[red]dbt build failed:[/] {', '.join(outcome.failures) or 'see the dbt log'}")
        return 1
    console.print("[green]Pipeline finished: every dbt model built and every dbt test passed.[/]")
    return 0
