"""What the stream does with each micro-batch (its foreachBatch function), exactly once.

Spark's file source records which files each batch read in its checkpoint and, after a crash,
runs the last unfinished batch again with the same files and the same batch id. Every bronze write
here is a Delta append keyed by that batch (`txnAppId` = the stream id, `txnVersion` = the batch
id): Delta skips an append whose (app id, version) the table has already committed, so a batch run
twice leaves its rows once. The order is:

1. parse and check every line of the batch's files (lakehouse/stream/parse.py);
2. accepted rows -> bronze.rating_events, rejected -> bronze.quarantine, per-file counts ->
   bronze.stream_files: now the ratings are queryable (`committed_at`);
3. `on_committed`, the callback whoever started the stream wired in (the CLI and the pipeline
   connect it to the fold-in of ml/refresh.py, which refreshes the batch's users' recommendations;
   the stream itself knows nothing of models);
4. the batch's row in bronze.stream_batches: the ledger; a batch with a ledger row is skipped.

Spark Connect runs this function in a Python process on the server, one per query, so whatever
the callback keeps in memory (the champion's factors) stays loaded between batches.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lakehouse import delta, tables
from lakehouse.datasets import RatingScale
from lakehouse.stream import parse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class OnCommitted(Protocol):
    """Called once a batch's ratings are in bronze, before its ledger row: returns how many users
    it refreshed. Must be picklable (it travels to the server's Python worker)."""

    def __call__(self, spark: SparkSession, accepted: DataFrame, log: Callable[[str], None]) -> int: ...


@dataclass(frozen=True)
class BatchSink:
    stream_id: str
    scale: RatingScale
    log_file: str
    on_committed: OnCommitted | None = None

    def load_id(self, batch_id: int) -> str:
        return tables.stream_load_id(self.stream_id, batch_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        load_id = self.load_id(batch_id)
        if committed(spark, load_id):
            self.log(f"batch {batch_id}: already committed ({load_id}); skipped")
            return
        started_at, clock = delta.utc_now(), time.monotonic()
        self.log(f"batch {batch_id}: started ({load_id})")
        landed = parse.landed_lines(batch).localCheckpoint()  # the files are read once
        files = parse.files(landed)
        file_lines = parse.lines(landed)
        rows = parse.check_movies(parse.parse(file_lines, parse.Rules(self.scale)), spark.table(tables.MOVIES.name))
        rows = rows.localCheckpoint()
        ingested_at = delta.utc_now()

        once = {"app_id": self.stream_id, "version": batch_id}
        accepted = accepted_events(rows, batch_id, ingested_at, load_id)
        delta.append_once(accepted, tables.RATING_EVENTS, **once)
        delta.append_once(quarantined(rows, ingested_at, load_id), tables.QUARANTINE, **once)
        per_file = file_counts(files, file_lines, rows, batch_id, load_id).collect()  # one row per file
        delta.append_once(spark.createDataFrame(per_file, tables.STREAM_FILES.schema), tables.STREAM_FILES, **once)
        committed_at, bronze_seconds = delta.utc_now(), time.monotonic() - clock

        users, fold_in_seconds = self.after_commit(spark, accepted)

        read, accepted_n, quarantined_n = (sum(f[c] for f in per_file) for c in ("rows_read", "rows_accepted", "rows_quarantined"))
        latencies = [max((committed_at - f.landed_at).total_seconds(), 0.0) for f in per_file]
        finished_at, seconds = delta.utc_now(), time.monotonic() - clock
        ledger = spark.createDataFrame([(
            self.stream_id, batch_id, len(per_file), read, accepted_n, quarantined_n, started_at, committed_at,
            finished_at, seconds, read / seconds if seconds else 0.0,
            statistics.median(latencies) if latencies else None, max(latencies) if latencies else None,
            users, fold_in_seconds, load_id,
        )], tables.STREAM_BATCHES.schema)
        # A plain append: `committed()` above already skips a batch whose ledger row is there, and a
        # ledger row lost after its commit is written again when the batch runs again.
        delta.append(ledger, tables.STREAM_BATCHES)
        self.log(f"batch {batch_id}: {len(per_file)} files, {read} rows = {accepted_n} accepted + {quarantined_n} quarantined; "
                 f"bronze in {bronze_seconds:.2f}s, {users} users' recommendations in {fold_in_seconds:.2f}s")

    def after_commit(self, spark: SparkSession, accepted: DataFrame) -> tuple[int, float]:
        """Run the callback on the committed batch; (users refreshed, seconds)."""
        if self.on_committed is None:
            return 0, 0.0
        clock = time.monotonic()
        users = self.on_committed(spark, accepted, self.log)
        return users, time.monotonic() - clock

    def log(self, message: str) -> None:
        with Path(self.log_file).open("a", encoding="utf-8") as out:
            out.write(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} stream {message}\n")


def committed(spark: SparkSession, load_id: str) -> bool:
    from pyspark.sql import functions as F

    return bool(spark.table(tables.STREAM_BATCHES.name).where(F.col("load_id") == load_id).limit(1).count())


def accepted_events(rows: DataFrame, batch_id: int, ingested_at: datetime, load_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    return rows.where(F.col("reason").isNull()).select(
        "user_id", "movie_id", "rating", "epoch_seconds",
        F.timestamp_seconds("epoch_seconds").alias("rated_at"),
        "source_file", "line_number", "landed_at",
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.lit(ingested_at).cast("timestamp").alias("ingested_at"),
        F.lit(load_id).alias("load_id"),
    )


def quarantined(rows: DataFrame, at: datetime, load_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    return rows.where(F.col("reason").isNotNull()).select(
        "source_file", "line_number", "raw_line", "reason",
        F.lit(tables.RATING_EVENTS.name).alias("target_table"),
        F.lit(at).cast("timestamp").alias("quarantined_at"),
        F.lit(load_id).alias("load_id"),
    )


def file_counts(files: DataFrame, file_lines: DataFrame, rows: DataFrame, batch_id: int, load_id: str) -> DataFrame:
    """One row per file of the batch; a header-only file is there too, with zero rows."""
    from pyspark.sql import functions as F

    formats = file_lines.groupBy("source_file").agg(F.first("file_format").alias("file_format"))
    counts = rows.groupBy("source_file").agg(
        F.count(F.lit(1)).alias("rows_read"),
        F.count_if(F.col("reason").isNull()).alias("rows_accepted"),
        F.count_if(F.col("reason").isNotNull()).alias("rows_quarantined"),
    )
    return files.join(formats, "source_file", "left").join(counts, "source_file", "left").select(
        "source_file",
        F.coalesce("file_format", F.lit("empty")).alias("file_format"),
        "landed_at",
        "bytes",
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in ("rows_read", "rows_accepted", "rows_quarantined")],
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.lit(load_id).alias("load_id"),
    )
