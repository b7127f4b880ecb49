"""`make run`'s streaming stage: replay held-out ratings into the running stream and show that
the affected users' recommendations changed."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lakehouse import tables
from lakehouse.console import table
from lakehouse.settings import Settings
from lakehouse.stream import job, replay

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from rich.table import Table


@dataclass
class Showcase:
    replayed: int
    files: int
    committed: int
    seconds: float
    users: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    examples: list[tuple[int, str, str]] = field(default_factory=list)  # user, top 3 before, after

    def describe(self) -> str:
        return (f"{self.committed:,} of {self.replayed:,} replayed ratings in bronze; "
                f"{len(self.changed)} of {len(self.users)} users' recommendations changed")


def top_lists(spark: SparkSession, users: list[int], n: int = 10) -> dict[int, list[str]]:
    """Each user's top-n titles, best first."""
    from pyspark.sql import functions as F

    rows = (spark.table(tables.RECOMMENDATIONS.name).where(F.col("user_id").isin(users) & (F.col("rank") <= n))
            .join(spark.table(tables.GOLD_MOVIES.name).select("movie_id", "title"), "movie_id")
            .select("user_id", "rank", "title").collect())
    lists: dict[int, list[tuple[int, str]]] = {u: [] for u in users}
    for r in rows:
        lists[r.user_id].append((r.rank, r.title))
    return {u: [t for _, t in sorted(v)] for u, v in lists.items()}


def committed_rows(spark: SparkSession, names: set[str]) -> int:
    from pyspark.sql import functions as F

    batches = spark.table(tables.STREAM_BATCHES.name).select("load_id")  # a file counts once its batch is committed
    files = spark.table(tables.STREAM_FILES.name).where(F.col("source_file").isin(list(names))).join(batches, "load_id", "left_semi")
    return int(files.agg(F.sum("rows_read")).first()[0] or 0)


def replay_and_compare(spark: SparkSession, settings: Settings, *, limit: int = 1000, rate: float = 100.0,
                       rows_per_file: int = 50, timeout: float = 300.0) -> Showcase:
    """Start the stream (detached, if it is not running), replay `limit` held-out ratings and wait
    until they are committed and folded in."""
    held_out = list(itertools.islice(replay.read_holdout(replay.holdout_path(settings)), limit))
    users = sorted({r.user_id for r in held_out})
    before = top_lists(spark, users)
    if job.running_pid(settings) is None:
        job.detach(settings)
    started = time.monotonic()
    report = replay.replay(settings, source=held_out, rate=rate, rows_per_file=rows_per_file)
    names = {p.name for p in report.files}
    deadline = time.monotonic() + timeout
    while (done := committed_rows(spark, names)) < report.ratings and time.monotonic() < deadline:
        time.sleep(1.0)
    after = top_lists(spark, users)
    changed = [u for u in users if before[u] != after[u]]
    examples = [(u, " · ".join(before[u][:3]), " · ".join(after[u][:3])) for u in changed[:5]]
    return Showcase(report.ratings, len(report.files), done, time.monotonic() - started, users, changed, examples)


def showcase_table(showcase: Showcase) -> Table:
    return table(f"Recommendations before and after the stream ({showcase.describe()})",
                 ["user", "top 3 before", "top 3 after"], showcase.examples)
