"""Delta Lake only, on the real server: every table is Delta, the Delta statements the project
relies on run over Spark Connect and over Thrift (a guard on the pyspark 4.1.0 + Delta 4.1.0 pins),
Delta works on a Thrift connection opened after another one closed (the class-loader trap in
DESIGN.md), a stream batch run again commits nothing twice, `train --as-of` reads an old version,
and housekeeping / `lakehouse status` report what Delta did."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from pyhive import hive
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import delta, tables
from tests.integration.conftest import count, fresh, ingest
from tests.integration.helpers import fresh_stream, land, wait_for

REPO = Path(__file__).resolve().parents[2]
VALID_TS = 1_600_000_000  # 2020-09-13
SYNTHETIC_MOVIES = 400  # movie ids 1..400 exist in the synthetic dataset

# Small tables on a shared 2-core machine: Delta's defaults (50 partitions to rebuild a snapshot,
# 200 shuffle partitions, 10000-way file listing in VACUUM) cost seconds per statement. These
# only change how many tasks the same plans use, never what they return.
LEAN_CONF = {
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
}


# ---- helpers -------------------------------------------------------------------------------


def thrift(settings, lean: bool = True):
    connection = hive.connect(host="127.0.0.1", port=settings.thrift_port, username="test")
    if lean:
        with closing(connection.cursor()) as cursor:
            for key, value in LEAN_CONF.items():
                cursor.execute(f"set {key}={value}")
    return connection


def thrift_rows(connection, statement: str) -> list[tuple]:
    with closing(connection.cursor()) as cursor:
        cursor.execute(statement)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def thrift_dicts(connection, statement: str) -> list[dict]:
    with closing(connection.cursor()) as cursor:
        cursor.execute(statement)
        names = [d[0].split(".")[-1] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`lakehouse ARGS` in a child process; the fixture exported the test server's settings."""
    return subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "COLUMNS": "200"})


def two_connection_check(settings, reads: dict[str, int], schema: str) -> None:
    """Connection 1 creates and reads a Delta table, and is closed; connection 2 must still read
    Delta tables (`reads`: table -> rows expected at least) and create one `using delta`."""
    first = thrift(settings)
    try:
        thrift_rows(first, f"create schema if not exists {schema}")
        thrift_rows(first, f"create table {schema}.first using delta as select 1 as x union all select 2")
        assert thrift_rows(first, f"select sum(x) from {schema}.first") == [(3,)]
        for table in reads:
            thrift_rows(first, f"select count(*) from {table}")
    finally:
        first.close()  # Hive's SessionState.close(): the class loaders it closes must not hold Delta
    second = thrift(settings)
    try:
        for table, at_least in reads.items():
            (rows,), = thrift_rows(second, f"select count(*) from {table}")
            assert rows >= at_least, (table, rows)
            # a read that runs tasks (the closure cleaner, Delta's classes in the tasks)
            assert thrift_rows(second, f"select count(distinct load_id) from {table}")[0][0] >= 1, table
        assert thrift_rows(second, f"select sum(x) from {schema}.first") == [(3,)]
        thrift_rows(second, f"create table {schema}.second using delta as select 'after close' as note")
        assert thrift_rows(second, f"select note from {schema}.second") == [("after close",)]
        detail = thrift_dicts(second, f"describe detail {schema}.second")
        assert detail[0]["format"] == "delta"
    finally:
        try:
            thrift_rows(second, f"drop schema if exists {schema} cascade")
        finally:
            second.close()


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lean(spark):
    """LEAN_CONF on the shared session for this module only."""
    saved = {key: spark.conf.get(key, None) for key in LEAN_CONF}
    for key, value in LEAN_CONF.items():
        spark.conf.set(key, value)
    yield spark
    for key, value in saved.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


