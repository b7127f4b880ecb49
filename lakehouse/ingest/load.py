"""Load one MovieLens dataset into bronze, exactly once per file, with nothing lost.

Per file: parse on the client (row-level checks), ship good rows in Arrow chunks to a stage
table, run the set-level checks in Spark (lakehouse/ingest/validate.py), append accepted rows to
the bronze table and every rejected row to `bronze.quarantine`, then record the file in
`bronze.ingest_log`. That ledger row is the commit: each file's rows carry their own `load_id`, so
a load that died before its ledger row is deleted whole on the next run (dbt's staging reads only
committed loads meanwhile), and a file whose checksum is already in the ledger is skipped. Every
write is a Delta commit; one ingest at a time per data directory (a lock file).

The checksum in the ledger is that of exactly the bytes parsed: the parser reads the file through
a Snapshot that hashes what it hands out. Whether a file needs loading is decided before, on a
checksum of the file as it was then; a load whose parsed bytes are not those, or whose file changed
during the read (still being written), is refused and not committed, so a ledger row never
describes bytes other than the rows loaded, and a file that is later different is never
"unchanged since" a load of another version of it.

A file whose every row is quarantined is recorded like any other (nothing is lost), but the
report says so (`IngestReport.problems`): the CLI warns and exits non-zero.

With a holdout fraction the latest ratings stay out of bronze and go to a file for the replay
(lakehouse/ingest/holdout.py): per file, rows read = loaded + quarantined + held out.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import reduce
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import delta, tables
from lakehouse.datasets import FileKind, holdout_file
from lakehouse.governance.records import flag_erased
from lakehouse.ingest import validate
from lakehouse.ingest.acquire import DatasetFiles, FileChangedError
from lakehouse.ingest.holdout import check_fraction, find_cutoff, remove_holdout, write_holdout
from lakehouse.ingest.parsers import Rejected, parse_file

CHUNK_ROWS = 200_000
# Movies first: the ratings' unknown-movie check reads bronze.movies.
LOAD_ORDER: tuple[FileKind, ...] = ("movies", "users", "ratings")
TARGETS = {"movies": tables.MOVIES, "users": tables.USERS, "ratings": tables.RATINGS}
KEYS = {"movies": "movie_id", "users": "user_id"}
LINEAGE_ADDED_IN_SPARK = ("source_file", "ingested_at", "load_id")
HELD_OUT_COLUMNS = ["user_id", "movie_id", "rating", "epoch_seconds"]


class IngestError(RuntimeError):
    pass


class HoldoutMismatch(IngestError):
    """The same ratings file is in bronze under another holdout fraction."""


@dataclass(frozen=True)
class FileReport:
    source_file: str
    target_table: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    seconds: float
    skipped_reason: str = ""  # set when the file was not loaded again
    rows_held_out: int = 0  # kept out of bronze for the replay (`--holdout-fraction`)
    earlier_load_all_quarantined: bool = False  # skipped, and its earlier load quarantined every row

    @property
    def conserved(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_quarantined + self.rows_held_out

    @property
    def all_quarantined(self) -> bool:
        """Rows were read and every one was quarantined: this load's, or (a file skipped as
        unchanged) the earlier load's. Most likely the wrong file, or another format."""
        return self.earlier_load_all_quarantined or 0 < self.rows_read == self.rows_quarantined


@dataclass
class IngestReport:
    dataset: str
    origin: str
    files: list[FileReport] = field(default_factory=list)
    recovered_loads: list[str] = field(default_factory=list)
    reasons: list[tuple[str, int]] = field(default_factory=list)  # quarantine reasons of this run
    holdout_fraction: float = 0.0
    holdout_file: Path | None = None  # where the held-out ratings are, when a fraction is in force

    @property
    def problems(self) -> list[str]:
        """Why this ingest, though it ran to its end, is not a success; empty when it is one."""
        found = []
        for f in self.files:
            if not f.conserved:
                found.append(f"{f.source_file}: rows read != loaded + quarantined + held out")
            if f.earlier_load_all_quarantined:
                found.append(f"{f.source_file} is {f.skipped_reason}: nothing of it is in {f.target_table}")
            elif f.all_quarantined:
                found.append(
                    f"{f.source_file}: all {f.rows_read:,} rows were quarantined, none loaded into "
                    f"{f.target_table}; is it the dataset's own file? The reasons are in bronze.quarantine"
                )
        return found

    @property
    def ok(self) -> bool:
        return not self.problems


