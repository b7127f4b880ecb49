"""The few Delta Lake operations the Python writers need, each one Delta transaction, written once.

Delta's Python `DeltaTable` API needs the Delta Connect server, which is not served here, so
everything is SQL or DataFrame writer options over Spark Connect:

- `replace`: `create or replace` in one commit (readers see the old table or the new one, never
  none; the history is kept, so `VERSION AS OF` reaches the old one);
- `append_once`: an idempotent append (`txnAppId`/`txnVersion`, as Delta documents for
  foreachBatch): a micro-batch run again after a crash adds nothing twice;
- `replace_where`: an atomic overwrite of the rows a predicate selects (one model's factors);
- `merge`: `MERGE INTO` on the table's keys, optionally deleting the unmatched rows of a scope
  (a user's old top-N that is now shorter);
- `delete`, `version`, `history`, and `retry_conflicts` for Delta's optimistic-concurrency
  conflicts, retried with backoff where the operation may safely run again;
- `vacuum` with a retention of the caller's (housekeeping's policy, an erasure's 0 hours),
  `lakehouse_tables`, the Delta tables of the lakehouse's schemas, and `per_table`, one
  operation over many tables, a few at a time.
"""
from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lakehouse.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

R = TypeVar("R")
T = TypeVar("T")

# The schemas the lakehouse writes: its jobs' (bronze, ml, governance) and dbt's (silver, gold).
SCHEMAS = ("bronze", "silver", "gold", "ml", "governance")
# Delta refuses a VACUUM that keeps less than its default (7 days) while this check is on.
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
DEFAULT_RETENTION_HOURS = 168.0

# Delta's conflict errors (io.delta.exceptions.*): another commit won the race; run again on the
# new snapshot. Over Spark Connect they arrive as messages carrying the error class.
CONFLICT = re.compile(
    r"DELTA_CONCURRENT_|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED|ConcurrentAppendException|"
    r"ConcurrentDeleteReadException|ConcurrentDeleteDeleteException|ConcurrentTransactionException|"
    r"MetadataChangedException|ProtocolChangedException|ConcurrentWriteException"
)


def utc_now() -> datetime:
    """A timestamp to store: naive UTC, as the server's session time zone is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def name(table: Table | str) -> str:
    return table.name if isinstance(table, Table) else table


def _ordered(df: DataFrame, table: Table | str) -> DataFrame:
    """`df` with the declared columns, in order, cast to the declared types where the catalogue has
    them (a writer's schema contract: every writer of a table writes the same schema)."""
    if isinstance(table, Table) and table.columns:
        missing = [c for c in table.columns if c not in df.columns]
        if missing:
            raise ValueError(f"{table.name}: the rows lack the declared columns {missing}")
        if table.schema is None:
            return df.select(*table.columns)
        from pyspark.sql import functions as F

        return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in table.schema.fields])
    return df


def create_if_missing(spark: SparkSession, table: Table) -> bool:
    """Create `table` empty from its declared schema; True if this call created it."""
    if spark.catalog.tableExists(table.name):
        return False
    if table.schema is None:
        raise ValueError(f"{table.name} has no declared schema to create it from")
    spark.sql(f"create schema if not exists {table.layer}")
    try:
        spark.createDataFrame([], table.schema).writeTo(table.name).using("delta").create()
    except Exception as error:  # noqa: BLE001 - a concurrent creator won: the table is there
        if "TABLE_OR_VIEW_ALREADY_EXISTS" not in str(error) and "already exists" not in str(error):
            raise
        return False
    return True


def replace(df: DataFrame, table: Table | str) -> None:
    """The whole table replaced by `df` in one commit (created if missing)."""
    target = name(table)
    df.sparkSession.sql(f"create schema if not exists {target.split('.', 1)[0]}")
    _ordered(df, table).writeTo(target).using("delta").createOrReplace()


def append(df: DataFrame, table: Table | str) -> None:
    _ordered(df, table).write.format("delta").mode("append").saveAsTable(name(table))


def append_once(df: DataFrame, table: Table | str, *, app_id: str, version: int) -> None:
    """Append unless this (app_id, version) has committed to the table before: Delta skips it."""
    (_ordered(df, table).write.format("delta").mode("append")
     .option("txnAppId", app_id).option("txnVersion", version).saveAsTable(name(table)))


def replace_where(df: DataFrame, table: Table | str, predicate: str) -> None:
    """Replace the rows matching `predicate` by `df` (all of which must match it), in one commit."""
    target = name(table)
    if not df.sparkSession.catalog.tableExists(target):
        replace(df, table)
        return
    (_ordered(df, table).write.format("delta").mode("overwrite").option("replaceWhere", predicate)
     .saveAsTable(target))


def merge(df: DataFrame, table: Table, *, delete_unmatched_in: str | None = None) -> None:
    """`MERGE INTO` on the table's keys: matched rows updated, new ones inserted; with
    `delete_unmatched_in` (a column), target rows whose value of that column occurs in `df` and that
    `df` no longer has are deleted (e.g. a user's old top-N beyond the new one). One commit."""
    spark = df.sparkSession
    if not table.keys:
        raise ValueError(f"{table.name} declares no keys to merge on")
    source = _ordered(df, table)
    view = f"merge_source_{table.name.replace('.', '_')}_{random.randrange(1 << 30)}"
    source.createOrReplaceTempView(view)
    on = " and ".join(f"t.{k} = s.{k}" for k in table.keys)
    delete = ""
    if delete_unmatched_in is not None:
        # Delta refuses subqueries in MERGE conditions: the scope's values go in as literals.
        values = [r[0] for r in source.select(delete_unmatched_in).distinct().collect()]
        if values:
            listed = ", ".join(str(int(v)) if isinstance(v, int) else quote(str(v)) for v in values)
            delete = f" when not matched by source and t.{delete_unmatched_in} in ({listed}) then delete"
    try:
        spark.sql(f"merge into {table.name} as t using {view} as s on {on} "
                  f"when matched then update set * when not matched then insert *{delete}")
    finally:
        spark.catalog.dropTempView(view)


