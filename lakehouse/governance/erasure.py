"""`lakehouse forget-user USER_ID`: the right to erasure, across every table and file.

In this order, each step safe to run again if the one before it was interrupted:

1. The user's salted hash goes into governance.erased_users first: from that commit on, the
   stream and the batch ingest quarantine the user's ratings ("erased user"), so nothing
   re-creates them while the erasure runs or afterwards.
2. Under the tables lock (the stream takes it for each micro-batch, so no batch is in flight),
   every Delta table of bronze, silver, gold and ml with a user-id column loses the user's rows
   (`DELETE`; both directions of a similarity edge), and bronze.quarantine the raw lines that are
   the user's records. The gold tables dbt rebuilds (`dbt run` of the marts) then hold
   aggregates without the user.
3. Physically: `REORG TABLE ... APPLY (PURGE)` where deletion vectors are on (the deleted rows
   still sit in the old files otherwise), then `VACUUM ... RETAIN 0 HOURS` with Delta's retention
   check off for that one statement (the reason goes into the audit): the files of every older
   version are deleted, so time travel to before the erasure ends here. Then every Parquet file
   left under each table is read directly (no Delta, no deletion vector) to prove no row is left.
4. Files: the landing folder, the stream's inbox, archive and dead letters, the holdout and the
   MLflow artifacts (a model's per-user Parquet files) are rewritten without the user's lines
   and rows, each atomically.
5. MLflow: every finished run of the project's experiments is tagged `lakehouse.retrain` (its
   models learnt from the user); the next `lakehouse train` clears the tags.
6. An audit row in governance.erasure_log: the hash, when, what was removed where, how.

A second erasure of the same user finds nothing and says so, writing nothing.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, locks, secrets, tables
from lakehouse.governance.records import USER_ID_COLUMNS, line_pattern, user_hash
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCANNED_SCHEMAS = ("bronze", "silver", "gold", "ml")
RETRAIN_TAG = "lakehouse.retrain"
# Why the retention check is overridden, recorded with every erasure.
PURGE_REASON = ("VACUUM RETAIN 0 HOURS with spark.databricks.delta.retentionDurationCheck.enabled=false for this "
                "statement only: the right to erasure outranks time travel; the stream was held off by the tables lock")
# Text files are rewritten line by line; larger ones would be read whole (the inbox's are small).
TEXT_SUFFIXES = (".csv", ".tsv", ".dat", ".data", ".txt", ".jsonl", ".json", ".base", ".test")


@dataclass
class Erasure:
    erasure_id: str
    user_hash: str
    noop: bool = False
    already_erased_at: datetime | None = None
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows removed
    files: dict[str, int] = field(default_factory=dict)  # file -> lines or rows removed
    purged: list[str] = field(default_factory=list)  # tables reorganised / vacuumed
    retrain: list[str] = field(default_factory=list)  # MLflow run ids tagged
    seconds: float = 0.0

    @property
    def rows_removed(self) -> int:
        return sum(self.tables.values())

    @property
    def lines_removed(self) -> int:
        return sum(self.files.values())


class ErasureCheckFailed(RuntimeError):
    """A data file still holds the user's rows after the purge: the erasure is not complete."""


