"""Safe concurrent writers on one data directory: each case runs two writers at once for real.

1. two `lakehouse ingest` at once: one loads, the other is refused naming the holder (a lock);
2. two `lakehouse up` at once: one server, both report it (a lock, then "already running");
3. `lakehouse train` publishing while the stream folds new ratings in (Delta conflicts retried);
4. `dbt build` while the stream appends to bronze.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.stream import job
from tests.conftest import REPO, free_port
from tests.integration.conftest import copy_dataset, fresh, ingest
from tests.integration.helpers import fresh_stream, land, log_since, log_size, wait_for

pytestmark = pytest.mark.integration

VALID_TS = 1_600_000_000  # 2020-09-13
SYNTHETIC_USERS = 120  # user ids 1..120 and movie ids 1..400 exist in the synthetic dataset
SYNTHETIC_MOVIES = 400
RATINGS_PER_FILE = 50


# ---- helpers ------------------------------------------------------------------------------------

class Lander(threading.Thread):
    """Lands files of RATINGS_PER_FILE valid ratings: `at_least` of them one every `every` seconds,
    then one every `then_every` seconds until told to stop (the other writer has finished)."""

    def __init__(self, folder: Path, prefix: str, at_least: int = 20, every: float = 0.5, then_every: float = 2.0,
                 at_most: int = 300):
        super().__init__(daemon=True)
        self.folder, self.prefix, self.at_least, self.at_most = folder, prefix, at_least, at_most
        self.every, self.then_every = every, then_every
        self.landed: list[str] = []
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            index = 0
            while index < self.at_most and (index < self.at_least or not self.done.is_set()):
                lines = []
                for r in range(RATINGS_PER_FILE):
                    n = index * RATINGS_PER_FILE + r
                    user = 1 + (n * 7) % SYNTHETIC_USERS
                    movie = 1 + (n * 13) % SYNTHETIC_MOVIES
                    lines.append(f"{user},{movie},{1 + n % 5},{VALID_TS + n}")
                name = f"{self.prefix}-{index:04d}.csv"
                land(self.folder, name, "\n".join(lines) + "\n")
                self.landed.append(name)
                index += 1
                time.sleep(self.every if index < self.at_least else self.then_every)
        except BaseException as error:  # noqa: BLE001 - reported by finish()
            self.error = error

    def finish(self, timeout: float = 120.0) -> list[str]:
        self.done.set()
        self.join(timeout)
        assert not self.is_alive(), "the landing thread did not finish"
        assert self.error is None, f"landing failed: {self.error!r}"
        return self.landed


def stream_committed_rows(spark, settings) -> int:
    """Input lines this stream's ledger has committed (its last batch fully done, fold-in included)."""
    sid = job.stream_id(settings)
    return fresh(spark, tables.STREAM_BATCHES.name).where(F.col("query_id") == sid).agg(
        F.sum("rows_read")).first()[0] or 0


def check_stream_exactly_once(spark, settings, landed: list[str], pid: int, log_offset: int) -> str:
    """Every landed rating committed once, the ledger a row per batch, the stream alive without a
    failed batch; returns the stream log of this run."""
    expected = len(landed) * RATINGS_PER_FILE
    wait_for(lambda: stream_committed_rows(spark, settings) >= expected, 900,
             f"the stream's ledger to commit all {expected} landed ratings", step=2.0)
    sid = job.stream_id(settings)
    prefix = f"{tables.STREAM_LOAD_PREFIX}{sid}-"
    events = fresh(spark, tables.RATING_EVENTS.name).where(F.col("load_id").startswith(prefix))
    per_file = {r.source_file: r["count"] for r in events.groupBy("source_file").count().collect()}
    assert set(per_file) == set(landed), sorted(set(per_file) ^ set(landed))[:10]
    wrong = {f: n for f, n in per_file.items() if n != RATINGS_PER_FILE}
    assert not wrong, f"files committed other than once: {dict(list(wrong.items())[:10])}"
    assert events.select("source_file", "line_number").distinct().count() == expected  # nothing twice

    files = fresh(spark, tables.STREAM_FILES.name).where(F.col("load_id").startswith(prefix)).collect()
    assert sorted(f.source_file for f in files) == sorted(landed)  # one row per file, none twice
    assert all(f.rows_read == f.rows_accepted == RATINGS_PER_FILE for f in files)

    ledger = fresh(spark, tables.STREAM_BATCHES.name).where(F.col("query_id") == sid).collect()
    ledger_batches = [r.batch_id for r in ledger]
    assert len(ledger_batches) == len(set(ledger_batches)), "a batch has two ledger rows"
    assert set(ledger_batches) == {f.batch_id for f in files}, "a batch without its ledger row (or the reverse)"
    assert sum(r.rows_read for r in ledger) == expected

    assert job.running_pid(settings) == pid, "the stream process died"
    text = log_since(settings.stream_log, log_offset)
    assert "Traceback" not in text and "failed" not in text.lower(), text[-4000:]
    started = set(re.findall(r"batch (\d+): started", text))
    assert {int(b) for b in started} >= set(ledger_batches)
    return text