def delete(spark: SparkSession, table: Table | str, predicate: str) -> None:
    spark.sql(f"delete from {name(table)} where {predicate}")


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def version(spark: SparkSession, table: Table | str) -> int:
    """The table's current Delta version."""
    return int(spark.sql(f"describe history {name(table)} limit 1").first()["version"])


def history(spark: SparkSession, table: Table | str, limit: int = 1) -> list:
    """The newest `limit` commits: version, timestamp, operation, operationMetrics."""
    return spark.sql(f"describe history {name(table)} limit {int(limit)}").select(
        "version", "timestamp", "operation", "operationMetrics").collect()


def is_conflict(error: BaseException) -> bool:
    return bool(CONFLICT.search(str(error)))


def retry_conflicts(operation: Callable[[], R], *, what: str, attempts: int = 6,
                    log: Callable[[str], None] | None = None, base_delay: float = 0.5) -> R:
    """Run `operation`; on a Delta conflict run it again (from a fresh snapshot) with exponential
    backoff and jitter. Only for operations that are correct when run again as a whole."""
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except Exception as error:  # noqa: BLE001 - only conflicts are retried; the rest re-raised
            if not is_conflict(error) or attempt == attempts:
                raise
            delay = base_delay * 2 ** (attempt - 1) * (0.5 + random.random())
            if log is not None:
                log(f"{what}: Delta conflict with a concurrent commit (attempt {attempt}/{attempts}); "
                    f"retrying in {delay:.1f}s: {str(error).splitlines()[0][:200]}")
            time.sleep(delay)
    raise AssertionError("unreachable")


def refresh(spark: SparkSession, tables: Sequence[Table | str]) -> None:
    """Drop this session's cached plans of `tables` (Delta reads the newest snapshot anyway)."""
    for table in tables:
        spark.catalog.refreshTable(name(table))


def local_path(uri: str) -> Path:
    """A file: URI Spark reports (file:/x, file:///x, percent-encoded) as a local path."""
    from urllib.parse import unquote

    return Path(unquote(re.sub(r"^file:(//)?", "", uri)))


def location(spark: SparkSession, table: Table | str) -> Path:
    """Where the table's files are (the warehouse is on the local file system)."""
    return local_path(spark.sql(f"describe detail {name(table)}").first()["location"])


def lakehouse_tables(spark: SparkSession, schemas: Sequence[str] = SCHEMAS) -> Iterator[str]:
    """Every table (no views) of `schemas` that exist, as schema.table."""
    existing = {db.name for db in spark.catalog.listDatabases()}
    for schema in schemas:
        if schema in existing:
            for table in spark.catalog.listTables(schema):
                if not table.isTemporary and table.tableType != "VIEW":
                    yield f"{schema}.{table.name}"


# Sessions with the retention check off, and how many of their VACUUMs need it off right now.
_RETENTION_CHECK_OFF: dict[int, int] = {}
_RETENTION_CHECK_LOCK = threading.Lock()


@contextmanager
def _retention_check_off(spark: SparkSession) -> Iterator[None]:
    """The session's retention check off while any of its short VACUUMs runs: counted, so that
    VACUUMs of one session on several threads (`per_table`) never turn it back on under another."""
    key = id(spark)
    with _RETENTION_CHECK_LOCK:
        if not _RETENTION_CHECK_OFF.get(key):
            spark.conf.set(RETENTION_CHECK, "false")
        _RETENTION_CHECK_OFF[key] = _RETENTION_CHECK_OFF.get(key, 0) + 1
    try:
        yield
    finally:
        with _RETENTION_CHECK_LOCK:
            _RETENTION_CHECK_OFF[key] -= 1
            if not _RETENTION_CHECK_OFF[key]:
                del _RETENTION_CHECK_OFF[key]
                spark.conf.unset(RETENTION_CHECK)


def per_table(operation: Callable[[T], R], items: Iterable[T], *, threads: int = 4) -> list[R]:
    """`operation(item)` for every item, up to `threads` at a time; the results in the items'
    order, the first error raised. A table's DDL, count, DELETE or VACUUM is mostly metastore and
    Delta-log round trips, which the server overlaps (a Connect session takes concurrent
    requests): one table after another, creating bronze's tables was a third of a fresh ingest."""
    items = list(items)
    if len(items) <= 1:
        return [operation(item) for item in items]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="per-table") as pool:
        return list(pool.map(operation, items))


def vacuum(spark: SparkSession, table: Table | str, hours: float, *, dry_run: bool = False) -> tuple[int, int | None]:
    """`VACUUM ... RETAIN hours HOURS`: (files deleted, their bytes; None on a dry run). Below
    Delta's default the caller has chosen to cut time travel short (an erasure, a configured
    retention): the retention check is off for these statements only."""
    statement = f"vacuum {name(table)} retain {hours:g} hours" + (" dry run" if dry_run else "")
    if hours < DEFAULT_RETENTION_HOURS:
        with _retention_check_off(spark):
            rows = spark.sql(statement).collect()
    else:
        rows = spark.sql(statement).collect()
    if dry_run:
        return len(rows), None
    # VACUUM logs itself in the table's history: VACUUM START carries what it deleted.
    for entry in history(spark, table, limit=4):
        if entry["operation"] == "VACUUM START":
            metrics = entry["operationMetrics"] or {}
            return int(metrics.get("numFilesToDelete", 0)), int(metrics.get("sizeOfDataToDelete", 0))
    return 0, 0