class EarlierLoad(NamedTuple):
    """The committed load of a file's exact bytes, from the ledger."""

    load_id: str
    holdout_fraction: float  # null in ledgers older than the column: 0
    rows_read: int
    rows_quarantined: int

    @property
    def all_quarantined(self) -> bool:
        return 0 < self.rows_read == self.rows_quarantined


def stage_schema(kind: FileKind) -> T.StructType:
    """The bronze columns the parser provides, plus the raw line for the set-level rejects."""
    target = TARGETS[kind].schema
    fields = [f for f in target.fields if f.name not in LINEAGE_ADDED_IN_SPARK]
    return T.StructType([*fields, T.StructField("raw_line", T.StringType(), False)])


def ensure_tables(spark: SparkSession) -> set[str]:
    """The bronze tables of the batch ingest and of the stream (dbt's sources exist before the
    first stream runs), created empty as Delta tables, or brought up to their declared columns.
    Returns the names of the tables this call created (empty: nothing in them to recover)."""
    wanted = (*tables.BRONZE_INGEST, *tables.BRONZE_STREAM)

    def ensure(table: tables.Table) -> bool:
        created = delta.create_if_missing(spark, table)
        if not created:
            add_missing_columns(spark, table)
        return created

    spark.sql("create schema if not exists bronze")  # once, before the threads race to create it
    created = delta.per_table(ensure, wanted)
    return {table.name for table, new in zip(wanted, created) if new}


def add_missing_columns(spark: SparkSession, table: tables.Table) -> list[str]:
    """Bring a table made by an older version up to its declared schema (new columns are nullable)."""
    present = {name.lower() for name in spark.table(table.name).columns}
    missing = [f for f in table.schema.fields if f.name.lower() not in present]
    if not missing:
        return []
    required = [f.name for f in missing if not f.nullable]
    if required:
        raise IngestError(f"{table.name} lacks the columns {', '.join(required)}; run ingest with --replace")
    # Each at its declared place (load_id stays last), as Delta's ADD COLUMNS ... AFTER allows.
    declared = [f.name for f in table.schema.fields]
    placed = []
    for f in missing:
        index = declared.index(f.name)
        where = f"after {declared[index - 1]}" if index else "first"
        placed.append(f"{f.name} {f.dataType.simpleString()} {where}")
    spark.sql(f"alter table {table.name} add columns ({', '.join(placed)})")
    return [f.name for f in missing]


def drop_bronze(spark: SparkSession) -> None:
    """Every bronze table, the stream's too (its ratings belong to the dataset being replaced), and
    gold.ratings: dbt merges new ratings into it incrementally, so after a reload it must start
    again from nothing (the next `dbt build` rebuilds it whole)."""
    for table in (*tables.BRONZE_INGEST, *tables.BRONZE_STREAM, tables.GOLD_RATINGS):
        spark.sql(f"drop table if exists {table.name}")


def committed(spark: SparkSession) -> DataFrame:
    return spark.table(tables.INGEST_LOG.name)


def recover_unfinished_loads(spark: SparkSession, fresh: set[str] = frozenset()) -> list[str]:
    """Delete the rows of every load that never reached the ledger (a crash mid-load). Tables in
    `fresh` were created empty just now: nothing to look at there."""
    loaded = [t for t in (tables.RATINGS, tables.MOVIES, tables.USERS, tables.QUARANTINE) if t.name not in fresh]
    if not loaded:
        return []
    done = {r.load_id for r in committed(spark).select("load_id").distinct().collect()}
    # Every table's loads in one query (one round trip, not one per table).
    loads = [spark.table(t.name).select(F.lit(t.name).alias("table_name"), "load_id").distinct() for t in loaded]
    present: dict[str, set[str]] = {}
    for row in reduce(DataFrame.unionByName, loads).collect():
        present.setdefault(row.table_name, set()).add(row.load_id)
    dropped = []
    for table in loaded:
        ids = present.get(table.name, set())
        # The stream's quarantine rows have their own ledger (bronze.stream_batches).
        for load_id in sorted(ids - done - tables.stream_load_ids(ids)):
            delta.delete(spark, table, f"load_id = {delta.quote(load_id)}")
            dropped.append(f"{table.name}:{load_id}")
    return dropped