@pytest.fixture(scope="module")
def bronze(lean, lakehouse_server, synthetic_100k_layout):
    """The synthetic dataset ingested over Spark Connect."""
    report = ingest(lean, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
    assert all(f.conserved for f in report.files)
    return lakehouse_server


# ---- a. every table is Delta ---------------------------------------------------------------


def test_every_bronze_table_is_delta(spark, bronze):
    names = {f"bronze.{t.name}" for t in spark.catalog.listTables("bronze") if not t.isTemporary}
    assert {t.name for t in tables.BRONZE_INGEST} <= names, names
    assert not any(n.startswith("bronze.ingest_stage_") for n in names), names  # scratch dropped
    for name in sorted(names):
        detail = spark.sql(f"describe detail {name}").first()
        assert detail["format"] == "delta", (name, detail["format"])
    ratings = delta.history(spark, tables.RATINGS, limit=100)
    assert ratings and all(r["operation"] for r in ratings)
    assert count(spark, tables.RATINGS.name) > 0


# ---- c (i). Thrift after a Connect ingest --------------------------------------------------


def test_delta_over_a_second_thrift_connection_after_an_ingest(spark, bronze):
    ratings = count(spark, tables.RATINGS.name)
    movies = count(spark, tables.MOVIES.name)
    two_connection_check(bronze, {tables.RATINGS.name: ratings, tables.MOVIES.name: movies},
                         schema="delta_loader_ingest")


# ---- b. the statement matrix over both clients ---------------------------------------------


class ConnectClient:
    def __init__(self, spark):
        self.spark = spark

    def rows(self, statement: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(statement).collect()]

    def dicts(self, statement: str) -> list[dict]:
        return [r.asDict() for r in self.spark.sql(statement).collect()]

    def close(self) -> None:
        pass


class ThriftClient:
    def __init__(self, settings):
        self.connection = thrift(settings)

    def rows(self, statement: str) -> list[tuple]:
        return thrift_rows(self.connection, statement)

    def dicts(self, statement: str) -> list[dict]:
        return thrift_dicts(self.connection, statement)

    def close(self) -> None:
        self.connection.close()


@contextmanager
def client_for(kind: str, spark, settings):
    client = ConnectClient(spark) if kind == "connect" else ThriftClient(settings)
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["connect", "thrift"])
def test_delta_statements_work_over_both_clients(kind, lean, lakehouse_server):
    schema = f"delta_matrix_{kind}"
    t = f"{schema}.scratch"
    with client_for(kind, lean, lakehouse_server) as c:
        c.rows(f"drop schema if exists {schema} cascade")
        c.rows(f"create schema {schema}")
        try:
            c.rows(f"create table {t} (id int, name string) using delta")  # v0
            c.rows(f"insert into {t} values (1, 'a'), (2, 'b'), (3, 'c')")  # v1
            original = sorted(c.rows(f"select id, name from {t}"))
            assert original == [(1, "a"), (2, "b"), (3, "c")]

            c.rows(f"alter table {t} set tblproperties ('lakehouse.test' = '{kind}', "
                   "'delta.enableDeletionVectors' = 'true')")
            properties = dict(c.rows(f"show tblproperties {t}"))
            assert properties.get("lakehouse.test") == kind
            assert properties.get("delta.enableDeletionVectors") == "true"

            c.rows(f"alter table {t} add columns (score double)")
            c.rows(f"alter table {t} alter column name comment 'the display name'")
            c.rows(f"comment on table {t} is 'scratch for {kind}'")
            described = c.rows(f"describe table extended {t}")
            columns = {r[0]: r for r in described if r[0] and not r[0].startswith("#")}
            assert columns["score"][1] == "double"
            assert columns["name"][2] == "the display name"
            assert ("Comment", f"scratch for {kind}") in {(r[0], r[1]) for r in described}

            assert c.rows(f"delete from {t} where id = 2") == [(1,)]  # num_affected_rows
            c.rows(f"reorg table {t} apply (purge)")  # the DELETE's deletion vector rewritten away
            assert sorted(r[0] for r in c.rows(f"select id from {t}")) == [1, 3]

            # (num_affected_rows, num_updated_rows, num_deleted_rows, num_inserted_rows)
            assert c.rows(f"merge into {t} as target using (select 3 as id, 'C' as name, 1.0d as score "
                          f"union all select 4, 'd', 2.0d) as source on target.id = source.id "
                          "when matched then update set * when not matched then insert *") == [(2, 1, 0, 1)]
            c.rows(f"insert into {t} replace where id >= 4 select 4, 'D', 4.0d")
            assert sorted(c.rows(f"select id, name, score from {t}")) == [(1, "a", None), (3, "C", 1.0), (4, "D", 4.0)]

            files_before = c.dicts(f"describe detail {t}")[0]["numFiles"]
            c.rows(f"optimize {t}")
            assert c.dicts(f"describe detail {t}")[0]["numFiles"] < files_before
            c.rows(f"vacuum {t}")  # default retention: the old versions stay readable (below)

            history = c.dicts(f"describe history {t}")
            operations = [h["operation"] for h in sorted(history, key=lambda h: int(h["version"]))]
            expected = ["CREATE TABLE", "WRITE", "SET TBLPROPERTIES", "ADD COLUMNS", "CHANGE COLUMN",
                        "SET TBLPROPERTIES", "DELETE", "REORG", "MERGE", "WRITE", "OPTIMIZE"]
            assert operations[:len(expected)] == expected, operations
            assert "VACUUM END" in operations[len(expected):], operations

            assert sorted(c.rows(f"select * from {t} version as of 1")) == original
            c.rows(f"restore table {t} to version as of 1")
            assert sorted(c.rows(f"select * from {t}")) == original  # rows and schema of version 1
            newest = c.dicts(f"describe history {t} limit 1")[0]
            assert newest["operation"] == "RESTORE" and int(newest["version"]) == len(operations)
        finally:
            c.rows(f"drop schema if exists {schema} cascade")