# ---- 1. two ingests at once ---------------------------------------------------------------------

def lock_holder(path: Path) -> dict | None:
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None  # being written


def cli_env(settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.as_env(), **extra}


def test_two_ingests_at_once_load_every_file_once(spark, lakehouse_server, synthetic_100k_layout, tmp_path):
    from lakehouse.ingest.load import drop_bronze

    settings = lakehouse_server
    job.stop(settings)  # nothing else writes bronze meanwhile
    drop_bronze(spark)  # so the first ingest really loads
    source = copy_dataset(synthetic_100k_layout, tmp_path / "ml-100k")
    ratings_lines = len((source / "u.data").read_text().splitlines())
    command = [sys.executable, "-m", "lakehouse.cli", "ingest", "--dataset", "ml-100k", "--source", str(source)]
    lock = settings.locks_dir / "ingest.lock"
    assert lock_holder(lock) is None, f"the ingest lock is held before the test: {lock_holder(lock)}"

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=cli_env(settings), cwd=REPO)
    try:
        holder = wait_for(lambda: lock_holder(lock), 180, "the first ingest to hold its lock", step=0.05)
        assert holder["pid"] == first.pid and "ingest" in holder["command"]
        started = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, env=cli_env(settings), cwd=REPO,
                                timeout=300)
        second_seconds = time.monotonic() - started
        still_loading = first.poll() is None
        first_out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    second_out = " ".join((second.stdout + second.stderr).split())  # rich wraps long lines
    print(f"second ingest: exit {second.returncode} after {second_seconds:.1f}s "
          f"(first still loading when it ended: {still_loading})\n{second_out[-1500:]}")
    assert first.returncode == 0, first_out[-3000:]
    if second.returncode == 2:  # refused while the first held the lock
        assert "error:" in second_out and "already running" in second_out, second_out
        assert f"pid {first.pid}" in second_out, second_out  # names the holder
        assert second_seconds < 90, f"the refusal took {second_seconds:.0f}s"
    else:  # the first finished before the second reached the lock: the files are unchanged
        assert second.returncode == 0, second_out[-3000:]
        assert second_out.count("unchanged since load") == 3, second_out

    log = fresh(spark, tables.INGEST_LOG.name).collect()
    per_file: dict[str, int] = {}
    for row in log:
        per_file[row.source_file] = per_file.get(row.source_file, 0) + 1
    assert len(per_file) == 3 and set(per_file.values()) == {1}, per_file  # one commit per file
    ratings = fresh(spark, tables.RATINGS.name)
    (ratings_entry,) = [r for r in log if r.target_table == tables.RATINGS.name]
    loaded = ratings.count()
    assert loaded == ratings_entry.rows_loaded and 0 < loaded <= ratings_lines
    assert ratings.select("source_file", "line_number").distinct().count() == loaded  # each rating once
    assert ratings.select("load_id").distinct().count() == 1
    assert fresh(spark, tables.MOVIES.name).count() == SYNTHETIC_MOVIES
    assert lock_holder(lock) is None  # released


# ---- 2. two `lakehouse up` at once --------------------------------------------------------------

def server_processes(home: Path) -> tuple[list[int], list[int]]:
    """(lakehouse server processes, JVMs) of the data directory `home`."""
    from lakehouse.server import SERVER_MODULE

    servers, jvms = [], []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
            if SERVER_MODULE in line and Path(proc.cwd()) == home:
                servers.append(proc.pid)
            elif "java" in line and f"{home}/warehouse" in line:
                jvms.append(proc.pid)
        except psutil.Error:
            continue
    return servers, jvms


def test_two_ups_at_once_start_one_server(lakehouse_server, tmp_path):
    from lakehouse import server
    from lakehouse.settings import load_settings

    home = (tmp_path / "second-home").resolve()
    home.mkdir()
    settings = dataclasses.replace(load_settings(), home=home, thrift_port=free_port(), connect_port=free_port(),
                                   driver_memory="1g", jar_cache=lakehouse_server.jar_cache_dir)  # no re-fetch
    env = cli_env(settings)
    command = [sys.executable, "-m", "lakehouse.cli", "up", "--timeout", "240"]
    try:
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                  cwd=REPO) for _ in range(2)]
        outs = [" ".join(p.communicate(timeout=420)[0].split()) for p in procs]
        for proc, out in zip(procs, outs):
            print(f"up: exit {proc.returncode}: {out[-600:]}")
        assert [p.returncode for p in procs] == [0, 0], outs
        pid = server.running_pid(settings)
        assert pid is not None
        servers, jvms = server_processes(home)
        assert servers == [pid], f"server processes {servers}, pid file {pid}"
        assert len(jvms) == 1, f"JVMs on {home}: {jvms}"
        shown = [re.findall(r"pid / started\W+(\d+)", out) for out in outs]
        assert shown == [[str(pid)], [str(pid)]], shown
        assert sum("already running" in out for out in outs) == 1, outs
    finally:
        server.down(settings)
    assert server.running_pid(settings) is None and server_processes(home) == ([], [])


