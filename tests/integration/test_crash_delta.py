"""kill -9 of the lakehouse server in the middle of a Delta write, then a restart: every table is
still there at a committed version, and the writer's next run finishes the job; and the stream's
supervision, with the fold-in on.

(a) the stream's fold-in: the kill lands once the stream log says the MERGE into
ml.recommendations is starting (the marker ml/refresh.py writes just before it); after the restart
no table has lost a commit or kept half of one, ml.recommendations has no duplicate (user, rank),
and the stream, restarted, commits every landed rating exactly once and folds its users in.
(b) a dbt rebuild: the kill lands once dbt's log shows `create or replace table gold.movies`
running; after the restart every gold table reads as its last committed version (gold.movies
as before the rebuild), and the next `dbt build` passes.
(c) the stream's own supervision: the server killed once a batch has started (by its log line),
then started again, and the stream's process, left alone, restarts its query and runs the batch
again; the stream's client killed mid-batch, and its query, orphaned in the server, stops at its
next step instead of writing on; the next client runs the batch again. Either way every rating
is in bronze once, every batch once in the ledger, and every user has one whole list, refreshed
after its batch.

A server of the test's own (own data directory, ports, MLflow store), so the session's server is
not disturbed. Set up from a synthetic ml-100k layout with the CLI and dbt, as a user would.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse import server, tables
from lakehouse.dbt_runner import ML_NODES, PROJECT_DIR, dbt_env, dbt_executable
from lakehouse.stream import job
from tests.conftest import free_port
from tests.integration.helpers import fresh_stream, kill_group, lakehouse_cli, land, log_since, log_size, wait_for

pytestmark = pytest.mark.integration

SCHEMAS = ("bronze", "silver", "gold", "ml")
# gold.movies and what depends on it, with their data tests (dbt's unit tests run on fixtures).
MOVIES_BUILD = ("build", "--select", "movies+", "--exclude", ML_NODES, "--exclude-resource-type", "unit_test")
FOLD_IN_MARKER = re.compile(r"fold-in: merging (\d+) users' lists into ml\.recommendations")
NEW_USERS = 2000  # users known only from the stream: a big merge, so the kill lands inside it
RATINGS_PER_USER = 6  # >= ml.refresh.MIN_RATINGS: a fold-in list, not a cold-start one
FIRST_USER = 500_000
VALID_TS = 1_600_000_000
SYNTHETIC_MOVIES = 400  # movie ids 1..400 exist in the synthetic dataset

# ---- helpers ---------------------------------------------------------------------------------


# pyspark 4.1.0: a SparkSession's __del__ closes its client, which shuts down the release thread
# pool every session shares (ExecutePlanResponseReattachableIterator.shutdown, waiting). When the
# garbage collector runs that finalizer inside the pool's own submit() (a live session's query,
# holding the pool's lock), the process deadlocks: seen here, the test hung for good in
# spark.catalog.databaseExists. So the sessions are kept referenced until the module's end, and
# collected there, at a point where no query runs.
_sessions: list = []


def own_session(settings):
    """A new Spark Connect session on this server (one made before a restart died with it)."""
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(settings.connect_url).create()
    _sessions.append(session)
    return session


def drop_sessions() -> None:
    for session in _sessions:
        try:
            session.stop()
        except Exception:  # noqa: BLE001 - its server is gone: nothing left to close
            pass
    _sessions.clear()
    gc.collect()


def dbt_log(settings) -> Path:
    return settings.logs_dir / "dbt" / "dbt.log"


def start_dbt(settings, *args: str, output: Path) -> subprocess.Popen:
    """`dbt <args>` against this server, in its own process group; console output to `output`."""
    env = {**dbt_env(settings), "DBT_TARGET_PATH": str(settings.home / "dbt-target")}
    with open(output, "ab") as out:
        return subprocess.Popen([dbt_executable(), *args, "--project-dir", str(PROJECT_DIR)], cwd=PROJECT_DIR,
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def dbt(settings, *args: str, timeout: float = 900) -> str:
    output = settings.logs_dir / f"dbt-console-{time.monotonic_ns()}.txt"
    proc = start_dbt(settings, *args, output=output)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = output.read_text(errors="replace")
    assert code == 0, f"dbt {' '.join(args)} exited {code}:\n" + "\n".join(text.splitlines()[-40:])
    return text


def lakehouse_tables(spark) -> dict[str, str]:
    """Every table and view of the lakehouse schemas: name -> 'TABLE' or 'VIEW'."""
    found = {}
    for schema in SCHEMAS:
        if spark.catalog.databaseExists(schema):
            for t in spark.catalog.listTables(schema):
                if not t.isTemporary:
                    found[f"{schema}.{t.name}"] = "VIEW" if t.tableType == "VIEW" else "TABLE"
    return found


def snapshot(spark, name: str, *, digest: bool = True) -> tuple[int, int, int]:
    """(last committed Delta version, rows, an order-independent hash of every row, or 0). Raises
    when the table, read as of that version or as it is now, does not read, or when the two differ
    in rows."""
    version = int(spark.sql(f"describe history {name} limit 1").first().version)
    hashed = "coalesce(sum(cast(xxhash64(to_json(struct(*))) as decimal(38, 0))), 0)" if digest else "0"
    row = spark.sql(f"select (select count(*) from {name}) as now, count(*) as n, {hashed} as h "
                    f"from {name} version as of {version}").first()
    assert row.now == row.n, f"{name}: {row.now} rows now, {row.n} at its last version {version}"
    return version, int(row.n), int(row.h)


def check_every_table_readable(spark, expected: dict[str, str], *, digest: bool = False) -> dict[str, tuple[int, int, int]]:
    """Every table of `expected` exists and reads; a Delta table reads the same at its last
    committed version (DESCRIBE HISTORY) as without a version. Returns the tables' snapshots."""
    found = lakehouse_tables(spark)
    assert set(expected) <= set(found), f"tables lost in the crash: {sorted(set(expected) - set(found))}"
    problems, snapshots = [], {}
    for name, kind in sorted(expected.items()):
        try:
            if kind == "VIEW":
                spark.sql(f"select count(*) from {name}").collect()
            else:
                snapshots[name] = snapshot(spark, name, digest=digest)
        except Exception as error:  # noqa: BLE001 - every unreadable table is listed
            problems.append(f"{name}: {str(error).splitlines()[0][:300]}")
    assert not problems, "tables unreadable after the crash:\n" + "\n".join(problems)
    return snapshots