# ---- c (ii). Thrift after a stream micro-batch ---------------------------------------------


def test_delta_over_a_second_thrift_connection_after_a_stream_batch(lean, bronze, tmp_path):
    from lakehouse.stream import job

    settings = fresh_stream(bronze, tmp_path / "landing")
    query = job.start_query(lean, settings, on_committed=None)
    try:
        name = f"loader-{uuid.uuid4().hex[:8]}.csv"
        land(settings.stream_inbox_dir, name, f"1,1,5,{VALID_TS}\n2,2,4,{VALID_TS}\n")  # no gate: the query alone
        load_prefix = f"{tables.STREAM_LOAD_PREFIX}{job.stream_id(settings)}-"

        def committed_file():
            if query.exception() is not None:
                raise AssertionError(f"the stream failed: {query.exception()}")
            return fresh(lean, tables.STREAM_FILES.name).where(
                (F.col("source_file") == name) & F.col("load_id").startswith(load_prefix)).collect()

        (row,) = wait_for(committed_file, 300, f"{name} in {tables.STREAM_FILES.name}")
        assert (row.rows_read, row.rows_accepted, row.rows_quarantined) == (2, 2, 0)
        two_connection_check(settings, {tables.RATING_EVENTS.name: 2, tables.STREAM_FILES.name: 1},
                             schema="delta_loader_stream")
        assert query.isActive and query.exception() is None
    finally:
        query.stop()


# ---- d. a stream batch run again commits nothing twice -------------------------------------


def sink_batch(spark, folder: Path, batch_id: int = 7):
    """The stream source's rows (`value`, `_metadata`) for the files in `folder`, and the file
    source's log entry for batch `batch_id` naming them (in `folder`/../checkpoint), which is
    where the sink learns a batch's files."""
    land(folder, "good.csv", f"1,10,5,{VALID_TS}\n2,20,4,{VALID_TS}\n3,30,3,{VALID_TS}\n")
    land(folder, "mixed.csv", f"4,40,2,{VALID_TS}\n5,50,9,{VALID_TS}\n")  # 9: off the 1-5 scale
    log = folder.parent / "checkpoint" / "sources" / "0"
    log.mkdir(parents=True, exist_ok=True)
    entries = [json.dumps({"path": p.as_uri(), "timestamp": 0, "batchId": batch_id}) for p in sorted(folder.iterdir())]
    (log / str(batch_id)).write_text("v1\n" + "\n".join(entries) + "\n")
    return spark.read.format("text").load(str(folder)).select("value", "_metadata")


def rows_of(spark, load_id: str) -> dict[str, int]:
    return {t.name: fresh(spark, t.name).where(F.col("load_id") == load_id).count()
            for t in (tables.RATING_EVENTS, tables.QUARANTINE, tables.STREAM_FILES, tables.STREAM_BATCHES)}


