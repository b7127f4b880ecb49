"""`lakehouse housekeeping`: compact the tables that grow by small commits, apply the retention
policy, and VACUUM every table to the configured table-version retention.

The stream appends one small file per micro-batch to each bronze stream table (and merges into
ml.recommendations per batch); a stream that runs for weeks makes thousands. `OPTIMIZE` rewrites
them into few files (one commit; readers see the same rows before and after). The retention
policy (lakehouse/retention.py) then expires landed files, quarantine rows and stale checkpoints,
and `VACUUM ... RETAIN LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS` (default 168, Delta's own 7 days)
deletes the data files no version inside that window needs, so time travel reaches that far back
and no further. What was removed is printed and kept in governance.retention_log.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, locks, retention, tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.settings import Settings

# The tables that get a commit per micro-batch.
COMPACTED = (tables.RATING_EVENTS, tables.STREAM_BATCHES, tables.STREAM_FILES, tables.QUARANTINE,
             tables.RECOMMENDATIONS)


@dataclass(frozen=True)
class Housekept:
    table: str
    files_before: int
    files_after: int
    files_vacuumed: int
    version: int
    bytes_vacuumed: int | None = None

    def row(self) -> tuple:
        return (self.table, self.files_before, self.files_after, self.files_vacuumed, self.version)


@dataclass
class Report:
    """One housekeeping run: the compactions, the retention policy's removals, the VACUUMs."""

    compacted: list[Housekept] = field(default_factory=list)
    removed: list[retention.Removed] = field(default_factory=list)
    vacuumed: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # table -> files, bytes
    skipped: int = 0  # tables with no file old enough for VACUUM to delete
    dry_run: bool = False

    def describe(self) -> str:
        files = sum(n for n, _ in self.vacuumed.values())
        gone = ", ".join(f"{r.removed:,} {r.unit} from {r.item}" for r in self.removed if r.removed) or "nothing expired"
        return (", ".join(f"{k.table} {k.files_before}->{k.files_after} files" for k in self.compacted)
                + f"; retention: {gone}; VACUUM: {files:,} old files from {len(self.vacuumed)} tables")


def _files(spark: SparkSession, table: str) -> int:
    return int(spark.sql(f"describe detail {table}").first()["numFiles"])


def housekeep(spark: SparkSession, targets=COMPACTED, hours: float = delta.DEFAULT_RETENTION_HOURS) -> list[Housekept]:
    """OPTIMIZE, then VACUUM RETAIN `hours`, each existing table of `targets` (no lock: `run`
    takes it)."""
    return _compact(spark, targets, hours)


def run(spark: SparkSession, settings: Settings, *, dry_run: bool = False,
        schemas: tuple[str, ...] = delta.SCHEMAS) -> Report:
    """The whole of `lakehouse housekeeping`: compact, expire, VACUUM every table, record. Under
    the shared tables lock: an erasure's VACUUM RETAIN 0 HOURS would delete OPTIMIZE's new files.
    `schemas`: the tables compacted and vacuumed (the retention of files and quarantine rows is
    the data directory's, whatever they are)."""
    report = Report(dry_run=dry_run)
    now = delta.utc_now()
    hours = settings.retain_table_versions_hours
    with locks.shared(settings, locks.TABLES, wait=locks.TABLES_WAIT_SECONDS, what="an erasure"):
        if not dry_run:
            report.compacted = _compact(spark, [t for t in COMPACTED if t.layer in schemas], hours)
        report.removed = retention.apply(spark, settings, now, dry_run=dry_run)
        before = retention.cutoff(now, hours=hours)
        compacted = {k.table for k in report.compacted}

        def vacuum(name: str) -> tuple[str, tuple[int, int | None] | None]:
            if not _has_files_older_than(spark, name, before):
                return name, None
            return name, delta.vacuum(spark, name, hours, dry_run=dry_run)

        # The tables compacted above were vacuumed right after their OPTIMIZE.
        others = [name for name in delta.lakehouse_tables(spark, schemas) if name not in compacted]
        for name, vacuumed in delta.per_table(vacuum, others):
            if vacuumed is None:
                report.skipped += 1
            else:
                report.vacuumed[name] = vacuumed
        for k in report.compacted:
            report.vacuumed[k.table] = (k.files_vacuumed, k.bytes_vacuumed)
        files = sum(n for n, _ in report.vacuumed.values())
        sizes = [b for _, b in report.vacuumed.values() if b is not None]
        report.removed.append(retention.Removed(
            "old table versions", f"{hours:g} hours (LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS)", before, files, "files",
            sum(sizes) if sizes else None, kept=f"VACUUM on {len(report.vacuumed)} tables; {report.skipped} had "
                                                "no file old enough"))
        if not dry_run:
            retention.record(spark, uuid.uuid4().hex, now, report.removed)
    return report


def _compact(spark: SparkSession, targets, hours: float) -> list[Housekept]:
    def compact(table) -> Housekept | None:
        if not spark.catalog.tableExists(table.name):
            return None
        before = _files(spark, table.name)
        # OPTIMIZE only rewrites files; a concurrent append (the stream) does not conflict with it,
        # a concurrent merge or replace may: run it again on the new snapshot.
        delta.retry_conflicts(lambda: spark.sql(f"optimize {table.name}").collect(), what=f"optimize {table.name}")
        after = _files(spark, table.name)
        vacuumed, size = delta.vacuum(spark, table.name, hours)
        return Housekept(table.name, before, after, vacuumed, delta.version(spark, table.name), size)

    return [done for done in delta.per_table(compact, targets) if done is not None]


def _has_files_older_than(spark: SparkSession, name: str, before) -> bool:
    """Could VACUUM delete anything? Only a file the current version does not use, modified before
    the cutoff: a file is removed after it is written, so one written later was removed later
    too. Skipping the others saves a VACUUM (seconds each) per table on every run."""
    location = delta.location(spark, name)
    if not location.is_dir():
        return False
    limit = retention.epoch(before)
    current = {delta.local_path(f) for f in spark.table(name).inputFiles()}
    for path in location.rglob("*"):
        # VACUUM leaves hidden files alone (Hadoop's .crc checksums) and the log is not its.
        if "_delta_log" in path.parts or path.name.startswith(".") or not path.is_file() or path in current:
            continue
        if path.stat().st_mtime < limit:
            return True
    return False


def print_report(report: Report) -> None:
    from lakehouse.console import console, table

    if report.compacted:
        console.print(table(
            "Housekeeping: OPTIMIZE, then VACUUM",
            ["table", "files before", "files after", "files vacuumed", "version"], [k.row() for k in report.compacted]))
    title = "Retention: what would be removed (dry run)" if report.dry_run else "Retention: removed"
    console.print(table(title, ["item", "kept for", "older than (UTC)", "removed", "size", "note"],
                        [r.row() for r in report.removed]))
    console.print("[dim]Kept for: LAKEHOUSE_RETAIN_ARCHIVE_DAYS, _DEAD_LETTER_DAYS, _QUARANTINE_DAYS, _CHECKPOINT_DAYS, "
                  "_TABLE_VERSIONS_HOURS; every run is recorded in governance.retention_log.[/]")
