"""The input of every job: the ratings table, and what identifies the exact data a run saw."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.table_format import current_format

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RATINGS_TABLE = "gold.ratings"


@dataclass(frozen=True)
class InputTable:
    """Name, size and identity of the input: a Delta version where the format has one, else a
    fingerprint (an order-independent hash of every row) so two runs can prove they saw the same data."""

    name: str
    rows: int
    fingerprint: str
    table_format: str
    version: str | None

    def as_tags(self) -> dict[str, str]:
        return {
            "input.table": self.name,
            "input.rows": str(self.rows),
            "input.fingerprint": self.fingerprint,
            "input.version": self.version or "n/a (format has no versions)",
            "table_format": self.table_format,
        }


def load_ratings(spark: SparkSession, table: str = RATINGS_TABLE) -> tuple[DataFrame, InputTable]:
    """(user_id int, movie_id int, rating double, rated_at timestamp) and its identity."""
    from pyspark.sql import functions as F

    if not spark.catalog.tableExists(table):
        raise SystemExit(f"{table} does not exist: run `make run` (ingest + dbt build) first.")
    spark.catalog.refreshTable(table)  # dbt may have rewritten it since this session last read it
    ratings = spark.table(table).select(
        F.col("user_id").cast("int"),
        F.col("movie_id").cast("int"),
        F.col("rating").cast("double"),
        F.col("rated_at"),
    )
    stats = ratings.agg(
        F.count(F.lit(1)).alias("rows"),
        # Sum of per-row hashes: independent of row order and partitioning.
        F.coalesce(F.sum(F.xxhash64("user_id", "movie_id", "rating", "rated_at").cast("decimal(38,0)")), F.lit(0)).alias("h"),
    ).first()
    if stats["rows"] == 0:
        raise SystemExit(f"{table} is empty: nothing to train on.")
    fmt = current_format(spark)
    version = None
    if fmt == "delta":
        version = str(spark.sql(f"describe history {table} limit 1").first()["version"])
    fingerprint = format(int(stats["h"]) % (1 << 64), "016x")
    return ratings, InputTable(table, int(stats["rows"]), fingerprint, fmt, version)