@pytest.fixture
def sink(lean, bronze, tmp_path):
    from lakehouse.stream import job
    from lakehouse.stream.sink import BatchSink

    for table in tables.BRONZE_STREAM:
        delta.create_if_missing(lean, table)
    return BatchSink(f"test-{uuid.uuid4().hex[:10]}", job.dataset_scale(lean), str(tmp_path / "sink.log"),
                     checkpoint=str(tmp_path / "checkpoint"))


EXPECTED_BATCH = {tables.RATING_EVENTS.name: 4, tables.QUARANTINE.name: 1, tables.STREAM_FILES.name: 2,
                  tables.STREAM_BATCHES.name: 1}


def test_a_batch_run_twice_commits_once(lean, sink, tmp_path):
    batch = sink_batch(lean, tmp_path / "landed")
    load_id = tables.stream_load_id(sink.stream_id, 7)
    assert sink.load_id(7) == load_id
    sink(batch, 7)
    assert rows_of(lean, load_id) == EXPECTED_BATCH
    sink(batch, 7)  # the ledger says committed: skipped
    assert rows_of(lean, load_id) == EXPECTED_BATCH
    assert "already committed" in Path(sink.log_file).read_text()


def test_a_batch_that_crashed_before_its_ledger_row_commits_once(lean, sink, tmp_path, monkeypatch):
    """A crash after the bronze appends, before the ledger: the run again adds no bronze rows
    (Delta's txnAppId/txnVersion skips them) and writes the ledger row."""
    from lakehouse.stream import sink as sink_module

    batch = sink_batch(lean, tmp_path / "landed")
    load_id = tables.stream_load_id(sink.stream_id, 7)
    real_append = sink_module.delta.append

    def crash_at_the_ledger(df, table, **kwargs):
        if delta.name(table) == tables.STREAM_BATCHES.name:
            raise RuntimeError("simulated crash before the ledger row")
        real_append(df, table, **kwargs)

    monkeypatch.setattr(sink_module.delta, "append", crash_at_the_ledger)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sink(batch, 7)
    monkeypatch.setattr(sink_module.delta, "append", real_append)
    assert rows_of(lean, load_id) == {**EXPECTED_BATCH, tables.STREAM_BATCHES.name: 0}
    versions = {t.name: delta.version(lean, t) for t in (tables.RATING_EVENTS, tables.QUARANTINE, tables.STREAM_FILES)}

    sink(batch, 7)
    assert rows_of(lean, load_id) == EXPECTED_BATCH
    # The skipped appends committed nothing at all.
    assert {t: delta.version(lean, t) for t in versions} == versions


# ---- e. train --as-of ----------------------------------------------------------------------

AS_OF_TABLE = "delta_asof.ratings"


def tiny_ratings(users: range, movies: int = 30, per_user: int = 12) -> list[tuple]:
    rows = []
    for user in users:
        for k in range(per_user):
            movie = 1 + (user * 7 + k * 7) % movies
            rows.append((user, movie, float(1 + (user + movie) % 5), VALID_TS + len(rows) * 60))
    return rows


RATINGS_SCHEMA = "user_id int, movie_id int, rating double, epoch long"


@pytest.fixture(scope="module")
def as_of_table(lean, lakehouse_server):
    v0 = tiny_ratings(range(1, 41))
    v1 = tiny_ratings(range(41, 51))

    def frame(rows):
        return lean.createDataFrame(rows, RATINGS_SCHEMA).select(
            "user_id", "movie_id", "rating", F.timestamp_seconds("epoch").alias("rated_at"))

    lean.sql("drop schema if exists delta_asof cascade")
    delta.replace(frame(v0), AS_OF_TABLE)  # version 0
    delta.append(frame(v1), AS_OF_TABLE)  # version 1
    assert delta.version(lean, AS_OF_TABLE) == 1
    yield len(v0), len(v0) + len(v1)
    lean.sql("drop schema if exists delta_asof cascade")


def train_args(*extra: str) -> argparse.Namespace:
    from ml.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--table", AS_OF_TABLE, "--task", "ranking", "--grid", "quick", "--no-publish", *extra])


