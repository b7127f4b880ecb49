"""Readers see a consistent lakehouse while every writer runs: a BI-style client polls the Thrift
server (PyHive, one connection, every 250 ms) with `select count(*)` on ml.recommendations,
gold.movies and gold.ratings, while the stream folds replayed ratings into ml.recommendations
(MERGE), `dbt build` rebuilds gold (`create or replace`, and a MERGE into the incremental
gold.ratings) and `lakehouse train` replaces ml.recommendations. Every write is a Delta commit, so
no read may fail and none may see an empty table.

Synthetic ml-100k layout on the session server: ingest, `dbt build --select +movies +ratings`, a quick
ranking train (publishes ml.recommendations), then the stream detached with the fold-in on.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import statistics
import threading
import time
from dataclasses import dataclass

import pytest
from pyspark.sql import functions as F

from bench.harness import CountReader
from lakehouse import tables
from lakehouse.dbt_runner import run_dbt
from lakehouse.stream import job, replay
from tests.integration.conftest import fresh, ingest
from tests.integration.helpers import lakehouse_cli, log_since, log_size, wait_for

pytestmark = pytest.mark.integration

READS = {
    "ml.recommendations": "select count(*) from ml.recommendations",
    "gold.movies": "select count(*) from gold.movies",
    "gold.ratings": "select count(*) from gold.ratings",
}
# The concurrent build rebuilds what the readers read (gold.movies, gold.ratings) and what those
# are built from: seeds and models, the writes (the data tests are test_dbt's and test_dbt_stream's).
DBT_BUILD = ("build", "--select", "+movies", "+ratings", "--exclude-resource-type", "unit_test",
             "--exclude-resource-type", "test")
REPLAY_SECONDS = 30.0  # at least this long; on until the other writers are done

@dataclass
class Writer:
    name: str
    started: float = 0.0
    finished: float = 0.0
    outcome: str = ""
    ok: bool = False

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def committed_files(spark, settings, names: list[str]) -> dict[str, list]:
    """Rows of bronze.stream_files (written with the batch's ratings, before the fold-in) of this
    stream for the landed files, by file."""
    sid = job.stream_id(settings)
    rows = (fresh(spark, tables.STREAM_FILES.name).where(F.col("source_file").isin(names))
            .where(F.col("load_id").startswith(f"{tables.STREAM_LOAD_PREFIX}{sid}-")).collect())
    found: dict[str, list] = {}
    for row in rows:
        found.setdefault(row.source_file, []).append(row)
    return found


def finished(spark, settings, names: list[str]) -> bool:
    """Every one of these files is in a batch whose ledger row (bronze.stream_batches, written
    after the fold-in) is there."""
    files = committed_files(spark, settings, names)
    if len(files) < len(names):
        return False
    loads = {row.load_id for rows in files.values() for row in rows}
    done = {r.load_id for r in fresh(spark, tables.STREAM_BATCHES.name).where(F.col("load_id").isin(sorted(loads)))
            .select("load_id").collect()}
    return all(any(row.load_id in done for row in rows) for rows in files.values())


def history_since(spark, table: str, version: int) -> list:
    return [r for r in spark.sql(f"describe history {table}").select("version", "operation").collect()
            if r.version > version]


@pytest.fixture(scope="module")
def readers_setup(spark, lakehouse_server, synthetic_100k_layout, tmp_path_factory):
    settings = dataclasses.replace(lakehouse_server, stream_dir=tmp_path_factory.mktemp("readers-landing"),
                                   stream_trigger_seconds=1.0)
    ingest(spark, settings, "ml-100k", synthetic_100k_layout, replace=True)
    # --full-refresh: the incremental gold.ratings forgets what an earlier test's bronze held.
    outcome = run_dbt(settings, *DBT_BUILD, "--full-refresh")
    assert outcome.ok, outcome.failures
    lakehouse_cli(settings, "train", "--task", "ranking", "--grid", "quick")
    job.stop(settings)
    shutil.rmtree(settings.stream_checkpoint, ignore_errors=True)  # a fresh stream on this landing folder
    log_offset = log_size(settings.stream_log)
    job.detach(settings, fold_in=True, timeout=300)
    try:
        # Warm-up, not measured: the first batch starts the server's Python worker and loads the champion.
        users, movies = replay.known_ids(settings, spark)
        report = replay.replay(settings, source=replay.synthetic_ratings(users, movies, seed=3), limit=20,
                               rows_per_file=20, rate=0)
        names = [p.name for p in report.files]
        wait_for(lambda: finished(spark, settings, names), 300, "the warm-up file's batch")
        assert "fold-in: merging" in log_since(settings.stream_log, log_offset), "the warm-up batch did not fold in"
        yield settings, users, movies
    finally:
        job.stop(settings)


def test_thrift_readers_never_fail_nor_see_an_empty_table_while_stream_dbt_and_train_write(readers_setup, spark):
    settings, users, movies = readers_setup
    versions = {t: int(spark.sql(f"describe history {t} limit 1").first().version) for t in READS}
    log_offset = log_size(settings.stream_log)
    reader = CountReader(settings.host, settings.thrift_port, READS, username="readers")
    reader.start()
    wait_for(lambda: len(reader.reads) >= len(READS), 120, "the reader's first poll", step=0.1)

    landed: list[tuple[str, int]] = []
    stream, dbt, train = Writer("stream fold-in (replay)"), Writer("dbt build --select +movies +ratings"), \
        Writer("lakehouse train --task ranking --grid quick")
    others_done = threading.Event()
    stop_replay = threading.Event()

    def replaying() -> None:
        stream.started = time.monotonic()
        thread = threading.Thread(target=lambda: (time.sleep(REPLAY_SECONDS), others_done.wait(), stop_replay.set()),
                                  daemon=True)
        thread.start()
        report = replay.replay(settings, source=replay.synthetic_ratings(users, movies, seed=17), rate=10.0,
                               rows_per_file=10, stop=stop_replay, on_file=lambda p, n: landed.append((p.name, n)))
        stream.outcome = f"{len(report.files)} files, {report.ratings} ratings landed ({report.stopped_by})"

    def rebuilding_then_training() -> None:
        try:
            dbt.started = time.monotonic()
            outcome = run_dbt(settings, *DBT_BUILD)
            dbt.finished, dbt.ok, dbt.outcome = time.monotonic(), outcome.ok, outcome.describe()
            train.started = time.monotonic()
            try:
                lakehouse_cli(settings, "train", "--task", "ranking", "--grid", "quick")
                train.ok, train.outcome = True, "published"
            except AssertionError as error:
                train.outcome = str(error)
            train.finished = time.monotonic()
        finally:
            others_done.set()

    threads = [threading.Thread(target=replaying, daemon=True), threading.Thread(target=rebuilding_then_training, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(timeout=1500)
        assert not any(t.is_alive() for t in threads), "a writer did not finish"
        names = [name for name, _ in landed]
        expected = sum(n for _, n in landed)
        wait_for(lambda: finished(spark, settings, names), 600, "the stream to commit and fold in every replayed file")
        committed = committed_files(spark, settings, names)
        stream.finished, stream.ok = time.monotonic(), True
        time.sleep(2.0)  # a few reads after the last commit
    finally:
        stop_replay.set()
        reader.stop()

    reads = reader.reads
    failed = [r for r in reads if r.error is not None]
    per_table = {t: [r for r in reads if r.table == t] for t in READS}
    window = f"{reads[-1].at - reads[0].at:.0f}s" if reads else "-"
    summary = "; ".join(
        f"{t}: {len(rs)} reads, {sum(r.error is not None for r in rs)} failed, "
        f"p50 {statistics.median(r.seconds for r in rs):.2f}s, max {max(r.seconds for r in rs):.2f}s"
        for t, rs in per_table.items() if rs)
    writers = "; ".join(f"{w.name}: {w.seconds:.0f}s, {w.outcome}" for w in (stream, dbt, train))
    print(f"\n{len(reads)} reads over {window}, {len(failed)} failed. {summary}\nwriters: {writers}")

    assert dbt.ok, f"dbt build failed while read: {dbt.outcome}"
    assert train.ok, train.outcome
    assert len(reads) >= 50, f"only {len(reads)} reads"
    assert not failed, f"{len(failed)} of {len(reads)} reads failed:\n" + "\n".join(
        f"{r.table} at +{r.at - reads[0].at:.1f}s: {r.error}" for r in failed[:20])
    for table, rs in per_table.items():
        empty = [r for r in rs if r.rows == 0]
        assert not empty, f"{table} was empty in {len(empty)} of {len(rs)} reads (first at +{empty[0].at - reads[0].at:.1f}s)"
    # The reads overlapped every writer: some were issued while dbt ran, while train ran, and while
    # the stream folded in.
    for writer in (dbt, train, stream):
        during = [r for r in reads if writer.started <= r.at <= writer.finished]
        assert len(during) >= len(READS), f"no reads while {writer.name} ran"

    # The writes happened: the stream committed every landed rating exactly once and folded them
    # in; dbt and train committed new versions of what was read.
    assert all(len(rows) == 1 for rows in committed.values()), "a file committed twice"
    events = fresh(spark, tables.RATING_EVENTS.name).where(F.col("source_file").isin(names))
    assert events.count() == expected
    assert events.select("source_file", "line_number").distinct().count() == expected
    folded = re.findall(r"fold-in: merging (\d+) users'", log_since(settings.stream_log, log_offset))
    assert folded, "the stream did not fold in during the run"
    recommendations = [r.operation for r in history_since(spark, "ml.recommendations", versions["ml.recommendations"])]
    assert "MERGE" in recommendations, recommendations  # the fold-in
    assert any("REPLACE" in op for op in recommendations), recommendations  # train's publish
    assert any("REPLACE" in r.operation for r in history_since(spark, "gold.movies", versions["gold.movies"]))
    assert "MERGE" in [r.operation for r in history_since(spark, "gold.ratings", versions["gold.ratings"])]
    duplicates = (fresh(spark, "ml.recommendations").groupBy("user_id", "rank").count().where("count > 1").count())
    assert duplicates == 0
