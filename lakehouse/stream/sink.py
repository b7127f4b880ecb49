"""What the stream does with each micro-batch (its foreachBatch function), exactly once.

Spark's file source records which files each batch read in its checkpoint and, after a crash,
runs the last unfinished batch again with the same files and the same batch id. Every bronze write
here is a Delta append keyed by that batch (`txnAppId` = the stream id, `txnVersion` = the batch
id): Delta skips an append whose (app id, version) the table has already committed, so a batch run
twice leaves its rows once. The order is:

1. check that the batch's files can still be read: one deleted or made unreadable after the source
   listed it is dead-lettered with a quarantine row (a batch that fails on it would fail again on
   every restart), and the rest are read; then parse and check every line of them
   (lakehouse/stream/parse.py);
2. accepted rows -> bronze.rating_events, rejected -> bronze.quarantine, per-file counts ->
   bronze.stream_files: now the ratings are queryable (`committed_at`);
3. `on_committed`, the callback whoever started the stream wired in (the CLI and the pipeline
   connect it to the fold-in of ml/refresh.py, which refreshes the batch's users' recommendations;
   the stream itself knows nothing of models);
4. the batch's row in bronze.stream_batches: the ledger; a batch with a ledger row is skipped.

Spark Connect runs this function in a Python process on the server, one per query, so whatever
the callback keeps in memory (the champion's factors) stays loaded between batches. The query
outlives a client killed with -9; so a batch first checks that the client that started the query
(`owner`) still runs, and fails the query if not: no orphan goes on writing, and the batch is run
again by the next client.
"""
from __future__ import annotations

import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import unquote, urlparse

from lakehouse import delta, locks, tables
from lakehouse.datasets import RatingScale
from lakehouse.governance.records import flag_erased
from lakehouse.stream import landing, parse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class OnCommitted(Protocol):
    """Called once a batch's ratings are in bronze, before its ledger row: returns how many users
    it refreshed. Must be picklable (it travels to the server's Python worker)."""

    def __call__(self, spark: SparkSession, accepted: DataFrame, log: Callable[[str], None]) -> int: ...


class Owner(NamedTuple):
    """The process that started the query: host, pid and its start time (a pid is reused)."""

    host: str
    pid: int
    started: float

    @classmethod
    def this_process(cls) -> Owner:
        import psutil

        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time())

    def gone(self) -> bool:
        import psutil

        if self.host != socket.gethostname():
            return False  # a client on another host: nothing to check it by
        try:
            process = psutil.Process(self.pid)
            # a zombie is dead too: killed, and not yet reaped by its parent
            return process.create_time() != self.started or process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True


class OrphanedQuery(RuntimeError):
    pass