def test_load_ratings_pins_the_version(lean, as_of_table):
    from ml.data import load_ratings

    rows_v0, rows_now = as_of_table
    old, old_input = load_ratings(lean, AS_OF_TABLE, as_of=0)
    now, now_input = load_ratings(lean, AS_OF_TABLE)
    assert (old_input.version, old_input.rows, old_input.as_of) == (0, rows_v0, True)
    assert (now_input.version, now_input.rows, now_input.as_of) == (1, rows_now, False)
    assert old.count() == rows_v0 and now.count() == rows_now
    assert old_input.fingerprint != now_input.fingerprint
    assert now_input.as_tags()["input.version"] == "1" and now_input.as_tags()["input.as_of"] == "false"


def test_train_as_of_tags_its_runs_with_the_old_version(lean, lakehouse_server, as_of_table):
    import mlflow

    from ml import tracking
    from ml.train import run_training

    rows_v0, _ = as_of_table
    outcome = run_training(lean, lakehouse_server, train_args("--as-of", "0"))
    assert outcome.rating is None and outcome.registered == {}  # ranking only, nothing published
    tracking.configure(lakehouse_server)
    parent = outcome.ranking.parent_run_id
    runs = [r for r in mlflow.search_runs(experiment_names=[tracking.EXPERIMENTS["ranking"]], output_format="list")
            if parent in (r.info.run_id, r.data.tags.get("mlflow.parentRunId"))]
    assert len(runs) >= 3  # the sweep, popularity, the ALS candidate, the champion
    for run in runs:
        tags = run.data.tags
        assert tags["input.table"] == AS_OF_TABLE, run.info.run_name
        assert tags["input.version"] == "0", run.info.run_name
        assert tags["input.rows"] == str(rows_v0), run.info.run_name
        assert tags["input.as_of"] == "true", run.info.run_name
        assert tags[f"delta.version.{AS_OF_TABLE}"] == "0"


def test_train_as_of_a_version_that_does_not_exist(lean, lakehouse_server, as_of_table):
    from ml.train import run_training

    with pytest.raises(SystemExit, match=r"versions 0\.\.1; --as-of 99"):
        run_training(lean, lakehouse_server, train_args("--as-of", "99"))


# ---- f. housekeeping -----------------------------------------------------------------------

HOUSEKEPT = tables.Table("delta_housekeeping.events", "test", "scratch: many small commits", (), T.StructType([
    T.StructField("id", T.IntegerType(), False), T.StructField("note", T.StringType(), False)]))


def test_housekeeping_compacts_small_commits_and_keeps_rows_and_history(lean, lakehouse_server):
    from lakehouse.housekeeping import housekeep

    lean.sql(f"drop schema if exists {HOUSEKEPT.layer} cascade")
    try:
        delta.create_if_missing(lean, HOUSEKEPT)
        for commit in range(6):  # six small appends, a file (or two) each
            delta.append(lean.createDataFrame([(commit, f"commit {commit}")], HOUSEKEPT.schema), HOUSEKEPT)
        rows_before = sorted(tuple(r) for r in lean.table(HOUSEKEPT.name).collect())
        version_before = delta.version(lean, HOUSEKEPT)

        (done,) = housekeep(lean, targets=(HOUSEKEPT,))
        assert done.table == HOUSEKEPT.name
        assert done.files_before >= 6
        assert done.files_after <= done.files_before and done.files_after == 1
        assert done.files_vacuumed == 0  # default retention: nothing a week of time travel needs
        assert done.version == delta.version(lean, HOUSEKEPT) > version_before
        assert sorted(tuple(r) for r in fresh(lean, HOUSEKEPT.name).collect()) == rows_before
        operations = {int(h["version"]): h["operation"] for h in delta.history(lean, HOUSEKEPT, limit=10)}
        assert "OPTIMIZE" in [op for v, op in operations.items() if v > version_before], operations
        assert sorted(tuple(r) for r in lean.sql(
            f"select * from {HOUSEKEPT.name} version as of {version_before}").collect()) == rows_before
    finally:
        lean.sql(f"drop schema if exists {HOUSEKEPT.layer} cascade")


# ---- g. lakehouse status -------------------------------------------------------------------


def test_status_shows_each_tables_version_and_last_operation(spark, bronze):
    (last,) = delta.history(spark, tables.RATINGS, limit=1)
    result = cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next((l for l in result.stdout.splitlines() if " ratings " in l and "bronze" in l), None)
    assert line is not None, result.stdout
    cells = [c.strip() for c in line.strip("│┃| ").split("│")]
    assert cells[:2] == ["bronze", "ratings"], cells
    assert cells[2].replace(",", "") == str(count(spark, tables.RATINGS.name)), cells
    assert cells[3] == str(last["version"]), cells
    assert cells[4].startswith(f"{last['operation']} at "), cells


