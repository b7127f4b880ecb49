"""Spark Connect sessions on the lakehouse server: the only way Python code reaches Spark.

No client ever starts a Spark driver of its own (a second driver would clash with the server on
the embedded Derby metastore): every job is a Spark Connect client of the one server.
"""
from __future__ import annotations

import atexit
import gc
import os
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, TypeVar

from lakehouse.server import port_open
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

from lakehouse.tables import BY_NAME, SCHEMAS


class ServerNotRunning(RuntimeError):
    pass


def connect(settings: Settings) -> SparkSession:
    """A Spark Connect session on the server; a clear error when nothing listens."""
    if not port_open(settings.host, settings.connect_port):
        raise ServerNotRunning(
            f"No lakehouse server answers on {settings.connect_url}. "
            "Start it with `lakehouse up` (or `make run`)."
        )
    return connect_remote(settings.connect_url)


_sessions: dict[str, SparkSession] = {}


def connect_remote(url: str) -> SparkSession:
    """A session on any Spark Connect endpoint (`sc://host:port`): the one this process already
    has for that URL, else a new one. (pyspark's getOrCreate hands back the active session
    whatever its URL, so a second server would silently get the first one's session.) MLlib's
    model calls over Connect still go to the thread's active session, the first one made: one
    process trains against one server."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = _sessions.get(url)
    if session is None or session.is_stopped:
        session = _sessions[url] = SparkSession.builder.remote(url).create()
    return session


def table_overview(spark: SparkSession, schemas: tuple[str, ...] = SCHEMAS) -> list[tuple]:
    """(schema, table or view, rows, Delta version, last operation, owner) for every table in the
    lakehouse schemas; views have no version. The owner is the catalogue's (lakehouse/tables.py),
    or dbt for the models it declares."""
    existing = {db.name for db in spark.catalog.listDatabases()}
    rows = []
    for schema in schemas:
        if schema not in existing:
            continue
        for table in sorted(spark.catalog.listTables(schema), key=lambda t: t.name):
            if table.isTemporary:
                continue
            name = f"{schema}.{table.name}"
            count = spark.table(name).count()
            owner = BY_NAME[name].owner if name in BY_NAME else ("dbt" if schema in ("silver", "gold") else "-")
            if table.tableType == "VIEW":
                rows.append((schema, f"{table.name} (view)", count, "-", "-", owner))
                continue
            last = spark.sql(f"describe history {name} limit 1").first()
            when = last["timestamp"].strftime("%m-%d %H:%M:%S")
            rows.append((schema, table.name, count, str(last["version"]), f"{last['operation']} at {when}", owner))
    return rows


# How long the end of a command may spend releasing its models and sessions on the server. Each
# release is one small gRPC call (milliseconds on a live server); past this the server is taken
# for unresponsive, and the command exits anyway (see `close_all`).
CLOSE_TIMEOUT_SECONDS = 20.0

Model = TypeVar("Model")


class _ModelReleaser:
    """Releases the server-side ML cache entries of models fitted over Spark Connect, on a thread
    of its own, so no release can block the code that dropped a model, nor the process's exit.

    pyspark (4.1) releases a Connect model from its finalizer: `JavaWrapper.__del__` ->
    `RemoteModelRef.release_ref` -> `del_remote_cache` -> `client._delete_ml_cache`, a gRPC call made
    on whatever thread the garbage collector runs on, with no timeout; at interpreter exit that
    call was seen never answering, so a job printed its results and never exited. A model handed
    to `manage` is taken over: one extra reference on its `RemoteModelRef` (pyspark's own count)
    means pyspark's finalizer never reaches zero and never calls the server itself; instead a
    `weakref.finalize` on the ref (shared by every copy of the model and kept alive by every
    DataFrame derived from it) queues its id when the last user is gone, and this thread deletes
    it. At the end of a command, `close` deletes what is still alive, with a deadline."""

    def __init__(self) -> None:
        # SimpleQueue.put is reentrant: safe from a finalizer that runs in the middle of a put.
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._held: dict[int, tuple[weakref.finalize, object, str]] = {}  # id(ref) -> (finalizer, session, ref id)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def manage(self, model: Model, session) -> Model:
        self._hold(getattr(model, "_java_obj", None), session)
        return model

    def _hold(self, ref, session) -> bool:
        from pyspark.ml.util import RemoteModelRef

        if not isinstance(ref, RemoteModelRef):  # a classic (JVM) model: nothing on a Connect server
            return False
        with self._lock:
            if id(ref) in self._held and self._held[id(ref)][0].alive:
                return False
            if getattr(ref, "_ref_count", 1) <= 0:  # pyspark released it already
                return False
            ref.add_ref()  # our hold: pyspark's finalizer can no longer bring the count to zero
            finalizer = weakref.finalize(ref, self._queue.put, ("release", session, [ref.ref_id]))
            finalizer.atexit = False  # `close` releases what is left, with a deadline; exit never does
            self._held[id(ref)] = (finalizer, session, ref.ref_id)
            if len(self._held) > 256:  # forget the models released meanwhile (a long sweep)
                self._held = {k: v for k, v in self._held.items() if v[0].alive}
            self._start()
        return True

    def manage_strays(self, session) -> int:
        """Take over every Connect model this process still has that `manage` was not given (made
        by code that does not call it, on `session`): after this, no finalizer left calls the
        server itself. Returns how many there were."""
        from pyspark.ml.util import RemoteModelRef

        return sum(self._hold(o, session) for o in gc.get_objects() if isinstance(o, RemoteModelRef))

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            # A daemon: the interpreter's exit never waits for it (a non-daemon thread is joined).
            self._thread = threading.Thread(target=self._run, name="lakehouse-model-release", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            action, target, ids = item
            try:
                if action == "release":
                    # pyspark's own del_remote_cache uses the calling thread's active session, and
                    # this thread has none: the session that fitted the model is named instead.
                    # _delete_ml_cache swallows its errors (a session that is gone has no cache).
                    ids = [i for i in ids if i and "." not in i]  # "." names a model's summary
                    if ids and not target.is_stopped:
                        target.client._delete_ml_cache(ids)
                elif action == "call":
                    target()
            except Exception:  # noqa: BLE001 - best effort, as pyspark's own release
                pass

    def close(self, then, deadline: float) -> bool:
        """Release every model still held (one call per session), then run `then` (stopping the
        sessions) on the release thread, and wait for both until `deadline` (time.monotonic()).
        True when all of it finished in time."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        by_session: dict[int, tuple[object, list[str]]] = {}
        for finalizer, session, ref_id in held:
            if finalizer.detach() is not None:  # still alive: released here, never by its finalizer
                by_session.setdefault(id(session), (session, []))[1].append(ref_id)
        for session, ids in by_session.values():
            self._queue.put(("release", session, ids))
        self._queue.put(("call", then, None))
        self._queue.put(None)
        self._start()
        thread = self._thread
        thread.join(max(0.0, deadline - time.monotonic()))
        finished = not thread.is_alive()
        self._thread = None
        return finished


_releaser = _ModelReleaser()


def manage_model(model: Model, session: SparkSession) -> Model:
    """Hand a model fitted over Spark Connect (on `session`) to this process's releaser: it is
    released on the server when the last Python reference to it goes, or by `close_all` at the end
    of the command, never by a finalizer at interpreter exit. Returns the model."""
    return _releaser.manage(model, session)


def close_all(timeout: float = CLOSE_TIMEOUT_SECONDS) -> bool:
    """Release what this process holds on the servers, then stop its sessions, within `timeout`
    seconds; True when all of it finished in time.

    Spark Connect ML models release their server-side cache from a finalizer; left to interpreter
    exit, that gRPC call was seen waiting for ever (`lakehouse train` printed its results and
    never returned). So here, while the sessions can still answer: every model this process still
    holds is released explicitly (models fitted by `ml/` are handed to `manage_model` when fitted,
    any other is found and taken over first), then the sessions are stopped, all on the release
    thread with a deadline. Afterwards nothing left can call the server at exit: the remaining
    model finalizers only drop pyspark's count to our hold (never to zero), and pyspark's own
    atexit hook (`_cleanup_ml_cache`, one more unbounded call) is unregistered, its work done.
    When the deadline passes the server is not answering: the caller decides what to do (the CLI
    exits without waiting, see lakehouse/cli.py)."""
    deadline = time.monotonic() + timeout
    try:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        active = ConnectSession.getActiveSession()  # the session MLlib's calls went to (this thread's)
    except Exception:  # noqa: BLE001 - no Connect session was ever made
        active = None
    sessions = list(_sessions.items())
    if active is not None:
        _releaser.manage_strays(active)
    gc.collect()  # models in reference cycles: their finalizers now only queue their ids

    def stop_sessions() -> None:
        for url, session in sessions:
            try:
                session.stop()
            except Exception:  # noqa: BLE001 - a server that is gone has nothing left to release
                pass
            _sessions.pop(url, None)

    finished = _releaser.close(stop_sessions, deadline)
    for _url, session in sessions:
        try:
            atexit.unregister(session.client._cleanup_ml_cache)
        except Exception:  # noqa: BLE001
            pass
    return finished
