"""The input of every job: a table read at one Delta version, and what identifies that data.

Every read is pinned: the job asks for the table's current version (or the one given with
`--as-of`) and reads exactly that snapshot, so a concurrent commit (the stream folding in, a
`dbt build`) cannot change what a run sees half-way, and the MLflow run can name the version it
trained on; `lakehouse train --as-of V` reads that version again (time travel).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse import delta, tables
from lakehouse.tables import Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RATINGS_TABLE = tables.GOLD_RATINGS.name


@dataclass(frozen=True)
class InputTable:
    """Name, Delta version, size and an order-independent hash of every row of the input, so two
    runs can prove they saw the same data (the hash survives a VACUUM that drops old versions)."""

    name: str
    version: int
    rows: int
    fingerprint: str
    as_of: bool = False  # read with --as-of (time travel) rather than the current version

    def as_tags(self) -> dict[str, str]:
        return {
            "input.table": self.name,
            "input.rows": str(self.rows),
            "input.fingerprint": self.fingerprint,
            "input.version": str(self.version),
            "input.as_of": "true" if self.as_of else "false",
            f"delta.version.{self.name}": str(self.version),
            "table_format": "delta",
        }


def read_version(spark: SparkSession, table: Table | str, as_of: int | None = None) -> tuple[DataFrame, int]:
    """`table` at Delta version `as_of` (default: its current version), and that version."""
    name = delta.name(table)
    if not spark.catalog.tableExists(name):
        raise SystemExit(f"{name} does not exist: run `make run` (ingest + dbt build) first.")
    current = delta.version(spark, name)
    version = current if as_of is None else as_of
    if not 0 <= version <= current:
        raise SystemExit(f"{name} has versions 0..{current}; --as-of {as_of} is not one of them.")
    try:
        return spark.sql(f"select * from {name} version as of {version}"), version
    except Exception as error:  # noqa: BLE001 - an old version VACUUM removed: say so
        raise SystemExit(f"{name} version {version} cannot be read ({str(error).splitlines()[0][:300]}); "
                         "VACUUM removes the files of versions older than its retention.") from None


def load_ratings(spark: SparkSession, table: str = RATINGS_TABLE, as_of: int | None = None) -> tuple[DataFrame, InputTable]:
    """(user_id int, movie_id int, rating double, rated_at timestamp) at one version, and its identity."""
    from pyspark.sql import functions as F

    snapshot, version = read_version(spark, table, as_of)
    ratings = snapshot.select(
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
        raise SystemExit(f"{table} version {version} is empty: nothing to train on.")
    fingerprint = format(int(stats["h"]) % (1 << 64), "016x")
    return ratings, InputTable(table, version, int(stats["rows"]), fingerprint, as_of is not None)
