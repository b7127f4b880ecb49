"""`lakehouse stream`: the Structured Streaming query from the landing folder into bronze.

The query runs on the lakehouse server (over Spark Connect): the `text` file source reads each
new file of the stream's inbox whole, at most `LAKEHOUSE_STREAM_MAX_FILES` per micro-batch, every
`LAKEHOUSE_STREAM_TRIGGER_SECONDS`; processed files are moved to <data dir>/stream-archive;
the checkpoint lives under <data dir>/checkpoints. Each batch goes through BatchSink
(lakehouse/stream/sink.py), which makes it exactly once.

This process (`Supervisor`) runs the landing gate (lakehouse/stream/landing.py: files written
into the landing folder reach the inbox only once whole), starts the query and watches it, and
starts it again when it fails: in the foreground with a status line, or detached (`--detach`)
with its output in <data dir>/logs/stream.log, stopped by `--stop`. What happens once a batch is
committed (the fold-in of new ratings) is a callback, `on_committed`, that the caller wires in.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, tables
from lakehouse.background import Background
from lakehouse.console import console
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from lakehouse.stream.sink import OnCommitted, Owner

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


def start_query(spark: SparkSession, settings: Settings, *, on_committed: OnCommitted | None = None,
                owner: Owner | None = None) -> StreamingQuery:
    """Start the query on the server; `on_committed` runs after each batch's bronze commit.
    With `owner`, a batch that finds that process gone fails the query instead of running."""
    from pyspark.sql import functions as F

    from lakehouse.stream.sink import BatchSink

    for table in tables.BRONZE_STREAM:
        delta.create_if_missing(spark, table)
    delta.create_if_missing(spark, tables.QUARANTINE)
    for folder in (settings.stream_dir, settings.stream_inbox_dir, settings.stream_archive_dir, settings.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    from lakehouse import secrets

    delta.create_if_missing(spark, tables.ERASED_USERS)
    sink = BatchSink(stream_id(settings), dataset_scale(spark), str(settings.stream_log), on_committed,
                     str(settings.stream_dead_letter_dir), owner, str(settings.stream_checkpoint),
                     str(settings.locks_dir), secrets.erasure_salt(settings))
    source = (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", settings.stream_max_files_per_trigger)
        .option("cleanSource", "archive")
        .option("sourceArchiveDir", str(settings.stream_archive_dir))
        .load(str(settings.stream_inbox_dir))
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


# Supervision: after a failure the query is started again, waiting 1, 2, 4 ... up to this long.
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_SECONDS = 60.0  # a query that ran this long resets the backoff
# The Spark Connect client retries a lost server for ten minutes by default; the stream gives up
# on a connection sooner and restarts on its own schedule, logged and counted.
CLIENT_RETRY = {"max_retries": 4, "initial_backoff": 200, "max_backoff": 2000}


def log_line(settings: Settings, message: str) -> None:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with settings.stream_log.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stream {message}\n")


@dataclass
class Supervisor:
    """`lakehouse stream`: the landing gate, the query, and its restarts, in one process.

    One runs per landing folder (a lock says so). The query is started once the server answers;
    when it fails (a batch raised, the server went away) it is started again with a bounded
    backoff, on a new session, each restart logged and counted in the status file. SIGINT,
    SIGTERM and SIGHUP stop it cleanly."""

    settings: Settings
    on_committed: OnCommitted | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    last_error: str | None = None
    _spark: SparkSession | None = None
    _dead_sessions: list = field(default_factory=list)  # kept referenced: see drop_session

    def run(self, duration: float | None = None) -> int:
        from lakehouse import locks
        from lakehouse.stream.landing import Gate
        from lakehouse.stream.sink import Owner

        settings = self.settings
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: self.stop.set())
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        with locks.exclusive(settings, f"stream-{stream_id(settings)}", what=f"a stream of {settings.stream_dir}"):
            gate = Gate(settings, stream_id(settings), settings.stream_settle_seconds, lambda m: log_line(settings, m))
            self._gate = gate
            gate_thread = threading.Thread(target=self._run_gate, args=(gate,), name="landing-gate", daemon=True)
            owner = Owner.this_process()
            deadline = None if duration is None else time.monotonic() + duration
            console.print(f"Streaming {settings.stream_dir} -> {tables.RATING_EVENTS.name} every "
                          f"{settings.stream_trigger_seconds:g}s (checkpoint {settings.stream_checkpoint}; "
                          f"log {settings.stream_log}). Ctrl-C stops.")
            query = self.start(owner)  # a first start that fails is an error: nothing to restart yet
            gate_thread.start()
            backoff, line = 1.0, ""
            while not self.stop.is_set():
                ran_from = time.monotonic()
                try:
                    line = self.watch(query, deadline)
                    break  # stopped on purpose
                except Exception as error:  # noqa: BLE001 - every failure is logged and restarted
                    self.last_error = _short(error)
                    self.drop_query(query)
                if time.monotonic() - ran_from > HEALTHY_SECONDS:
                    backoff = 1.0
                query = None
                while query is None and not self.stop.is_set():
                    log_line(settings, f"supervisor: the query failed ({self.last_error}); restarting in {backoff:g}s")
                    self.write_status("restarting", None, Totals())
                    if self.stop.wait(backoff):
                        break
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    try:
                        query = self.start(owner)
                    except Exception as error:  # noqa: BLE001 - the server may still be down
                        self.last_error = _short(error)
                        self.drop_session()
                        continue
                    self.restarts += 1
                    log_line(settings, f"supervisor: restart {self.restarts}: the query runs again ({query.id})")
                if deadline is not None and time.monotonic() >= deadline:
                    break
            self.stop.set()
            self.drop_query(query)
            gate_thread.join(timeout=5)
            if self._dead_sessions:
                _close_within(self._dead_sessions[-1], 10.0)  # the last one is live: release it
            status_file(settings).unlink(missing_ok=True)
        console.print(f"Stream stopped. {line}")
        return 0

    def session(self) -> SparkSession:
        if self._spark is None:
            from pyspark.sql import SparkSession

            from lakehouse.server import port_open

            if not port_open(self.settings.host, self.settings.connect_port):
                raise StreamError(f"no lakehouse server answers on {self.settings.connect_url}")
            self._spark = SparkSession.builder.remote(self.settings.connect_url).create()
            from pyspark.sql.connect.client.retries import DefaultPolicy

            self._spark.client.set_retry_policies([DefaultPolicy(**CLIENT_RETRY)])
        return self._spark

    def drop_session(self) -> None:
        """Forget the session without stopping it: its server may be gone, and stopping would wait
        on it. It stays referenced: pyspark 4.1's session finalizer can deadlock when the garbage
        collector runs it in the middle of another session's call."""
        if self._spark is not None:
            self._dead_sessions.append(self._spark)
            self._spark = None

    def start(self, owner) -> StreamingQuery:
        spark = self.session()
        try:
            return start_query(spark, self.settings, on_committed=self.on_committed, owner=owner)
        except Exception:
            self.drop_session()
            raise

    def drop_query(self, query: StreamingQuery | None) -> None:
        if query is None:
            return
        try:
            query.stop()
        except Exception:  # noqa: BLE001 - the server may be gone; nothing left to stop then
            pass
        self.drop_session()

    def watch(self, query: StreamingQuery, deadline: float | None) -> str:
        """Show progress until asked to stop (returns the last line) or the query fails (raises)."""
        spark, line, last_line = self.session(), "", ""
        with console.status("starting…") as live:
            while not self.stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if query.exception() is not None:
                    raise StreamError(f"the stream failed: {query.exception()}")
                if not query.isActive:
                    raise StreamError("the query stopped (stopped elsewhere, or the server went away)")
                done = totals(spark, self.settings)
                line = (f"batches {done.batches} · ratings {done.rows_accepted:,} accepted, {done.rows_quarantined:,} "
                        f"quarantined · users refreshed {done.users_refreshed:,}"
                        + (f" · last landing→bronze {done.last_latency_max:.1f}s" if done.last_latency_max is not None else "")
                        + (f" · restarts {self.restarts}" if self.restarts else ""))
                live.update(line)
                if line != last_line and not console.is_terminal:
                    console.print(line)  # detached: the log gets a line per change
                last_line = line
                self.write_status("running", query, done)
                self.stop.wait(2.0)  # each look is a query on the server: keep it light
        return line

    def _run_gate(self, gate) -> None:
        while not self.stop.is_set():
            try:
                gate.scan(self._spark)
            except Exception as error:  # noqa: BLE001 - a file that vanished mid-look; look again
                log_line(self.settings, f"landing: {_short(error)}")
            self.stop.wait(0.5)

    def write_status(self, state: str, query: StreamingQuery | None, done: Totals) -> None:
        progress = (query.lastProgress if query is not None else None) or {}
        gate = getattr(self, "_gate", None)
        status = {"state": state, "pid": os.getpid(), "query_id": str(query.id) if query is not None else None,
                  "stream_id": stream_id(self.settings), "landing": str(self.settings.stream_dir),
                  "checkpoint": str(self.settings.stream_checkpoint),  # kept by housekeeping's retention
                  "trigger_seconds": self.settings.stream_trigger_seconds,
                  "last_progress_batch": progress.get("batchId"), **done.__dict__,
                  "restarts": self.restarts, "last_error": self.last_error,
                  "files_taken": gate.admitted if gate else 0, "files_dead_lettered": gate.dead_lettered if gate else 0,
                  "files_waiting": gate.waiting() if gate else 0, "updated": time.time()}
        tmp = status_file(self.settings).with_suffix(".tmp")
        tmp.write_text(json.dumps(status, default=str))
        tmp.replace(status_file(self.settings))


def _close_within(session, seconds: float) -> None:
    """Stop a session, waiting at most `seconds` (a server that went away never answers)."""
    closer = threading.Thread(target=lambda: _quietly(session.stop), daemon=True)
    closer.start()
    closer.join(seconds)


def _quietly(call) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - best effort: the server may be gone
        pass


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def run_foreground(settings: Settings, *, on_committed: OnCommitted | None = None,
                   duration: float | None = None) -> int:
    """Run the stream until SIGINT/SIGTERM/SIGHUP (or `duration` seconds), showing its progress."""
    return Supervisor(settings, on_committed).run(duration)


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