def forget_user(spark: SparkSession, settings: Settings, user_id: int, *,
                log: Callable[[str], None] = print) -> Erasure:
    if not 0 < int(user_id) <= 2_147_483_647:
        raise ValueError(f"user id {user_id!r}: expected a positive MovieLens user id")
    started = time.monotonic()
    digest = user_hash(secrets.erasure_salt(settings), user_id)
    erasure = Erasure(uuid.uuid4().hex, digest)
    # A second request (the API's DELETE twice) waits for the first, then finds nothing to do.
    with locks.exclusive(settings, "erasure", wait=locks.TABLES_WAIT_SECONDS, what="`lakehouse forget-user`"):
        requested_at = delta.utc_now()
        for table in tables.GOVERNANCE:
            delta.create_if_missing(spark, table)
        erasure.already_erased_at = _erased_at(spark, digest)
        if erasure.already_erased_at is None:
            _block(spark, digest, requested_at, erasure.erasure_id)
            log("erasure: the user is blocked: new ratings of theirs are quarantined as \"erased user\"")
        if erasure.already_erased_at is not None and not _held_rows(spark, user_id) \
                and not any(_user_files(settings, user_id, rewrite=False)):
            erasure.noop = True
            erasure.seconds = time.monotonic() - started
            return erasure
        # The batch ingest, the stream's batches and housekeeping write tables: none may have a
        # commit in flight while old files are purged.
        with locks.exclusive(settings, "ingest", wait=locks.TABLES_WAIT_SECONDS, what="`lakehouse ingest`"), \
                locks.exclusive(settings, locks.TABLES, wait=locks.TABLES_WAIT_SECONDS, what="a stream batch or housekeeping"):
            # Files first, while no batch runs: the inbox must not be read half rewritten.
            for path, removed in _user_files(settings, user_id, rewrite=True):
                erasure.files[_relative(settings, path)] = removed
                log(f"erasure: {removed:,} records removed from {path}")
            held = _held_rows(spark, user_id)

            def delete(name: str) -> None:
                predicate, rows = held[name]
                delta.retry_conflicts(lambda: delta.delete(spark, name, predicate), what=f"delete from {name}", log=log)
                log(f"erasure: {rows:,} rows deleted from {name}")

            delta.per_table(delete, held)
            erasure.tables.update({name: rows for name, (_, rows) in held.items()})
            rebuilt = _rebuild_marts(settings, log)
            touched = sorted({*held, *rebuilt})
            delta.per_table(lambda name: _purge(spark, name, log), touched)
            erasure.purged.extend(touched)
            _check_files(spark, touched, user_id)
        erasure.retrain = _tag_runs_for_retraining(settings, erasure.erasure_id)
        _audit(spark, erasure, requested_at)
    erasure.seconds = time.monotonic() - started
    return erasure


# ---- governance tables ------------------------------------------------------------------------

def _erased_at(spark: SparkSession, digest: str) -> datetime | None:
    row = spark.table(tables.ERASED_USERS.name).where(f"user_hash = {delta.quote(digest)}").first()
    return row["erased_at"] if row else None


def _block(spark: SparkSession, digest: str, at: datetime, erasure_id: str) -> None:
    frame = spark.createDataFrame([(digest, at, erasure_id)], tables.ERASED_USERS.schema)
    delta.append(frame, tables.ERASED_USERS)


def _audit(spark: SparkSession, erasure: Erasure, requested_at: datetime) -> None:
    row = (erasure.erasure_id, erasure.user_hash, requested_at, delta.utc_now(), erasure.rows_removed,
           erasure.lines_removed, erasure.tables, erasure.files,
           f"{len(erasure.purged)} tables: REORG TABLE ... APPLY (PURGE) where deletion vectors are on; {PURGE_REASON}",
           f"{len(erasure.retrain)} MLflow runs tagged {RETRAIN_TAG}")
    delta.append(spark.createDataFrame([row], tables.ERASURE_LOG.schema), tables.ERASURE_LOG)


# ---- tables -----------------------------------------------------------------------------------

def user_columns(name: str, columns: list[str]) -> list[str]:
    declared = tables.BY_NAME.get(name)
    if declared is not None and declared.user_ids:
        return [c for c in declared.user_ids if c in columns]
    return [c for c in USER_ID_COLUMNS if c in columns]


def user_predicate(spark: SparkSession, name: str, user_id: int) -> str | None:
    """The SQL predicate of the user's rows in table `name`; None when it holds no user data."""
    columns = spark.table(name).columns
    terms = [f"{c} = {int(user_id)}" for c in user_columns(name, columns)]
    if name == tables.QUARANTINE.name:
        # A quarantined line keeps its raw text: the user's record whatever was wrong with it.
        terms.append(f"raw_line rlike {delta.quote(line_pattern(user_id))}")
    return " or ".join(terms) or None