# ---- 3 and 4: the stream beside other writers -----------------------------------------------------

_GOLD_BUILT: set[Path] = set()  # data directories whose gold this module's dbt build has built


@pytest.fixture(scope="module")
def bronze_loaded(spark, lakehouse_server, synthetic_100k_layout):
    """bronze holds the synthetic dataset (the first test leaves it so: then nothing is reloaded)."""
    from lakehouse.ingest.load import IngestError

    job.stop(lakehouse_server)
    try:
        ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout)
    except IngestError:  # another dataset in bronze (an earlier module)
        ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
    return lakehouse_server


def train_args(*extra: str) -> argparse.Namespace:
    from ml.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--task", "ranking", "--grid", "quick", *extra])


@pytest.fixture(scope="module")
def champion(spark, bronze_loaded):
    """gold built and a ranking champion published: everything the fold-in reads."""
    from lakehouse.dbt_runner import ML_NODES, run_dbt
    from ml.train import run_training

    if bronze_loaded.home not in _GOLD_BUILT:  # the dbt test below builds it (a build is minutes here)
        outcome = run_dbt(bronze_loaded, "build", "--exclude", ML_NODES)
        assert outcome.ok, outcome.failures
        _GOLD_BUILT.add(bronze_loaded.home)
    run_training(spark, bronze_loaded, train_args())
    return bronze_loaded


def test_dbt_build_while_the_stream_appends(spark, bronze_loaded, tmp_path):
    from lakehouse.dbt_runner import ML_NODES, run_dbt

    settings = fresh_stream(bronze_loaded, tmp_path / "landing")
    offset = log_size(settings.stream_log)
    pid = job.detach(settings, fold_in=False)
    lander = Lander(settings.stream_dir, "during-dbt")
    try:
        lander.start()
        # Seeds and models: the writes that race the stream's appends. The data tests only read
        # (test_dbt.py and test_dbt_stream.py run them).
        outcome = run_dbt(settings, "build", "--exclude", ML_NODES, "--exclude-resource-type", "unit_test",
                          "--exclude-resource-type", "test")
        landed = lander.finish()
        print(f"dbt build: {outcome.describe()}; {len(landed)} files landed meanwhile")
        assert outcome.ok, outcome.failures
        _GOLD_BUILT.add(settings.home)
        check_stream_exactly_once(spark, settings, landed, pid, offset)
    finally:
        lander.done.set()
        job.stop(settings)


def test_train_while_the_stream_folds_in(spark, champion, tmp_path):
    from ml.train import run_training

    settings = fresh_stream(champion, tmp_path / "landing")
    top_n = 10
    offset = log_size(settings.stream_log)
    pid = job.detach(settings, fold_in=True)
    lander = Lander(settings.stream_dir, "during-train")
    try:
        lander.start()
        wait_for(lambda: "fold-in: champion" in log_since(settings.stream_log, offset), 600,
                 "the stream's first fold-in", step=0.5)
        outcome = run_training(spark, settings, train_args("--top-n", str(top_n)))  # publishes
        landed = lander.finish()
        assert outcome.ranking is not None
        text = check_stream_exactly_once(spark, settings, landed, pid, offset)
    finally:
        lander.done.set()
        job.stop(settings)
    conflicts = len(re.findall(r"Delta conflict .* retrying", text))
    champions = re.findall(r"fold-in: champion (\S+)", text)
    skipped = len(re.findall(r"fold-in skipped", text))
    print(f"{len(landed)} files landed during training; stream log: {conflicts} Delta conflict retries, "
          f"{skipped} fold-ins skipped, champions folded into: {champions}")

    recommendations = fresh(spark, tables.RECOMMENDATIONS.name)
    doubled = recommendations.groupBy("user_id", "rank").count().where("count > 1")
    assert doubled.count() == 0, doubled.limit(10).collect()
    twice = recommendations.groupBy("user_id", "movie_id").count().where("count > 1")
    assert twice.count() == 0, twice.limit(10).collect()
    too_long = recommendations.groupBy("user_id").count().where(F.col("count") > top_n)
    assert too_long.count() == 0, too_long.limit(10).collect()
    assert recommendations.select("user_id").distinct().count() > 0
    # Diagnostics, not contracts: rows of another model than the champion served now, and
    # recommended movies the user has already rated in the stream (a list computed before them).
    served = fresh(spark, tables.ITEM_FACTORS.name).where(F.col("model_name") == "als-ranking").select(
        "run_id").limit(1).collect()[0].run_id
    by_run = {r.run_id: r["count"] for r in recommendations.groupBy("run_id").count().collect()}
    streamed = fresh(spark, tables.RATING_EVENTS.name).where(
        F.col("load_id").startswith(f"{tables.STREAM_LOAD_PREFIX}{job.stream_id(settings)}-")).select(
        "user_id", "movie_id").distinct()
    already_rated = recommendations.join(streamed, ["user_id", "movie_id"]).count()
    print(f"ml.recommendations rows by run_id (champion {served}): {by_run}; "
          f"recommended although rated in the stream: {already_rated}")