# ---- last: the ledger row lost after its commit, and the housekeeping command ------------------


def test_a_batch_whose_ledger_row_was_deleted_commits_once_and_gets_its_ledger_row_back(lean, sink, tmp_path):
    """The ledger row deleted (as if the batch had crashed before it): running the batch again
    must add no bronze rows and write the ledger row again. dbt's staging only takes stream rows
    whose load_id has a ledger row, so without it the batch's ratings never reach gold."""
    batch = sink_batch(lean, tmp_path / "landed")
    load_id = tables.stream_load_id(sink.stream_id, 7)
    sink(batch, 7)
    assert rows_of(lean, load_id) == EXPECTED_BATCH
    delta.delete(lean, tables.STREAM_BATCHES, f"load_id = {delta.quote(load_id)}")
    assert rows_of(lean, load_id)[tables.STREAM_BATCHES.name] == 0

    sink(batch, 7)  # not in the ledger: run again
    after = rows_of(lean, load_id)
    bronze_rows = {k: v for k, v in EXPECTED_BATCH.items() if k != tables.STREAM_BATCHES.name}
    assert {k: v for k, v in after.items() if k != tables.STREAM_BATCHES.name} == bronze_rows  # exactly once
    assert after[tables.STREAM_BATCHES.name] == 1, (
        f"the ledger row of {load_id} did not come back: lakehouse/stream/sink.py writes it with "
        f"delta.append_once(txnAppId={sink.stream_id!r}, txnVersion=7), a transaction "
        f"{tables.STREAM_BATCHES.name}'s log already holds, so Delta skipped the append")


HOUSEKEEPING_TIMEOUT = 300  # seconds; the same work on a session with LEAN_CONF takes ~30 s here
SCRATCH = tables.Table("retention_scratch.versions", "test", "scratch: a table with old versions", (), T.StructType([
    T.StructField("id", T.IntegerType(), False)]))


def aged(path: Path, days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1,2,3.0,1600000000\n")
    when = time.time() - days * 86400
    os.utime(path, (when, when))
    return path


def housekeeping_cli(*args: str) -> str:
    started = time.monotonic()
    try:
        result = cli("housekeeping", *args, timeout=HOUSEKEEPING_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`lakehouse housekeeping {' '.join(args)}` did not finish within {HOUSEKEEPING_TIMEOUT}s: on "
                    "Spark's defaults each VACUUM lists files with 10000 tasks "
                    "(spark.sql.sources.parallelPartitionDiscovery.parallelism) and each snapshot is rebuilt "
                    "with 50 (spark.databricks.delta.snapshotPartitions)")
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"lakehouse housekeeping {' '.join(args)}: {time.monotonic() - started:.0f}s")
    return result.stdout