def _held_rows(spark: SparkSession, user_id: int) -> dict[str, tuple[str, int]]:
    """Each table that holds rows of the user: (the predicate of its rows, how many)."""
    def rows_of(name: str) -> tuple[str, str | None, int]:
        predicate = user_predicate(spark, name, user_id)
        return name, predicate, spark.table(name).where(predicate).count() if predicate is not None else 0

    found = delta.per_table(rows_of, delta.lakehouse_tables(spark, SCANNED_SCHEMAS))
    return {name: (predicate, rows) for name, predicate, rows in found if rows}


def _rebuild_marts(settings: Settings, log: Callable[[str], None]) -> list[str]:
    """Rebuild the gold tables (views need nothing) so the aggregates no longer count the user."""
    from lakehouse.dbt_runner import ML_NODES, run_dbt

    exclude = ["config.materialized:view"]
    if not _ml_built(settings):
        exclude.append(ML_NODES)  # before the first training the ml marts have no inputs
    outcome = run_dbt(settings, "run", "--select", "marts", "--exclude", *exclude)
    if not outcome.ok:
        raise RuntimeError(f"erasure: rebuilding the marts failed: {', '.join(outcome.failures) or 'see the dbt log'}")
    log(f"erasure: gold marts rebuilt ({outcome.describe()})")
    return [f"gold.{node.split('.')[-1]}" for node in outcome.succeeded]


def _ml_built(settings: Settings) -> bool:
    return (settings.warehouse_dir / "ml.db" / "recommendations" / "_delta_log").is_dir()


def _purge(spark: SparkSession, name: str, log: Callable[[str], None]) -> None:
    properties = {r["key"]: r["value"] for r in spark.sql(f"show tblproperties {name}").collect()}
    if properties.get("delta.enableDeletionVectors", "false").lower() == "true":
        spark.sql(f"reorg table {name} apply (purge)").collect()
    delta.vacuum(spark, name, 0)
    log(f"erasure: {name} purged")


def _check_files(spark: SparkSession, names: list[str], user_id: int) -> None:
    """Read every Parquet file under each table directly: none may hold a row of the user."""
    import pyarrow.parquet as pq

    pattern = re.compile(line_pattern(user_id))
    for name in names:
        for path in delta.location(spark, name).rglob("*.parquet"):
            if "_delta_log" in path.parts:
                continue
            found = parquet_rows_of(pq.read_table(path), user_columns(name, pq.read_schema(path).names), user_id,
                                    pattern if name == tables.QUARANTINE.name else None)
            if found:
                raise ErasureCheckFailed(f"{path} still holds {found} rows of the user after the purge of {name}")


def user_mask(table, columns: list[str], user_id: int, raw_pattern: re.Pattern | None = None):
    """A pyarrow boolean mask of the user's rows (by id columns, or by raw line); None: no such column."""
    import pyarrow.compute as pc

    mask = None
    for column in columns:
        hit = pc.equal(table[column], int(user_id))
        mask = hit if mask is None else pc.or_(mask, hit)
    if raw_pattern is not None and "raw_line" in table.column_names:
        hit = pc.match_substring_regex(table["raw_line"], raw_pattern.pattern)
        mask = hit if mask is None else pc.or_(mask, hit)
    return None if mask is None else pc.fill_null(mask, False)


def parquet_rows_of(table, columns: list[str], user_id: int, raw_pattern: re.Pattern | None = None) -> int:
    import pyarrow.compute as pc

    mask = user_mask(table, columns, user_id, raw_pattern)
    return 0 if mask is None else int(pc.sum(mask).as_py() or 0)


# ---- files ------------------------------------------------------------------------------------

