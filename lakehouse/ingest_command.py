"""Ingest as the CLI shows it: a progress bar per file, then a per-file conservation table, and a
warning for whatever makes the ingest a failure (`IngestReport.problems`)."""
from __future__ import annotations

from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lakehouse import locks, secrets
from lakehouse.console import console, table
from lakehouse.ingest.acquire import locate
from lakehouse.datasets import get_dataset
from lakehouse.ingest.holdout import check_fraction
from lakehouse.ingest.load import IngestReport, ingest
from lakehouse.settings import Settings


def ingest_with_progress(
    spark, settings: Settings, dataset: str, source: Path | None, replace: bool = False,
    holdout_fraction: float = 0.0,
) -> IngestReport:
    check_fraction(holdout_fraction)  # before any download
    with locks.exclusive(settings, "ingest", what="`lakehouse ingest`"):
        return _ingest(spark, settings, dataset, source, replace, holdout_fraction)


def _ingest(spark, settings: Settings, dataset: str, source: Path | None, replace: bool,
            holdout_fraction: float) -> IngestReport:
    spec = get_dataset(dataset)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(f"download {spec.url}", total=None)

        def downloaded(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        files = locate(spec, source, settings.cache_dir, progress=downloaded)
    console.print(f"{dataset} from {files.origin}")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:

        def on_file(source_file: str):
            task = bar.add_task(f"parse + load {source_file}", total=None)
            return lambda rows: bar.update(task, completed=rows)

        return ingest(
            spark, files, replace=replace, on_file=on_file,
            holdout_fraction=holdout_fraction, holdout_dir=settings.holdout_dir,
            erasure_salt=secrets.erasure_salt(settings),
        )


def print_ingest_report(report: IngestReport) -> None:
    for entry in report.recovered_loads:
        console.print(f"[yellow]dropped an unfinished earlier load:[/] {entry}")
    rows = [
        (
            f.source_file,
            f.target_table,
            f.rows_read,
            f.rows_loaded,
            f.rows_quarantined,
            f.rows_held_out,
            "skipped" if f.skipped_reason else ("yes" if f.conserved else "NO"),
            f"{f.seconds:.1f}",
        )
        for f in report.files
    ]
    console.print(
        table(
            f"Ingest of {report.dataset}: read = loaded + quarantined + held out, per file",
            ["file", "table", "read", "loaded", "quarantined", "held out", "adds up / skipped", "seconds"],
            rows,
        )
    )
    for f in report.files:
        if f.skipped_reason:
            console.print(f"skipped {f.source_file}: {f.skipped_reason}")
    if report.holdout_file is not None:
        if report.holdout_file.exists():
            console.print(
                f"held out the latest {report.holdout_fraction:g} of the ratings in {report.holdout_file} "
                "(`lakehouse replay` streams them)"
            )
        else:
            console.print(
                f"[yellow]the held-out ratings file {report.holdout_file} is missing;[/] "
                "`lakehouse ingest --replace` with the same --holdout-fraction writes it again"
            )
    if report.reasons:
        console.print(
            table("Quarantine reasons (this run)", ["reason (numbers as N)", "rows"], report.reasons)
        )
    for problem in report.problems:
        console.print(f"[red]warning:[/] {problem}")
