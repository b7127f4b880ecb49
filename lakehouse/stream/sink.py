"""What the stream does with each micro-batch (its foreachBatch function), exactly once.

Spark's file source records which files each batch read in its checkpoint and, after a crash,
runs the last unfinished batch again with the same files and the same batch id. Every write here
is keyed by that batch (`load_id` = stream-<stream id>-<batch id>) and idempotent
(`table_format.write_partition_once`): a batch run twice leaves its rows once. The order is:

1. parse and check every line of the batch's files (lakehouse/stream/parse.py);
2. accepted rows -> bronze.rating_events, rejected -> bronze.quarantine, per-file counts ->
   bronze.stream_files: now the ratings are queryable (`committed_at`);
3. fold the batch's users into the champion and rewrite their recommendations (ml/refresh.py);
4. the batch's row in bronze.stream_batches: the ledger; a batch with a ledger row is skipped.

Spark Connect runs this function in a Python process on the server, one per query, so the
champion's factors are loaded once and kept until `lakehouse train` publishes another.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.ingest.datasets import RatingScale
from lakehouse.stream import parse, tables
from lakehouse.table_format import write_partition_once

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_serving: dict[str, object] = {}  # the champion's fold-in state, per worker process


@dataclass(frozen=True)
class BatchSink:
    stream_id: str
    scale: RatingScale
    log_file: str
    refresh_recommendations: bool = True

    def load_id(self, batch_id: int) -> str:
        return tables.stream_load_id(self.stream_id, batch_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        load_id = self.load_id(batch_id)
        if committed(spark, load_id):
            self.log(f"batch {batch_id}: already committed ({load_id}); skipped")
            return
        started_at, clock = now(), time.monotonic()
        self.log(f"batch {batch_id}: started ({load_id})")
        landed = parse.landed_lines(batch).localCheckpoint()  # the files are read once
        files = parse.files(landed)
        file_lines = parse.lines(landed)
        rows = parse.check_movies(parse.parse(file_lines, parse.Rules(self.scale)), spark.table("bronze.movies"))
        rows = rows.localCheckpoint()
        ingested_at = now()

        accepted = accepted_events(rows, batch_id, ingested_at, load_id)
        write_partition_once(accepted, tables.RATING_EVENTS, partition_value=load_id, writer_id=self.stream_id, version=batch_id)
        write_partition_once(quarantined(rows, ingested_at, load_id), tables.QUARANTINE, partition_value=load_id,
                             writer_id=self.stream_id, version=batch_id)
        per_file = file_counts(files, file_lines, rows, batch_id, load_id).collect()  # one row per file
        write_partition_once(spark.createDataFrame(per_file, tables.STREAM_FILES_SCHEMA), tables.STREAM_FILES,
                             partition_value=load_id, writer_id=self.stream_id, version=batch_id)
        committed_at, bronze_seconds = now(), time.monotonic() - clock

        users, fold_in_seconds = self.refresh(spark, accepted)

        read, accepted_n, quarantined_n = (sum(f[c] for f in per_file) for c in ("rows_read", "rows_accepted", "rows_quarantined"))
        latencies = [max((committed_at - f.landed_at).total_seconds(), 0.0) for f in per_file]
        finished_at, seconds = now(), time.monotonic() - clock
        ledger = spark.createDataFrame([(
            self.stream_id, batch_id, len(per_file), read, accepted_n, quarantined_n, started_at, committed_at,
            finished_at, seconds, read / seconds if seconds else 0.0,
            statistics.median(latencies) if latencies else None, max(latencies) if latencies else None,
            users, fold_in_seconds, load_id,
        )], tables.STREAM_BATCHES_SCHEMA)
        write_partition_once(ledger, tables.STREAM_BATCHES, partition_value=load_id, writer_id=self.stream_id, version=batch_id)
        self.log(f"batch {batch_id}: {len(per_file)} files, {read} rows = {accepted_n} accepted + {quarantined_n} quarantined; "
                 f"bronze in {bronze_seconds:.2f}s, {users} users' recommendations in {fold_in_seconds:.2f}s")

    def refresh(self, spark: SparkSession, accepted: DataFrame) -> tuple[int, float]:
        """Fold the batch's users into the champion; (users refreshed, seconds)."""
        from ml import refresh

        if not self.refresh_recommendations:
            return 0, 0.0
        clock = time.monotonic()
        user_ids = [r.user_id for r in accepted.select("user_id").distinct().collect()]
        if not user_ids:
            return 0, 0.0
        try:
            run_id = refresh.champion_run_id(spark) if spark.catalog.tableExists("ml.item_factors") else None
            if run_id is None:
                raise refresh.NoChampion("no ranking champion yet: run `lakehouse train`")
            state = _serving.get(run_id)
            if state is None:
                state = refresh.load_state(spark)
                _serving.clear()
                _serving[run_id] = state
                self.log(f"fold-in: champion {state.model_version} (run {run_id}), {len(state.model.movie_ids)} movies")
        except refresh.NoChampion as reason:
            self.log(f"fold-in skipped: {reason}")
            return 0, 0.0
        refresh.refresh(spark, state, user_ids)
        return len(user_ids), time.monotonic() - clock

    def log(self, message: str) -> None:
        with Path(self.log_file).open("a", encoding="utf-8") as out:
            out.write(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} stream {message}\n")


def now() -> datetime:
    from ml.outputs import now as utc_now

    return utc_now()


def committed(spark: SparkSession, load_id: str) -> bool:
    from pyspark.sql import functions as F

    spark.catalog.refreshTable(tables.STREAM_BATCHES)
    return bool(spark.table(tables.STREAM_BATCHES).where(F.col("load_id") == load_id).limit(1).count())


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
        F.lit(tables.RATING_EVENTS).alias("target_table"),
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