def check_single_dataset(spark: SparkSession, dataset: str) -> None:
    others = [
        r.dataset
        for r in committed(spark).select("dataset").distinct().collect()
        if r.dataset != dataset
    ]
    if others:
        raise IngestError(
            f"bronze already holds {', '.join(others)}; MovieLens ids are not shared between "
            f"datasets. Run `lakehouse ingest --dataset {dataset} --replace` to replace it, or use "
            "another LAKEHOUSE_HOME."
        )


def already_loaded(spark: SparkSession, target_table: str, sha256: str) -> EarlierLoad | None:
    """The load that already brought these exact bytes into `target_table`, wherever they lay."""
    rows = (
        committed(spark)
        .where((F.col("target_table") == target_table) & (F.col("file_sha256") == sha256))
        .select(
            "load_id", F.coalesce(F.col("holdout_fraction"), F.lit(0.0)).alias("fraction"),
            "rows_read", "rows_quarantined",
        )
        .limit(1)
        .collect()
    )
    return EarlierLoad(*rows[0]) if rows else None


def check_same_holdout(previous: EarlierLoad, fraction: float, source_file: str, dataset: str) -> None:
    """The same ratings under another fraction is another split of bronze: refuse, don't mix."""
    load_id, earlier = previous.load_id, previous.holdout_fraction
    if not math.isclose(earlier, fraction, rel_tol=0.0, abs_tol=1e-12):
        raise HoldoutMismatch(
            f"{source_file} was loaded by {load_id} with --holdout-fraction {earlier:g}, not {fraction:g}; "
            f"bronze holds the other split. Run `lakehouse ingest --dataset {dataset} "
            f"--holdout-fraction {fraction:g} --replace` to reload it, or keep --holdout-fraction {earlier:g}."
        )


def to_arrow(rows: list[tuple], schema: T.StructType) -> pa.Table:
    """Rows (NamedTuples in the stage schema's order) to an Arrow table, column by column."""
    columns = list(zip(*rows))
    arrow_types = {
        T.IntegerType(): pa.int32(),
        T.LongType(): pa.int64(),
        T.DoubleType(): pa.float64(),
        T.StringType(): pa.string(),
    }
    return pa.table(
        {f.name: pa.array(col, type=arrow_types[f.dataType]) for f, col in zip(schema.fields, columns)}
    )


def quarantine_frame(
    spark: SparkSession, rejects: list[Rejected], source_file: str, target: str, load_id: str, at: datetime
) -> DataFrame:
    rows = [
        (source_file, r.line_number, r.raw_line, r.reason, target, at, load_id) for r in rejects
    ]
    return spark.createDataFrame(rows, tables.QUARANTINE.schema)


def with_lineage(staged: DataFrame, kind: FileKind, source_file: str, load_id: str, at: datetime) -> DataFrame:
    """Accepted stage rows in the bronze table's column order."""
    lineage = {
        "source_file": F.lit(source_file),
        "ingested_at": F.lit(at).cast("timestamp"),
        "load_id": F.lit(load_id),
    }
    target = TARGETS[kind].schema
    return staged.select(
        *[lineage[f.name].alias(f.name) if f.name in lineage else F.col(f.name) for f in target.fields]
    )


def rejected_to_quarantine(validated: DataFrame, source_file: str, target: str, load_id: str, at: datetime) -> DataFrame:
    return validated.where(F.col("reason").isNotNull()).select(
        F.lit(source_file).alias("source_file"),
        F.col("line_number"),
        F.col("raw_line"),
        F.col("reason"),
        F.lit(target).alias("target_table"),
        F.lit(at).cast("timestamp").alias("quarantined_at"),
        F.lit(load_id).alias("load_id"),
    )


def load_count(spark: SparkSession, table: tables.Table, load_id: str) -> int:
    return spark.table(table.name).where(F.col("load_id") == load_id).count()