def duplicate_ranks(spark) -> int:
    spark.catalog.refreshTable(tables.RECOMMENDATIONS.name)
    return spark.table(tables.RECOMMENDATIONS.name).groupBy("user_id", "rank").count().where("count > 1").count()


def file_loads(spark, names: list[str]) -> dict[str, set[str]]:
    """The loads (micro-batches) bronze.stream_files names for each of these files."""
    spark.catalog.refreshTable(tables.STREAM_FILES.name)
    loads: dict[str, set[str]] = {}
    for row in spark.table(tables.STREAM_FILES.name).where(F.col("source_file").isin(names)).collect():
        loads.setdefault(row.source_file, set()).add(row.load_id)
    return loads


def finished_batches(spark, names: list[str]) -> list:
    """Ledger rows (bronze.stream_batches: written after the fold-in) of the batches with these files."""
    loads = set().union(*file_loads(spark, names).values())
    if not loads:
        return []
    spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
    return spark.table(tables.STREAM_BATCHES.name).where(F.col("load_id").isin(sorted(loads))).collect()


def unfinished_files(spark, names: list[str]) -> list[str]:
    finished = {r.load_id for r in finished_batches(spark, names)}
    loads = file_loads(spark, names)
    return [n for n in names if not loads.get(n, set()) & finished]


# ---- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_server(lakehouse_settings, tmp_path_factory, synthetic_100k_layout):
    """A server of this module's own, with bronze, gold (dbt) and a ranking champion."""
    home = tmp_path_factory.mktemp("crash-delta-home")
    settings = dataclasses.replace(
        lakehouse_settings, home=home, thrift_port=free_port(), connect_port=free_port(), driver_memory="2g",
        mlflow_dir=home / "mlflow", mlflow_port=free_port(), stream_dir=home / "landing", stream_trigger_seconds=1.0,
        jar_cache=lakehouse_settings.jar_cache_dir)  # the session server's jars: fetched once
    server.up(settings, timeout=300, quiet=True)
    try:
        lakehouse_cli(settings, "ingest", "--dataset", "ml-100k", "--source", str(synthetic_100k_layout))
        dbt(settings, "build", "--exclude", ML_NODES, "--exclude-resource-type", "unit_test",
            "--exclude-resource-type", "test")  # seeds and models; the tests run in (b)
        lakehouse_cli(settings, "train", "--task", "ranking", "--grid", "quick")
        yield settings
    finally:
        drop_sessions()
        job.stop(settings, grace=10)
        server.down(settings)


