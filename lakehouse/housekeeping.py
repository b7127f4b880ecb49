"""`lakehouse housekeeping`: compact the tables that grow by small commits, and VACUUM them.

The stream appends one small file per micro-batch to each bronze stream table (and merges into
ml.recommendations per batch); a stream that runs for weeks makes thousands. `OPTIMIZE` rewrites
them into few files (one commit; readers see the same rows before and after), and `VACUUM` with
Delta's default retention (7 days) deletes the files no version inside that window needs, so time
travel keeps working for a week.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse import delta, locks, tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.settings import Settings

# The tables that get a commit per micro-batch.
COMPACTED = (tables.RATING_EVENTS, tables.STREAM_BATCHES, tables.STREAM_FILES, tables.QUARANTINE,
             tables.RECOMMENDATIONS)


@dataclass(frozen=True)
class Housekept:
    table: str
    files_before: int
    files_after: int
    files_vacuumed: int
    version: int

    def row(self) -> tuple:
        return (self.table, self.files_before, self.files_after, self.files_vacuumed, self.version)


def _files(spark: SparkSession, table: str) -> int:
    return int(spark.sql(f"describe detail {table}").first()["numFiles"])


def housekeep(spark: SparkSession, targets=COMPACTED, settings: Settings | None = None) -> list[Housekept]:
    """OPTIMIZE then VACUUM (default retention) each existing table of `targets`; with `settings`,
    under the tables lock (an erasure's VACUUM RETAIN 0 HOURS would delete OPTIMIZE's new files)."""
    if settings is None:
        return _housekeep(spark, targets)
    with locks.shared(settings, locks.TABLES, wait=locks.TABLES_WAIT_SECONDS, what="an erasure"):
        return _housekeep(spark, targets)


def _housekeep(spark: SparkSession, targets) -> list[Housekept]:
    done = []
    for table in targets:
        if not spark.catalog.tableExists(table.name):
            continue
        before = _files(spark, table.name)
        # OPTIMIZE only rewrites files; a concurrent append (the stream) does not conflict with it,
        # a concurrent merge or replace may: run it again on the new snapshot.
        delta.retry_conflicts(lambda: spark.sql(f"optimize {table.name}").collect(), what=f"optimize {table.name}")
        after = _files(spark, table.name)
        doomed = spark.sql(f"vacuum {table.name} dry run").count()
        spark.sql(f"vacuum {table.name}").collect()
        done.append(Housekept(table.name, before, after, doomed, delta.version(spark, table.name)))
    return done