def load_file(
    spark: SparkSession,
    files: DatasetFiles,
    kind: FileKind,
    load_id: str,
    now: datetime,
    on_rows: Callable[[int], None] | None = None,
    holdout_fraction: float = 0.0,
    holdout_path: Path | None = None,
    checked_sha256: str | None = None,
    erasure_salt: str = "",
) -> FileReport:
    """Load one file of the dataset; see the module docstring for the protocol.

    `checked_sha256` is the checksum by which the file was found to need loading: the load is
    refused (IngestError, nothing committed) when the bytes parsed are not those, or when the file
    changed while it was read. The ledger records the digest of the bytes parsed.
    """
    started = time.monotonic()
    spec = files.dataset.file(kind)
    assert spec is not None
    source_file = files.relative_name(kind)
    target = TARGETS[kind]
    stage_table = tables.ingest_stage(kind).name
    schema = stage_schema(kind)
    spark.sql(f"drop table if exists {stage_table}")

    read = 0
    rejected_rows = 0
    good: list[tuple] = []
    rejects: list[Rejected] = []
    holding_out = kind == "ratings" and holdout_fraction > 0
    if holding_out and holdout_path is None:
        raise ValueError("a holdout fraction needs a file for the held-out ratings")
    seconds: list[np.ndarray] = []  # epoch seconds of the row-level-valid ratings, for the cutoff

    def flush() -> None:
        nonlocal good, rejects
        if good:
            arrow = to_arrow(good, schema)
            if holding_out:
                seconds.append(arrow.column("epoch_seconds").to_numpy())
            chunk = spark.createDataFrame(arrow)
            delta.append(chunk, stage_table)
        if rejects:
            frame = quarantine_frame(spark, rejects, source_file, target.name, load_id, now)
            delta.append(frame, tables.QUARANTINE)
        good, rejects = [], []

    with files.snapshot(kind) as source:
        for parsed in parse_file(source, spec, files.dataset, now=now):
            read += 1
            if isinstance(parsed, Rejected):
                rejects.append(parsed)
                rejected_rows += 1
            else:
                good.append(parsed)
            if len(good) + len(rejects) >= CHUNK_ROWS:
                flush()
                if on_rows:
                    on_rows(read)
        try:
            file_sha256 = source.finish(checked_sha256)
        except FileChangedError as error:
            spark.sql(f"drop table if exists {stage_table}")
            raise IngestError(
                f"{error}. Nothing of it is committed (load {load_id} is dropped on the next run); if it is "
                "still being written, run ingest again once it is complete"
            ) from error
        flush()
    if on_rows:
        on_rows(read)

    held_out: pd.DataFrame | None = None
    if read - rejected_rows > 0:
        staged = spark.table(stage_table)
        cutoff = None
        if holding_out:
            cutoff = find_cutoff(staged, np.concatenate(seconds), holdout_fraction)
            seconds.clear()
        if kind == "ratings":
            validated = validate.validate_ratings(staged, spark.table(tables.MOVIES.name))
        else:
            validated = validate.validate_keyed(staged, KEYS[kind])
        if kind in ("ratings", "users") and erasure_salt and spark.catalog.tableExists(tables.ERASED_USERS.name):
            # A source file still holds the users erased since (MovieLens files never change).
            validated = flag_erased(validated, spark.table(tables.ERASED_USERS.name), erasure_salt)
        # Computed once, written twice (three times with a holdout): accepted rows to the table,
        # the rest to quarantine.
        validated = validated.persist()
        valid = validated.where(F.col("reason").isNull())
        if cutoff is not None:
            held_out = valid.where(cutoff.held_out()).select(*HELD_OUT_COLUMNS).toPandas()
            valid = valid.where(~cutoff.held_out())
        accepted = with_lineage(valid, kind, source_file, load_id, now)
        delta.append(accepted, target)
        if validated.where(F.col("reason").isNotNull()).count():
            quarantined = rejected_to_quarantine(validated, source_file, target.name, load_id, now)
            delta.append(quarantined, tables.QUARANTINE)
        validated.unpersist()
    spark.sql(f"drop table if exists {stage_table}")

    held_out_count = 0
    if kind == "ratings" and holdout_path is not None:
        if holding_out:  # even an empty split gets its file, so the replay finds what ingest did
            rows = held_out if held_out is not None else pd.DataFrame(columns=HELD_OUT_COLUMNS)
            held_out_count = write_holdout(rows, holdout_path)
        else:
            remove_holdout(holdout_path)  # left from an earlier split: no longer the bronze complement

    loaded = load_count(spark, target, load_id)
    quarantined_count = load_count(spark, tables.QUARANTINE, load_id)
    if read != loaded + quarantined_count + held_out_count:
        raise IngestError(
            f"{source_file}: {read} rows read but {loaded} loaded + {quarantined_count} quarantined "
            f"+ {held_out_count} held out; load {load_id} is left uncommitted and will be dropped on "
            "the next run"
        )
    ledger = spark.createDataFrame(
        [
            (
                files.dataset.name,
                source_file,
                file_sha256,
                target.name,
                read,
                loaded,
                quarantined_count,
                now,
                datetime.now(timezone.utc),
                held_out_count,
                holdout_fraction if kind == "ratings" else 0.0,
                load_id,
            )
        ],
        tables.INGEST_LOG.schema,
    )
    delta.append(ledger, tables.INGEST_LOG)  # the commit
    return FileReport(
        source_file, target.name, read, loaded, quarantined_count, time.monotonic() - started,
        rows_held_out=held_out_count,
    )


