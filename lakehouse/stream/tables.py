"""The tables the streaming job writes: their schemas (the contract dbt's sources rely on) and names.

Like the batch ingest's tables, every one is partitioned by `load_id`, here one value per
micro-batch (`stream-<query id>-<batch id>`): a batch that is run again after a crash rewrites its
own partition whole, so each rating lands exactly once (see lakehouse/stream/sink.py).
Rejected lines go to the batch ingest's `bronze.quarantine`, with `target_table` =
`bronze.rating_events`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import types as T

from lakehouse.ingest import bronze

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

RATING_EVENTS = f"{bronze.SCHEMA}.rating_events"
STREAM_BATCHES = f"{bronze.SCHEMA}.stream_batches"
STREAM_FILES = f"{bronze.SCHEMA}.stream_files"
QUARANTINE = bronze.QUARANTINE

RATING_EVENTS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.IntegerType(), False),
        T.StructField("movie_id", T.IntegerType(), False),
        T.StructField("rating", T.DoubleType(), False),
        T.StructField("epoch_seconds", T.LongType(), False),
        T.StructField("rated_at", T.TimestampType(), False),  # event time
        T.StructField("source_file", T.StringType(), False),  # the landed file's name
        T.StructField("line_number", T.LongType(), False),  # 1-based, in that file
        T.StructField("landed_at", T.TimestampType(), False),  # the file's modification time (its rename)
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
        T.StructField("load_id", T.StringType(), False),  # partition column: last
    ]
)

# One row per micro-batch: the stream's health, and its ledger (a batch is committed when its row is).
STREAM_BATCHES_SCHEMA = T.StructType(
    [
        T.StructField("query_id", T.StringType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("files", T.IntegerType(), False),
        T.StructField("rows_read", T.LongType(), False),
        T.StructField("rows_accepted", T.LongType(), False),
        T.StructField("rows_quarantined", T.LongType(), False),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("committed_at", T.TimestampType(), False),  # its rows queryable in bronze
        T.StructField("finished_at", T.TimestampType(), False),  # recommendations refreshed too
        T.StructField("batch_seconds", T.DoubleType(), False),
        T.StructField("rows_per_second", T.DoubleType(), False),
        # landing (file renamed into the folder) -> committed, over the batch's files
        T.StructField("latency_p50_seconds", T.DoubleType(), True),
        T.StructField("latency_max_seconds", T.DoubleType(), True),
        T.StructField("users_refreshed", T.IntegerType(), False),
        T.StructField("fold_in_seconds", T.DoubleType(), False),
        T.StructField("load_id", T.StringType(), False),
    ]
)

# One row per landed file: rows_read = rows_accepted + rows_quarantined, per file.
STREAM_FILES_SCHEMA = T.StructType(
    [
        T.StructField("source_file", T.StringType(), False),
        T.StructField("file_format", T.StringType(), False),  # csv, csv+header, jsonl, empty
        T.StructField("landed_at", T.TimestampType(), False),
        T.StructField("bytes", T.LongType(), False),
        T.StructField("rows_read", T.LongType(), False),
        T.StructField("rows_accepted", T.LongType(), False),
        T.StructField("rows_quarantined", T.LongType(), False),
        T.StructField("batch_id", T.LongType(), False),
        T.StructField("load_id", T.StringType(), False),
    ]
)

LOAD_ID_PREFIX = "stream-"


def stream_load_id(stream_id: str, batch_id: int) -> str:
    return f"{LOAD_ID_PREFIX}{stream_id}-{batch_id:08d}"


def stream_load_ids(load_ids: set[str]) -> set[str]:
    """The stream's partitions among `load_ids` (the batch ingest's never start with the prefix)."""
    return {x for x in load_ids if x.startswith(LOAD_ID_PREFIX)}


TABLE_SCHEMAS = {
    RATING_EVENTS: RATING_EVENTS_SCHEMA,
    STREAM_BATCHES: STREAM_BATCHES_SCHEMA,
    STREAM_FILES: STREAM_FILES_SCHEMA,
}


def ensure_tables(spark: SparkSession) -> None:
    """Create the (empty) stream tables, so dbt's sources exist before the first stream runs."""
    from lakehouse.table_format import save_table

    spark.sql(f"create database if not exists {bronze.SCHEMA}")
    for table, schema in TABLE_SCHEMAS.items():
        if not spark.catalog.tableExists(table):
            save_table(spark.createDataFrame([], schema), table, mode="append", partition_by=["load_id"])
