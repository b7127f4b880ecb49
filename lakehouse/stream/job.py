"""`lakehouse stream`: the Structured Streaming query from the landing folder into bronze.

The query runs on the lakehouse server (over Spark Connect): the `text` file source reads each
new file whole, at most `LAKEHOUSE_STREAM_MAX_FILES` per micro-batch, every
`LAKEHOUSE_STREAM_TRIGGER_SECONDS`; processed files are moved to <data dir>/stream-archive;
the checkpoint lives under <data dir>/checkpoints. Each batch goes through BatchSink
(lakehouse/stream/sink.py), which makes it exactly once.

This process only starts the query and watches it: in the foreground with a status line, or
detached (`--detach`) with its output in <data dir>/logs/stream.log, stopped by `--stop`.
Half-written files are never read: writers (`lakehouse replay`, the API) write a name starting
with '.', which the file source ignores, and rename it when complete. What happens once a batch
is committed (the fold-in of new ratings) is a callback, `on_committed`, that the caller wires in.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, tables
from lakehouse.background import Background
from lakehouse.console import console
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from lakehouse.stream.sink import OnCommitted

QUERY_NAME = "rating_events"


class StreamError(RuntimeError):
    pass


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "stream.pid"


def status_file(settings: Settings) -> Path:
    """JSON the running stream process rewrites every second: state, batches, totals."""
    return settings.run_dir / "stream.json"


def stream_id(settings: Settings) -> str:
    """This checkpoint's identity; kept inside it, so a new checkpoint is a new stream and a new
    stream's batch 0 is never mistaken for an old stream's (the ledger is keyed by it)."""
    settings.stream_checkpoint.mkdir(parents=True, exist_ok=True)
    marker = settings.stream_checkpoint / "lakehouse-stream-id"
    if not marker.exists():
        marker.write_text(uuid.uuid4().hex[:12] + "\n")
    return marker.read_text().strip()


def dataset_scale(spark: SparkSession):
    """The rating scale of the dataset in bronze (streamed ratings must be on it)."""
    from lakehouse.datasets import get_dataset

    if not spark.catalog.tableExists(tables.INGEST_LOG.name):
        raise StreamError("Nothing has been ingested yet: run `lakehouse ingest` (or `make run`) before streaming.")
    names = [r.dataset for r in spark.table(tables.INGEST_LOG.name).select("dataset").distinct().collect()]
    if len(names) != 1:
        raise StreamError(f"bronze holds {len(names)} datasets ({names}); the stream needs exactly one")
    return get_dataset(names[0]).scale


def start_query(spark: SparkSession, settings: Settings, *, on_committed: OnCommitted | None = None) -> StreamingQuery:
    """Start the query on the server; `on_committed` runs after each batch's bronze commit."""
    from pyspark.sql import functions as F

    from lakehouse.stream.sink import BatchSink

    for table in tables.BRONZE_STREAM:
        delta.create_if_missing(spark, table)
    for folder in (settings.stream_dir, settings.stream_archive_dir, settings.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    sink = BatchSink(stream_id(settings), dataset_scale(spark), str(settings.stream_log), on_committed)
    source = (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", settings.stream_max_files_per_trigger)
        .option("cleanSource", "archive")
        .option("sourceArchiveDir", str(settings.stream_archive_dir))
        .load(str(settings.stream_dir))
        .select("value", F.col("_metadata"))
    )
    return (
        source.writeStream.queryName(QUERY_NAME)
        .foreachBatch(sink)
        .option("checkpointLocation", str(settings.stream_checkpoint))
        .trigger(processingTime=f"{settings.stream_trigger_seconds:g} seconds")
        .start()
    )


@dataclass
class Totals:
    batches: int = 0
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    users_refreshed: int = 0
    last_batch: int | None = None
    last_latency_max: float | None = None


def totals(spark: SparkSession, settings: Settings) -> Totals:
    """What this stream (this checkpoint) has committed so far, from its ledger."""
    from pyspark.sql import functions as F

    batches = spark.table(tables.STREAM_BATCHES.name).where(F.col("query_id") == stream_id(settings))
    row = batches.agg(
        F.count(F.lit(1)).alias("batches"), F.sum("rows_read").alias("read"), F.sum("rows_accepted").alias("accepted"),
        F.sum("rows_quarantined").alias("quarantined"), F.sum("users_refreshed").alias("users"),
        F.max("batch_id").alias("last"), F.max_by("latency_max_seconds", "batch_id").alias("latency"),
    ).first()
    return Totals(row.batches, int(row.read or 0), int(row.accepted or 0), int(row.quarantined or 0),
                  int(row.users or 0), row.last, row.latency)


def run_foreground(settings: Settings, *, on_committed: OnCommitted | None = None,
                   duration: float | None = None) -> int:
    """Run the stream until SIGINT/SIGTERM (or `duration` seconds), showing its progress."""
    from lakehouse.session import connect

    spark = connect(settings)
    query = start_query(spark, settings, on_committed=on_committed)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"Streaming {settings.stream_dir} -> {tables.RATING_EVENTS.name} every {settings.stream_trigger_seconds:g}s "
                  f"(checkpoint {settings.stream_checkpoint}; log {settings.stream_log}). Ctrl-C stops.")
    started, last_line = time.monotonic(), ""
    try:
        with console.status("starting…") as live:
            while not stop.is_set() and (duration is None or time.monotonic() - started < duration):
                if query.exception() is not None:
                    raise StreamError(f"the stream failed: {query.exception()}")
                if not query.isActive:
                    raise StreamError("the stream stopped (stopped elsewhere, or the server went away)")
                done = totals(spark, settings)
                line = (f"batches {done.batches} · ratings {done.rows_accepted:,} accepted, {done.rows_quarantined:,} "
                        f"quarantined · users refreshed {done.users_refreshed:,}"
                        + (f" · last landing→bronze {done.last_latency_max:.1f}s" if done.last_latency_max is not None else ""))
                live.update(line)
                if line != last_line and not console.is_terminal:
                    console.print(line)  # detached: the log gets a line per change
                last_line = line
                _write_status(settings, "running", query, done)
                stop.wait(2.0)  # each look is a query on the server: keep it light
    finally:
        try:
            query.stop()
        except Exception:  # noqa: BLE001 - the server may be gone; nothing left to stop then
            pass
        status_file(settings).unlink(missing_ok=True)
    console.print(f"Stream stopped. {last_line}")
    return 0


