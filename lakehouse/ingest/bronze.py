"""The bronze tables: their schemas (the contract dbt's sources rely on) and names.

Bronze keeps the source's values with minimal typing (ids and ratings as numbers, the timestamp
as epoch seconds, titles with their year, genres `|`-joined) plus lineage columns. Every bronze
table is partitioned by `load_id`, so a load that did not finish can be dropped whole.
"""
from __future__ import annotations

from pyspark.sql import types as T

SCHEMA = "bronze"
RATINGS = f"{SCHEMA}.ratings"
MOVIES = f"{SCHEMA}.movies"
USERS = f"{SCHEMA}.users"
QUARANTINE = f"{SCHEMA}.quarantine"
INGEST_LOG = f"{SCHEMA}.ingest_log"

LINEAGE_FIELDS = [
    T.StructField("source_file", T.StringType(), False),
    T.StructField("line_number", T.LongType(), False),
    T.StructField("ingested_at", T.TimestampType(), False),
    T.StructField("load_id", T.StringType(), False),  # partition column: last
]

RATINGS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.IntegerType(), False),
        T.StructField("movie_id", T.IntegerType(), False),
        T.StructField("rating", T.DoubleType(), False),
        T.StructField("epoch_seconds", T.LongType(), False),
        *LINEAGE_FIELDS,
    ]
)

MOVIES_SCHEMA = T.StructType(
    [
        T.StructField("movie_id", T.IntegerType(), False),
        T.StructField("title", T.StringType(), False),
        T.StructField("genres", T.StringType(), False),
        T.StructField("release_date", T.StringType(), True),
        T.StructField("imdb_url", T.StringType(), True),
        *LINEAGE_FIELDS,
    ]
)

USERS_SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.IntegerType(), False),
        T.StructField("age", T.IntegerType(), True),
        T.StructField("gender", T.StringType(), True),
        T.StructField("occupation", T.StringType(), True),
        T.StructField("zip_code", T.StringType(), True),
        *LINEAGE_FIELDS,
    ]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("source_file", T.StringType(), False),
        T.StructField("line_number", T.LongType(), False),
        T.StructField("raw_line", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("target_table", T.StringType(), False),
        T.StructField("quarantined_at", T.TimestampType(), False),
        T.StructField("load_id", T.StringType(), False),
    ]
)

INGEST_LOG_SCHEMA = T.StructType(
    [
        T.StructField("dataset", T.StringType(), False),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("file_sha256", T.StringType(), False),
        T.StructField("target_table", T.StringType(), False),
        T.StructField("rows_read", T.LongType(), False),
        T.StructField("rows_loaded", T.LongType(), False),
        T.StructField("rows_quarantined", T.LongType(), False),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("finished_at", T.TimestampType(), False),
        # Added with `ingest --holdout-fraction`: nullable, since older ledgers lack them (null = 0).
        T.StructField("rows_held_out", T.LongType(), True),
        T.StructField("holdout_fraction", T.DoubleType(), True),
        T.StructField("load_id", T.StringType(), False),
    ]
)

TABLE_SCHEMAS = {
    RATINGS: RATINGS_SCHEMA,
    MOVIES: MOVIES_SCHEMA,
    USERS: USERS_SCHEMA,
    QUARANTINE: QUARANTINE_SCHEMA,
    INGEST_LOG: INGEST_LOG_SCHEMA,
}
