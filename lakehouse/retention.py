"""The retention policy: how long each kind of kept data lives, and its expiry.

`lakehouse housekeeping` applies it (lakehouse/housekeeping.py), each item with its setting:

- processed landing files (`stream-archive/`) and unreadable ones (`stream-dead-letter/`): files
  whose modification time (a landed file keeps its write time through the inbox and the archive)
  is older than LAKEHOUSE_RETAIN_ARCHIVE_DAYS / LAKEHOUSE_RETAIN_DEAD_LETTER_DAYS are deleted
  (the folders stay);
- bronze.quarantine: rows quarantined longer ago than LAKEHOUSE_RETAIN_QUARANTINE_DAYS are
  deleted. The ledgers (bronze.ingest_log, bronze.stream_batches, bronze.stream_files) keep
  their counts, so "read = accepted + rejected" still adds up, and governance.retention_log
  records the cutoff (the ledger's data test expects fewer quarantine rows before it);
- checkpoints: a folder under `checkpoints/` that is neither this stream's nor the running
  stream's (a former landing folder's stream, ALS's RDD checkpoints of a finished training) and
  has not changed for LAKEHOUSE_RETAIN_CHECKPOINT_DAYS; a former stream's inbox goes with it
  only when empty (files in it are ratings not yet read: never deleted by a policy);
- old table versions: VACUUM RETAIN LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS (housekeeping.py).

Every removal is one row of governance.retention_log (what, the policy, the cutoff, how many,
how many bytes), written by housekeeping after the run.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.settings import Settings


@dataclass(frozen=True)
class Removed:
    """What one item of the policy removed (or, on a dry run, would remove)."""

    item: str
    policy: str
    cutoff: datetime  # naive UTC: what is older went
    removed: int
    unit: str
    bytes: int | None = None
    kept: str = ""  # what the policy left on purpose, and why

    def row(self) -> tuple:
        size = "" if self.bytes is None else _size(self.bytes)
        return (self.item, self.policy.split(" (")[0], self.cutoff.strftime("%Y-%m-%d %H:%M"), f"{self.removed:,} {self.unit}",
                size, self.kept)

    def log_row(self, run_id: str, ran_at: datetime) -> tuple:
        return (run_id, ran_at, self.item, self.policy, self.cutoff, self.removed, self.unit, self.bytes)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _days(days: float, setting: str) -> str:
    return f"{days:g} days ({setting})"


def cutoff(now: datetime, *, days: float = 0.0, hours: float = 0.0) -> datetime:
    return now - timedelta(days=days, hours=hours)


# ---- files ------------------------------------------------------------------------------------

def expire_files(folder: Path, before: datetime, *, dry_run: bool = False) -> tuple[int, int]:
    """Delete the files under `folder` modified before `before` (naive UTC): (files, bytes).
    Folders stay, empty or not: Spark's archiver moves files into the same mirrored folder from
    a thread of its own, and a folder removed under it would fail that move."""
    if not folder.is_dir():
        return 0, 0
    limit = epoch(before)
    files = size = 0
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        if stat.st_mtime < limit:
            files, size = files + 1, size + stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
    return files, size


def epoch(at: datetime) -> float:
    from datetime import timezone

    return at.replace(tzinfo=timezone.utc).timestamp()


def _newest_change(path: Path) -> float:
    """The newest modification time in a tree (the folder's own included)."""
    newest = path.lstat().st_mtime
    for child in path.rglob("*"):
        try:
            newest = max(newest, child.lstat().st_mtime)
        except FileNotFoundError:
            continue
    return newest


def _tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def running_checkpoint(settings: Settings) -> Path | None:
    """The checkpoint of the stream running on this data directory, from its status file."""
    from lakehouse.stream import job

    if job.running_pid(settings) is None:
        return None
    try:
        recorded = json.loads(job.status_file(settings).read_text()).get("checkpoint")
    except (OSError, ValueError):
        recorded = None
    # A stream that has not said (yet) may be on any checkpoint: keep them all.
    return Path(recorded) if recorded else settings.checkpoint_dir


def expire_checkpoints(settings: Settings, before: datetime, *, dry_run: bool = False) -> tuple[int, int, list[str]]:
    """Delete the stale checkpoints (and former streams' empty inboxes): (folders, bytes, kept)."""
    keep = {settings.stream_checkpoint.resolve()}
    running = running_checkpoint(settings)
    if running is not None:
        keep.add(running.resolve())
    limit = epoch(before)
    folders = size = 0
    kept: list[str] = []
    for path in _children(settings.checkpoint_dir):
        if any(_overlap(path.resolve(), k) for k in keep):
            continue
        if _newest_change(path) < limit:
            folders, size = folders + 1, size + _tree_bytes(path)
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
    for inbox in _children(settings.stream_inbox_dir.parent):
        if inbox.resolve() == settings.stream_inbox_dir.resolve() or _newest_change(inbox) >= limit:
            continue
        pending = sum(1 for p in inbox.rglob("*") if p.is_file())
        if pending:
            kept.append(f"{pending} unread files in {inbox}")
            continue
        folders += 1
        if not dry_run:
            shutil.rmtree(inbox, ignore_errors=True)
    return folders, size, kept


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _children(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())


# ---- the policy, item by item ----------------------------------------------------------------

def expire_quarantine(spark: SparkSession, before: datetime, *, dry_run: bool = False) -> int:
    """Delete bronze.quarantine's rows quarantined before `before`: how many."""
    if not spark.catalog.tableExists(tables.QUARANTINE.name):
        return 0
    predicate = f"quarantined_at < timestamp {delta.quote(before.isoformat(sep=' '))}"
    # Rows quarantined from now on are newer than the cutoff: the count stays true while the
    # stream appends beside the delete.
    rows = spark.table(tables.QUARANTINE.name).where(predicate).count()
    if rows and not dry_run:
        delta.retry_conflicts(lambda: delta.delete(spark, tables.QUARANTINE, predicate),
                              what="retention: delete from bronze.quarantine")
    return rows


def apply(spark: SparkSession, settings: Settings, now: datetime, *, dry_run: bool = False) -> list[Removed]:
    """Expire the files, quarantine rows and checkpoints past their retention (tables' old
    versions are VACUUM's, in housekeeping)."""
    done = []
    for folder, days, setting in (
        (settings.stream_archive_dir, settings.retain_archive_days, "LAKEHOUSE_RETAIN_ARCHIVE_DAYS"),
        (settings.stream_dead_letter_dir, settings.retain_dead_letter_days, "LAKEHOUSE_RETAIN_DEAD_LETTER_DAYS"),
    ):
        before = cutoff(now, days=days)
        files, size = expire_files(folder, before, dry_run=dry_run)
        done.append(Removed(f"{folder.name}/", _days(days, setting), before, files, "files", size))
    before = cutoff(now, days=settings.retain_quarantine_days)
    rows = expire_quarantine(spark, before, dry_run=dry_run)
    done.append(Removed(tables.QUARANTINE.name, _days(settings.retain_quarantine_days, "LAKEHOUSE_RETAIN_QUARANTINE_DAYS"),
                        before, rows, "rows", kept="counts stay in the ledgers"))
    before = cutoff(now, days=settings.retain_checkpoint_days)
    folders, size, kept = expire_checkpoints(settings, before, dry_run=dry_run)
    done.append(Removed(f"{settings.checkpoint_dir.name}/", _days(settings.retain_checkpoint_days,
                                                                   "LAKEHOUSE_RETAIN_CHECKPOINT_DAYS"),
                        before, folders, "folders", size, kept="; ".join(kept) or "kept: the current stream's"))
    return done


def record(spark: SparkSession, run_id: str, ran_at: datetime, removed: list[Removed]) -> None:
    """One row per item into governance.retention_log, in one commit."""
    delta.create_if_missing(spark, tables.RETENTION_LOG)
    frame = spark.createDataFrame([r.log_row(run_id, ran_at) for r in removed], tables.RETENTION_LOG.schema)
    delta.append(frame, tables.RETENTION_LOG)