def restart(settings) -> None:
    """`up` again once the killed server's ports are closed (kill_group waits for its processes)."""
    wait_for(lambda: not server.port_open(settings.host, settings.thrift_port)
             and not server.port_open(settings.host, settings.connect_port), 60, "the killed server's ports to close",
             step=0.1)
    server.up(settings, timeout=300, quiet=True)


# ---- (a) the fold-in -------------------------------------------------------------------------


def test_kill_during_the_fold_in_merge_loses_nothing_and_the_stream_resumes(crash_server, tmp_path):
    settings = fresh_stream(crash_server, tmp_path / "landing")
    spark = own_session(settings)
    before = lakehouse_tables(spark)
    recommendations_version = snapshot(spark, tables.RECOMMENDATIONS.name, digest=False)[0]
    spark.stop()

    names, expected = [], 0
    for index in range(4):  # 4 files of 500 users x 6 ratings; the first batch takes them all
        users = range(FIRST_USER + index * NEW_USERS // 4, FIRST_USER + (index + 1) * NEW_USERS // 4)
        lines = [f"{u},{1 + (u * 7 + k * 31) % SYNTHETIC_MOVIES},{1 + (u + k) % 5},{VALID_TS + k}"
                 for u in users for k in range(RATINGS_PER_USER)]
        names.append(name := f"crash-fold-in-{index}.csv")
        land(settings.stream_dir, name, "\n".join(lines) + "\n")
        expected += len(lines)
    log_offset = log_size(settings.stream_log)

    def new_log() -> str:
        return log_since(settings.stream_log, log_offset)

    job.detach(settings, fold_in=True, timeout=300)
    marker = wait_for(lambda: FOLD_IN_MARKER.search(new_log()), 600, "the fold-in merge to start", step=0.05)
    kill_group(server.running_pid(settings))  # the JVM, the server process and the batch's Python worker
    at_kill = new_log()
    job.stop(settings, grace=10)  # its client has lost the server

    # The kill hit the fold-in: the merge had started (for the whole batch), and the batch had not
    # finished (its summary line comes after the fold-in and the ledger row).
    assert int(marker.group(1)) == NEW_USERS, marker.group(0)
    started = re.findall(r"batch (\d+): started", at_kill[:marker.start()])
    assert started, at_kill
    assert not re.search(rf"batch {started[-1]}: \d+ files", at_kill), "the batch finished before the kill"

    restart(settings)
    spark = own_session(settings)
    try:
        check_every_table_readable(spark, before)
        # The merge did not commit: ml.recommendations is at the version it had before the batch.
        assert snapshot(spark, tables.RECOMMENDATIONS.name, digest=False)[0] == recommendations_version, \
            "the merge committed before the kill landed"
        assert duplicate_ranks(spark) == 0
        # Bronze may hold the batch (committed before the fold-in); its ledger row must not be there.
        assert not finished_batches(spark, names), "the killed batch has its ledger row"

        job.detach(settings, fold_in=True, timeout=300)
        try:
            wait_for(lambda: len(finished_batches(spark, names)) >= 1 and not unfinished_files(spark, names), 600,
                     "the restarted stream to finish the landed files' batch")
        finally:
            job.stop(settings)

        spark.catalog.refreshTable(tables.STREAM_FILES.name)
        assert spark.table(tables.STREAM_FILES.name).where(F.col("source_file").isin(names)).count() == len(names)
        spark.catalog.refreshTable(tables.RATING_EVENTS.name)
        events = spark.table(tables.RATING_EVENTS.name).where(F.col("source_file").isin(names))
        assert events.count() == expected  # every landed rating once
        assert events.select("source_file", "line_number").distinct().count() == expected
        # The fold-in ran again after the restart: every new user has one full top-N list.
        assert duplicate_ranks(spark) == 0
        spark.catalog.refreshTable(tables.RECOMMENDATIONS.name)
        lists = (spark.table(tables.RECOMMENDATIONS.name).where(F.col("user_id") >= FIRST_USER)
                 .groupBy("user_id").agg(F.count(F.lit(1)).alias("n"), F.max("rank").alias("top")).collect())
        assert len(lists) == NEW_USERS
        assert all(r.n == r.top and r.n >= 1 for r in lists)
    finally:
        spark.stop()


# ---- (c) the stream's supervision: the server and the stream's client killed mid-batch --------

BATCH_START = re.compile(r"batch (\d+): started")


def land_user_files(folder: Path, files: int, users_per_file: int, first_user: int) -> tuple[list[str], int]:
    """Files of new users with RATINGS_PER_USER ratings each (a fold-in list each); (names, ratings)."""
    names, total = [], 0
    for index in range(files):
        users = range(first_user + index * users_per_file, first_user + (index + 1) * users_per_file)
        lines = [f"{u},{1 + (u * 7 + k * 31) % SYNTHETIC_MOVIES},{1 + (u + k) % 5},{VALID_TS + k}"
                 for u in users for k in range(RATINGS_PER_USER)]
        names.append(name := f"supervised-{first_user}-{index}.csv")
        land(folder, name, "\n".join(lines) + "\n")
        total += len(lines)
    return names, total


def check_landed_exactly_once(spark, settings, names: list[str], expected: int, first_user: int, users: int) -> None:
    """Every rating once in bronze, every batch once in the ledger, and every user one whole list in
    ml.recommendations, refreshed after the batch that carried the user's ratings committed."""
    spark.catalog.refreshTable(tables.RATING_EVENTS.name)
    events = spark.table(tables.RATING_EVENTS.name).where(F.col("source_file").isin(names))
    assert events.count() == expected
    assert events.select("source_file", "line_number").distinct().count() == expected
    spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
    ledger = spark.table(tables.STREAM_BATCHES.name).where(F.col("query_id") == job.stream_id(settings))
    assert ledger.groupBy("batch_id").count().where("count > 1").count() == 0
    committed = {r.load_id: r.committed_at for r in ledger.collect()}
    spark.catalog.refreshTable(tables.RECOMMENDATIONS.name)
    lists = (spark.table(tables.RECOMMENDATIONS.name).where(F.col("user_id").between(first_user, first_user + users - 1))
             .groupBy("user_id").agg(F.count(F.lit(1)).alias("n"), F.max("rank").alias("top"),
                                     F.countDistinct("rank").alias("ranks"), F.min("updated_at").alias("updated"))
             .collect())
    assert len(lists) == users
    assert all(r.n == r.top == r.ranks and r.n >= 1 for r in lists)
    carried = {r.user_id: r.load_id for r in events.select("user_id", "load_id").distinct().collect()}
    assert all(r.updated >= committed[carried[r.user_id]] for r in lists), "a list older than its user's batch"


def test_each_server_gets_its_own_session(crash_server, lakehouse_server):
    from lakehouse.session import connect

    mine, other = connect(lakehouse_server), connect(crash_server)
    assert other is not mine and connect(crash_server) is other
    other.sql("create database if not exists only_on_the_second_server")
    try:
        assert other.catalog.databaseExists("only_on_the_second_server")
        assert not mine.catalog.databaseExists("only_on_the_second_server")
    finally:
        other.sql("drop database if exists only_on_the_second_server")
        # Stopped while its server answers: a session left to interpreter exit after its server
        # is gone has pyspark's atexit hook retry for about ten minutes.
        other.stop()


def stream_until_a_batch_starts(crash_server, landing: Path, first_user: int, per_file: int):
    """A fresh stream (fold-in on, two files a batch) on six landed files of new users, waited on
    until a batch's start line is in the log: (settings, names, ratings, stream pid, log offset,
    the start line)."""
    settings = fresh_stream(crash_server, landing, stream_max_files_per_trigger=2)
    names, expected = land_user_files(settings.stream_dir, 6, per_file, first_user)
    offset = log_size(settings.stream_log)
    pid = job.detach(settings, fold_in=True, timeout=300)
    started = wait_for(lambda: BATCH_START.search(log_since(settings.stream_log, offset)), 600,
                       "a micro-batch to start", step=0.05)
    return settings, names, expected, pid, offset, started


def test_the_stream_restarts_itself_when_the_server_dies_mid_batch(crash_server, tmp_path):
    first_user, per_file = 600_000, 150
    settings, names, expected, pid, offset, started = stream_until_a_batch_starts(
        crash_server, tmp_path / "landing", first_user, per_file)
    kill_group(server.running_pid(settings))  # the JVM, the server process and the batch's Python worker
    at_kill = log_since(settings.stream_log, offset)
    batch = started.group(1)
    assert not re.search(rf"batch {batch}: \d+ files", at_kill), "the batch finished before the kill"

    restart(settings)  # the stream's client is left alone: it must find the server again by itself
    spark = own_session(settings)
    try:
        wait_for(lambda: not unfinished_files(spark, names), 600, "every landed file's batch to finish")
        status = job.read_status(settings)
        assert job.running_pid(settings) == pid, "the stream's process was replaced, not supervised"
        assert status["restarts"] >= 1 and status["state"] == "running", status
        log = log_since(settings.stream_log, offset)
        assert re.search(r"supervisor: restart \d+: the query runs again", log)
        assert len(re.findall(rf"batch {batch}: started", log)) >= 2, "the killed batch was not run again"
        check_landed_exactly_once(spark, settings, names, expected, first_user, 6 * per_file)
    finally:
        job.stop(settings)


def test_a_killed_stream_client_leaves_no_query_writing_and_the_next_reruns_its_batch(crash_server, tmp_path):
    first_user, per_file = 700_000, 150
    settings, names, expected, pid, offset, started = stream_until_a_batch_starts(
        crash_server, tmp_path / "landing", first_user, per_file)
    kill_group(pid)  # kill -9 of the client: the query runs in the server and does not notice by itself
    # The query's next step finds its client gone and fails the query; the batch is not finished.
    gone = wait_for(lambda: re.search(r"batch (\d+): the stream's client \(pid (\d+)\) is gone (before [a-z ]+);",
                                      log_since(settings.stream_log, offset)), 300, "the orphaned query to stop")
    assert int(gone.group(2)) == pid
    orphaned = gone.group(1)
    assert int(orphaned) in (int(started.group(1)), int(started.group(1)) + 1), (started.group(0), gone.group(0))
    spark = own_session(settings)
    try:
        spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
        ledger = spark.table(tables.STREAM_BATCHES.name).where(
            (F.col("query_id") == job.stream_id(settings)) & (F.col("batch_id") == int(orphaned)))
        assert ledger.count() == 0, "the orphaned query finished its batch"

        job.detach(settings, fold_in=True, timeout=300)
        wait_for(lambda: not unfinished_files(spark, names), 600, "every landed file's batch to finish")
        log = log_since(settings.stream_log, offset)
        assert len(re.findall(rf"batch {orphaned}: started", log)) >= 2, "the orphaned batch was not run again"
        check_landed_exactly_once(spark, settings, names, expected, first_user, 6 * per_file)
    finally:
        job.stop(settings)


# ---- (b) a dbt rebuild -----------------------------------------------------------------------


GOLD_MOVIES_CREATE = re.compile(r"On model\.movielens_lakehouse\.movies: [^\n]*\n\s*create or replace table gold\.movies\b")


def test_kill_during_a_dbt_rebuild_keeps_every_gold_table_at_its_last_commit(crash_server, tmp_path):
    settings = crash_server
    job.stop(settings)  # nothing but dbt writes meanwhile
    spark = own_session(settings)
    gold_objects = {name: kind for name, kind in lakehouse_tables(spark).items() if name.startswith("gold.")}
    gold = {name: snapshot(spark, name) for name, kind in gold_objects.items() if kind == "TABLE"}
    spark.stop()
    assert "gold.movies" in gold

    log_offset = log_size(dbt_log(settings))
    console = tmp_path / "dbt-killed.txt"
    proc = start_dbt(settings, *MOVIES_BUILD, output=console)
    try:
        wait_for(lambda: GOLD_MOVIES_CREATE.search(log_since(dbt_log(settings), log_offset)), 900,
                 "dbt's `create or replace table gold.movies`", step=0.05)
        kill_group(server.running_pid(settings))
        # dbt finds its statement failed: the kill hit it while it ran (not before, not after).
        wait_for(lambda: re.search(r"ERROR creating sql table model gold\.movies", console.read_text(errors="replace")),
                 120, "dbt to report gold.movies failed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the rest of the build would only retry a dead server
        proc.wait(timeout=30)
    output = console.read_text(errors="replace")
    assert not re.search(r"OK created sql table model gold\.movies", output)

    restart(settings)
    spark = own_session(settings)
    try:
        after = check_every_table_readable(spark, gold_objects, digest=True)
        assert after["gold.movies"] == gold["gold.movies"], "gold.movies is not its previous committed version"
        for name, (version, rows, digest) in gold.items():
            if after[name][0] == version:
                assert after[name] == (version, rows, digest), f"{name} changed without a new version"
            else:  # rebuilt before the kill: dbt said so, and the new version is whole
                node = name.split(".", 1)[1]
                assert re.search(rf"OK created sql (incremental|table) model gold\.{node}\b", output), name
    finally:
        spark.stop()
    dbt(settings, *MOVIES_BUILD, "--exclude-resource-type", "test")  # the next build rebuilds what the kill stopped
    spark = own_session(settings)
    try:
        assert snapshot(spark, "gold.movies", digest=False)[0] > gold["gold.movies"][0]
    finally:
        spark.stop()