def test_housekeeping_applies_the_retention_policy_and_says_what_it_removed(spark, bronze):
    from lakehouse.housekeeping import COMPACTED

    settings = bronze
    for table in tables.BRONZE_STREAM:
        delta.create_if_missing(spark, table)
    present = [t.name for t in COMPACTED if spark.catalog.tableExists(t.name)]
    # Past their retention (30, 30, 90, 7 days by default) and within it, each kind.
    old_archive = aged(settings.stream_archive_dir / "landing" / "old.csv", 31)
    new_archive = aged(settings.stream_archive_dir / "landing" / "new.csv", 29)
    old_dead = aged(settings.stream_dead_letter_dir / "old.bin", 40)
    stale = settings.checkpoint_dir / "rating-events-inbox-former0000"
    aged(stale / "offsets" / "0", 10)
    os.utime(stale / "offsets", (time.time() - 10 * 86400,) * 2)
    os.utime(stale, (time.time() - 10 * 86400,) * 2)
    now = delta.utc_now()
    load = f"retention-test-{uuid.uuid4().hex[:8]}"
    rows = [("old.csv", 1, "x", "not a rating", tables.RATINGS.name, now - timedelta(days=91), load),
            ("new.csv", 1, "y", "not a rating", tables.RATINGS.name, now - timedelta(days=89), load)]
    delta.append(spark.createDataFrame(rows, tables.QUARANTINE.schema), tables.QUARANTINE)
    mine = F.col("load_id") == load

    dry = housekeeping_cli("--dry-run")
    assert "Retention: what would be removed (dry run)" in dry, dry
    for item, what in (("stream-archive/", "1 files"), ("stream-dead-letter/", "1 files"),
                       ("bronze.quarantine", "1 rows"), ("checkpoints/", "1 folders")):
        assert any(item in line and re.search(rf"[│|]\s*{what}\s", line) for line in dry.splitlines()), (item, what, dry)
    assert old_archive.exists() and old_dead.exists() and stale.exists()
    assert fresh(spark, tables.QUARANTINE.name).where(mine).count() == 2

    out = housekeeping_cli()
    assert "Housekeeping: OPTIMIZE, then VACUUM" in out and "Retention: removed" in out, out
    for name in present:
        assert name in out, (name, out)
    assert not old_archive.exists() and new_archive.exists() and not old_dead.exists() and not stale.exists()
    assert settings.stream_archive_dir.is_dir() and settings.checkpoint_dir.is_dir()
    assert [r.source_file for r in fresh(spark, tables.QUARANTINE.name).where(mine).collect()] == ["new.csv"]
    logged = {r.item: r for r in fresh(spark, tables.RETENTION_LOG.name).orderBy(F.col("ran_at").desc())
              .limit(5).collect()}
    assert {k: (v.removed, v.unit) for k, v in logged.items() if k != "old table versions"} == {
        "stream-archive/": (1, "files"), "stream-dead-letter/": (1, "files"), tables.QUARANTINE.name: (1, "rows"),
        "checkpoints/": (1, "folders")}
    assert logged["stream-archive/"].bytes == 19 and "LAKEHOUSE_RETAIN_ARCHIVE_DAYS" in logged["stream-archive/"].policy
    assert abs((logged[tables.QUARANTINE.name].cutoff - (now - timedelta(days=90))).total_seconds()) < 600
    # A second run finds nothing more to remove.
    again = housekeeping_cli("--dry-run")
    assert any("bronze.quarantine" in line and re.search(r"[│|]\s*0 rows\s", line) for line in again.splitlines()), again


def test_table_versions_older_than_the_retention_are_vacuumed(lean, lakehouse_server):
    """With LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS=0 time travel ends at the current version: the
    old versions' files go, the current rows stay, the log says how many files and bytes."""
    import dataclasses

    from lakehouse import housekeeping

    lean.sql(f"drop schema if exists {SCRATCH.layer} cascade")
    try:
        delta.replace(lean.createDataFrame([(1,), (2,)], SCRATCH.schema), SCRATCH)
        delta.append(lean.createDataFrame([(3,)], SCRATCH.schema), SCRATCH)
        delta.replace(lean.createDataFrame([(4,)], SCRATCH.schema), SCRATCH)  # versions 0 and 1 unused now
        kept = dataclasses.replace(lakehouse_server, retain_table_versions_hours=168)
        report = housekeeping.run(lean, kept, schemas=(SCRATCH.layer,))
        assert report.vacuumed == {} and report.skipped == 1  # every unused file is minutes old: no VACUUM
        assert sorted(r.id for r in lean.sql(f"select * from {SCRATCH.name} version as of 1").collect()) == [1, 2, 3]

        report = housekeeping.run(lean, dataclasses.replace(kept, retain_table_versions_hours=0),
                                  schemas=(SCRATCH.layer,))
        files, size = report.vacuumed[SCRATCH.name]
        assert files >= 2 and size > 0, report.vacuumed
        (versions,) = [r for r in report.removed if r.item == "old table versions"]
        assert (versions.removed, versions.bytes, versions.unit) == (files, size, "files")
        assert [r.id for r in fresh(lean, SCRATCH.name).collect()] == [4]
        with pytest.raises(Exception, match="(?i)FileNotFound|FILE_NOT_EXIST|does not exist|DELTA_FILE_NOT_FOUND"):
            lean.sql(f"select * from {SCRATCH.name} version as of 1").collect()
    finally:
        lean.sql(f"drop schema if exists {SCRATCH.layer} cascade")
