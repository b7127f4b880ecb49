"""Spark Connect sessions on the lakehouse server: the only way Python code reaches Spark.

No client ever starts a Spark driver of its own (a second driver would clash with the server on
the embedded Derby metastore): every job is a Spark Connect client of the one server.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

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


def close_all() -> None:
    """Release what this process holds on the servers, then stop its sessions. Spark Connect ML
    models release their server-side cache from a finalizer; left to interpreter exit, that gRPC
    call was seen waiting for ever (`lakehouse train` printed its results and never returned), so
    the finalizers run here, while the sessions can still answer them."""
    import gc

    gc.collect()
    for url, session in list(_sessions.items()):
        try:
            session.stop()
        except Exception:  # noqa: BLE001 - a server that is gone has nothing left to release
            pass
        _sessions.pop(url, None)