def _write_status(settings: Settings, state: str, query: StreamingQuery, done: Totals) -> None:
    progress = query.lastProgress or {}
    status = {"state": state, "pid": os.getpid(), "query_id": str(query.id), "stream_id": stream_id(settings),
              "landing": str(settings.stream_dir), "trigger_seconds": settings.stream_trigger_seconds,
              "last_progress_batch": progress.get("batchId"), **done.__dict__, "updated": time.time()}
    tmp = status_file(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps(status, default=str))
    tmp.replace(status_file(settings))


def background(settings: Settings) -> Background:
    return Background("the stream", pid_file(settings), settings.stream_log, "lakehouse.cli stream")


def running_pid(settings: Settings) -> int | None:
    return background(settings).running_pid()


def detach(settings: Settings, *, fold_in: bool = True, timeout: float = 120.0) -> int:
    """Start `lakehouse stream` (which wires the fold-in unless `fold_in` is False) in a background
    process; returns its pid once the query runs."""
    if (pid := running_pid(settings)) is not None:
        raise StreamError(f"The stream already runs (pid {pid}); `lakehouse stream --stop` stops it.")
    status_file(settings).unlink(missing_ok=True)
    command = [sys.executable, "-m", "lakehouse.cli", "stream"] + ([] if fold_in else ["--no-fold-in"])
    return background(settings).start(command, status_file(settings).exists, timeout,
                                      env={**os.environ, **settings.as_env()}, error=StreamError)


def stop(settings: Settings, grace: float = 60.0) -> bool:
    """Stop the detached stream (SIGTERM: it stops its query cleanly); False if none ran."""
    stopped = background(settings).stop(grace=grace)
    if stopped:
        status_file(settings).unlink(missing_ok=True)
    return stopped


def read_status(settings: Settings) -> dict | None:
    if running_pid(settings) is None:
        return None
    try:
        return json.loads(status_file(settings).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"state": "starting"}