@dataclass(frozen=True)
class BatchSink:
    stream_id: str
    scale: RatingScale
    log_file: str
    on_committed: OnCommitted | None = None
    dead_letter_dir: str = ""
    owner: Owner | None = None
    checkpoint: str = ""  # the query's: its source log says which files a batch has
    locks_dir: str = ""  # the data directory's: a batch holds the tables lock (an erasure waits for it)
    erasure_salt: str = ""  # to recognise erased users by their hash (governance.erased_users)

    def load_id(self, batch_id: int) -> str:
        return tables.stream_load_id(self.stream_id, batch_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if not self.locks_dir:
            return self.run(batch, batch_id)
        # An erasure purges old files (VACUUM RETAIN 0 HOURS): no batch may be writing meanwhile.
        with locks.shared_in(Path(self.locks_dir), locks.TABLES, wait=locks.TABLES_WAIT_SECONDS,
                                what="an erasure (`lakehouse forget-user`)"):
            return self.run(batch, batch_id)

    def run(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        load_id = self.load_id(batch_id)
        if committed(spark, load_id):
            self.log(f"batch {batch_id}: already committed ({load_id}); skipped")
            return
        self.check_owner(batch_id, "before it starts")
        started_at, clock = delta.utc_now(), time.monotonic()
        self.log(f"batch {batch_id}: started ({load_id})")
        readable, dead = self.readable_files(batch_id, load_id)
        landed = parse.landed_lines(read_text(spark, readable)).localCheckpoint()  # the files are read once
        files = parse.files(landed)
        file_lines = parse.lines(landed)
        rows = parse.check_movies(parse.parse(file_lines, parse.Rules(self.scale)), spark.table(tables.MOVIES.name))
        rows = flag_erased(rows, spark.table(tables.ERASED_USERS.name) if self.erasure_salt else None, self.erasure_salt)
        rows = rows.localCheckpoint()
        ingested_at = delta.utc_now()

        self.check_owner(batch_id, "before its bronze commit")
        once = {"app_id": self.stream_id, "version": batch_id}
        accepted = accepted_events(rows, batch_id, ingested_at, load_id)
        delta.append_once(accepted, tables.RATING_EVENTS, **once)
        rejected = quarantined(rows, ingested_at, load_id)
        if dead:
            rejected = rejected.unionByName(spark.createDataFrame(dead, tables.QUARANTINE.schema))
        delta.append_once(rejected, tables.QUARANTINE, **once)
        per_file = file_counts(files, file_lines, rows, batch_id, load_id).collect()  # one row per file
        delta.append_once(spark.createDataFrame(per_file, tables.STREAM_FILES.schema), tables.STREAM_FILES, **once)
        committed_at, bronze_seconds = delta.utc_now(), time.monotonic() - clock

        self.check_owner(batch_id, "before its fold-in")
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
        self.log(f"batch {batch_id}: {len(per_file)} files{f' (+{len(dead)} dead-lettered)' if dead else ''}, {read} rows = {accepted_n} accepted + {quarantined_n} quarantined; "
                 f"bronze in {bronze_seconds:.2f}s, {users} users' recommendations in {fold_in_seconds:.2f}s")

    def check_owner(self, batch_id: int, when: str) -> None:
        """Fail the query if the client that started it is gone (killed: it stopped nothing)."""
        if self.owner is not None and self.owner.gone():
            self.log(f"batch {batch_id}: the stream's client (pid {self.owner.pid}) is gone {when}; "
                     "stopping its query (the next stream runs the batch again)")
            raise OrphanedQuery(f"the client that started this query (pid {self.owner.pid}) is gone")

    def readable_files(self, batch_id: int, load_id: str) -> tuple[list[str], list[tuple]]:
        """The batch's files that can still be read, and quarantine rows for those that cannot
        (moved to the dead-letter folder if they are still there)."""
        readable, dead = [], []
        for uri in batch_files(Path(self.checkpoint), batch_id):
            path = Path(unquote(urlparse(uri).path))
            if os.access(path, os.R_OK):
                readable.append(uri)
                continue
            why = "was made unreadable after the stream listed it" if path.exists() else \
                "was deleted after the stream listed it: nothing of it was read"
            sample = ""
            if path.exists() and self.dead_letter_dir:
                path = landing.move_to_dead_letter(path, Path(self.dead_letter_dir))
                why += f"; moved to {path}"
            dead.append(landing.dead_letter_row(Path(uri).name, why, sample, load_id))
            self.log(f"dead-letter: {Path(uri).name} {why}")
        return readable, dead

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


def batch_files(checkpoint: Path, batch_id: int) -> list[str]:
    """The files the file source gave batch `batch_id`, from its log in the checkpoint (written
    before the batch runs, kept for every batch: Spark reads it to run a batch again). The log is
    Spark's: `sources/0/<batch>` ("v1", then one JSON object per file), or every tenth batch a
    `<batch>.compact` holding all the entries up to it. Read here, rather than from the batch's
    rows, because reading the rows is what fails when a file has gone."""
    import json

    log = checkpoint / "sources" / "0"
    for path, compact in ((log / str(batch_id), False), (log / f"{batch_id}.compact", True)):
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()[1:]
            entries = [json.loads(line) for line in lines if line.strip()]
            return [e["path"] for e in entries if not compact or e.get("batchId") == batch_id]
    raise RuntimeError(f"batch {batch_id} is not in the file source's log ({log}): is this checkpoint the query's?")


def read_text(spark: SparkSession, uris: list[str]) -> DataFrame:
    """The files as the stream's source reads them (`value`, `_metadata`); no files, no rows."""
    if uris:
        return spark.read.text(uris).select("value", "_metadata")
    empty = "value string, _metadata struct<file_path: string, file_modification_time: timestamp, file_size: bigint>"
    return spark.createDataFrame([], empty)


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