def ingest(
    spark: SparkSession,
    files: DatasetFiles,
    *,
    replace: bool = False,
    now: datetime | None = None,
    on_file: Callable[[str], Callable[[int], None] | None] | None = None,
    holdout_fraction: float = 0.0,
    holdout_dir: Path | None = None,
    erasure_salt: str = "",
) -> IngestReport:
    """Load every file of `files` into bronze; files already loaded unchanged are skipped.

    `holdout_fraction` > 0 keeps the latest ratings out of bronze and writes them to
    `holdout_dir/<dataset>/ratings.csv`; loading ratings with fraction 0 removes a file left there.
    With `erasure_salt`, the rows of users in governance.erased_users are quarantined ("erased user").
    """
    check_fraction(holdout_fraction)
    if holdout_fraction > 0 and holdout_dir is None:
        raise ValueError("a holdout fraction needs a holdout folder (Settings.holdout_dir)")
    now = now or datetime.now(timezone.utc)
    dataset = files.dataset.name
    holdout_path = holdout_file(holdout_dir, dataset) if holdout_dir is not None else None
    report = IngestReport(
        dataset=dataset,
        origin=files.origin,
        holdout_fraction=holdout_fraction,
        holdout_file=holdout_path if holdout_fraction > 0 else None,
    )
    if replace:
        drop_bronze(spark)
    created = ensure_tables(spark)
    report.recovered_loads = recover_unfinished_loads(spark, fresh=created)
    check_single_dataset(spark, dataset)

    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    kinds = [kind for kind in LOAD_ORDER if files.dataset.file(kind) is not None]
    try:
        checked = {kind: files.sha256(kind) for kind in kinds}
    except FileChangedError as error:
        raise IngestError(f"{error}; if it is still being written, run ingest again once it is complete") from error
    # Every file's earlier load first, so a refused holdout change loads nothing at all.
    previous = {kind: already_loaded(spark, TARGETS[kind].name, checked[kind]) for kind in kinds}
    if previous.get("ratings"):
        check_same_holdout(previous["ratings"], holdout_fraction, files.relative_name("ratings"), dataset)
    for kind in kinds:
        source_file = files.relative_name(kind)
        if earlier := previous[kind]:
            reason = f"unchanged since load {earlier.load_id}"
            if earlier.all_quarantined:
                reason += f", which quarantined all of its {earlier.rows_read:,} rows"
            report.files.append(
                FileReport(source_file, TARGETS[kind].name, 0, 0, 0, 0.0, reason,
                           earlier_load_all_quarantined=earlier.all_quarantined)
            )
            continue
        load_id = f"{stamp}-{dataset}-{kind}"
        on_rows = on_file(source_file) if on_file else None
        report.files.append(
            load_file(spark, files, kind, load_id, now, on_rows, holdout_fraction, holdout_path,
                      checked_sha256=checked[kind], erasure_salt=erasure_salt)
        )

    new_loads = [f"{stamp}-{dataset}-{kind}" for kind in LOAD_ORDER]
    report.reasons = [
        (r.reason_kind, r.n)
        for r in spark.table(tables.QUARANTINE.name)
        .where(F.col("load_id").isin(new_loads))
        .select(F.regexp_replace("reason", r"[0-9]+", "N").alias("reason_kind"))
        .groupBy("reason_kind")
        .agg(F.count(F.lit(1)).alias("n"))
        .orderBy(F.desc("n"))
        .limit(10)
        .collect()
    ]
    return report