def file_roots(settings: Settings) -> list[Path]:
    """Every folder outside the warehouse that may hold a user's records."""
    return [settings.stream_dir, settings.stream_inbox_dir.parent, settings.stream_archive_dir,
            settings.stream_dead_letter_dir, settings.holdout_dir, settings.checkpoint_dir, settings.artifacts_dir]


def _user_files(settings: Settings, user_id: int, *, rewrite: bool) -> Iterator[tuple[Path, int]]:
    """Every file holding the user's records, with how many (file, records); rewritten without
    them when `rewrite`."""
    pattern = re.compile(line_pattern(user_id))
    seen: set[Path] = set()
    for root in file_roots(settings):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path in seen or not path.is_file() or path.is_symlink():
                continue
            seen.add(path)
            removed = _rewrite(path, user_id, pattern, rewrite)
            if removed:
                yield path, removed


def _rewrite(path: Path, user_id: int, pattern: re.Pattern, rewrite: bool) -> int:
    if path.suffix == ".parquet":
        return _rewrite_parquet(path, user_id, rewrite)
    if path.suffix.lower() not in TEXT_SUFFIXES and not path.name.startswith("api-"):
        return 0
    data = path.read_bytes()
    text = data.decode("latin-1")  # every byte maps to one character: rewriting keeps the rest exact
    if not pattern.search(text):
        return 0
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not pattern.search(line)]
    if rewrite:
        _replace(path, "".join(kept).encode("latin-1"))
    return len(lines) - len(kept)


def _rewrite_parquet(path: Path, user_id: int, rewrite: bool) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ml.serving_model import user_columns as artifact_user_columns

    columns = artifact_user_columns(path.name, pq.read_schema(path).names)
    if not columns:
        return 0
    table = pq.read_table(path)
    mask = user_mask(table, columns, user_id)
    removed = int(pc.sum(mask).as_py() or 0)
    if removed and rewrite:
        buffer = pa.BufferOutputStream()
        pq.write_table(table.filter(pc.invert(mask)), buffer)
        _replace(path, buffer.getvalue().to_pybytes())
    return removed


def _replace(path: Path, data: bytes) -> None:
    """Write `data` over `path` atomically, keeping its mode and modification time (the stream
    reads a landed file's mtime as its landing time)."""
    stat = path.stat()
    temporary = path.with_name(f".{path.name}.erasure.tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temporary, stat.st_mode & 0o777)
    os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(temporary, path)


def _relative(settings: Settings, path: Path) -> str:
    for root in (settings.home, settings.stream_dir, settings.artifacts_dir):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return path.name


# ---- MLflow -----------------------------------------------------------------------------------

def _tag_runs_for_retraining(settings: Settings, erasure_id: str) -> list[str]:
    """Tag the finished runs of the project's experiments: their models learnt from the user."""
    from ml import tracking

    client = tracking.configure(settings)
    experiments = [e.experiment_id for e in client.search_experiments()
                   if e.name in tracking.EXPERIMENTS.values()]
    if not experiments:
        return []
    runs = client.search_runs(experiments, filter_string="attributes.status = 'FINISHED'", max_results=50_000)
    for run in runs:
        client.set_tag(run.info.run_id, RETRAIN_TAG, f"erasure {erasure_id}")
    return [run.info.run_id for run in runs]


def clear_retrain_tags(settings: Settings) -> int:
    """After a training: the champions are new, and the tagged runs are history."""
    from ml import tracking

    client = tracking.configure(settings)
    experiments = [e.experiment_id for e in client.search_experiments() if e.name in tracking.EXPERIMENTS.values()]
    if not experiments:
        return 0
    runs = client.search_runs(experiments, filter_string=f"tags.`{RETRAIN_TAG}` LIKE 'erasure %'", max_results=50_000)
    for run in runs:
        client.delete_tag(run.info.run_id, RETRAIN_TAG)
    return len(runs)
