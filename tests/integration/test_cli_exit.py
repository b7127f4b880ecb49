"""Every command returns: `lakehouse train --task ranking --grid quick` on data shaped like
ml-latest (10,000 movies) must exit within a minute of its last line, and the models a process
fits over Spark Connect are released on the server by the session's releaser
(lakehouse/session.py), never left to a finalizer at interpreter exit (where pyspark's release was
seen blocking for ever)."""
from __future__ import annotations

import dataclasses
import gc
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.helpers import REPO, wait_for

pytestmark = pytest.mark.integration

TABLE = "exit_check.ratings"
MOVIES = 10_000  # ml-latest-small has 9,742
EXIT_WITHIN_SECONDS = 60.0
TRAIN_TIMEOUT_SECONDS = 1800.0
# What `lakehouse train` prints last (ml/train.py: print_outcome), its work done. (MLflow's own
# "Successfully registered model 'als-ranking'" comes earlier, before the ml tables are written.)
FINAL_LINE = re.compile(r"^registered als-ranking version \d+ with alias @champion")


@pytest.fixture(scope="module")
def latest_shaped(tmp_path_factory):
    """A server of its own (its own metastore, MLflow store and ml tables: the champions this
    module registers touch nothing of the session's server), holding ml-latest-shaped ratings."""
    import pandas as pd
    from pyspark.sql import SparkSession

    from lakehouse import delta, server
    from lakehouse.generate import SyntheticSpec, generate
    from lakehouse.settings import load_settings

    home = tmp_path_factory.mktemp("exit-home")
    settings = dataclasses.replace(load_settings(), home=home, thrift_port=free_port(), connect_port=free_port(),
                                   driver_memory="2g", mlflow_dir=home / "mlflow", mlflow_tracking_uri="",
                                   jar_cache=Path(os.environ.get("LAKEHOUSE_JAR_CACHE") or REPO / ".cache" / "jars"))
    data = tmp_path_factory.mktemp("synthetic-ml-latest-10k")
    generate(SyntheticSpec(layout="ml-latest", ratings=40_000, users=200, movies=MOVIES, seed=23), data)
    frame = pd.read_csv(data / "ratings.csv")
    frame = pd.DataFrame({"user_id": frame["userId"].astype("int32"), "movie_id": frame["movieId"].astype("int32"),
                          "rating": frame["rating"].astype("float64"),
                          "rated_at": pd.to_datetime(frame["timestamp"], unit="s")})
    # The shape that made `make run` hang: item factors for thousands of movies (long-tailed
    # popularity leaves some of the 10,000 unrated, as in ml-latest-small).
    assert frame["movie_id"].nunique() > 0.6 * MOVIES
    server.up(settings, timeout=240)
    try:
        session = SparkSession.builder.remote(settings.connect_url).create()
        try:
            session.sql("create schema if not exists exit_check")
            delta.replace(session.createDataFrame(frame), TABLE)
        finally:
            session.stop()
        yield settings
    finally:
        server.down(settings)


def run_timed(settings, *args: str, timeout: float) -> tuple[int, list[tuple[float, str]], float]:
    """`lakehouse ARGS` as a subprocess: (exit code, its lines with the monotonic time each was
    read, the time it exited). A process still running at `timeout`, or well over a minute after
    its final line (FINAL_LINE), gets SIGABRT: faulthandler then prints every thread's Python
    stack into the output, which the failure shows."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "lakehouse.cli", *args], cwd=REPO, text=True, bufsize=1,
        env={**{k: v for k, v in os.environ.items() if k != "LAKEHOUSE_MLFLOW_TRACKING_URI"},  # this server's store
             **settings.as_env(), "PYTHONFAULTHANDLER": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        now = time.monotonic()
        finished = any(FINAL_LINE.match(line) for _, line in lines)
        if now > deadline or (finished and now - lines[-1][0] > EXIT_WITHIN_SECONDS + 30):
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=60)
            break
        time.sleep(0.2)
    exited = time.monotonic()
    reader.join(timeout=30)
    return proc.returncode, lines, exited


def test_train_exits_within_a_minute_of_its_last_line(latest_shaped):
    # The ranking task alone: its ALS models hold the 10,000 movies' item factors (the shape that
    # hung), and the rating task's sweep would only add minutes of the same kind of fitting.
    code, lines, exited = run_timed(latest_shaped, "train", "--table", TABLE, "--task", "ranking",
                                    "--grid", "quick", timeout=TRAIN_TIMEOUT_SECONDS)
    tail = "\n".join(line for _, line in lines[-60:])
    printed = [(at, line) for at, line in lines if line.strip()]
    assert printed, "train printed nothing"
    last_at, last_line = printed[-1]
    assert code == 0, f"train exited {code}; its output ended with:\n{tail}"
    assert any(FINAL_LINE.match(line) for _, line in printed), tail
    waited = exited - last_at
    assert waited < EXIT_WITHIN_SECONDS, f"train exited {waited:.1f}s after its last line {last_line!r}:\n{tail}"
    first = printed[0][0]
    print("\n".join(f"{at - first:7.1f}s | {line}" for at, line in printed))
    print(f"train: {last_at - first:.1f}s of output, exited {waited:.2f}s after its last line")


def test_models_are_released_when_dropped_and_at_close(latest_shaped):
    """The releaser deletes a dropped model's server-side cache entry on its own thread, and
    `close` deletes every model still alive, then runs what it is given, within its deadline."""
    # On a thread of its own: pyspark 4.1 sends a model's attribute calls (even those `fit` makes
    # itself) to the thread's active session, and on the test's main thread that is the session
    # server's, where this server's models are unknown. A new thread's first session is its active one.
    failures: list[BaseException] = []

    def run() -> None:
        try:
            _release_models(latest_shaped)
        except BaseException as error:  # noqa: BLE001 - re-raised on the test's thread
            failures.append(error)

    worker = threading.Thread(target=run, name="release-test")
    worker.start()
    worker.join(600)
    assert not worker.is_alive(), "the release test did not finish within 10 minutes"
    if failures:
        raise failures[0]


def _release_models(latest_shaped) -> None:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    from lakehouse.session import _ModelReleaser

    session = SparkSession.builder.remote(latest_shaped.connect_url).create()
    releaser = _ModelReleaser()
    try:
        ratings = session.table(TABLE).where("user_id % 4 = 0")
        expected = ratings.count()

        def fit(seed: int):
            als = ALS(userCol="user_id", itemCol="movie_id", ratingCol="rating", rank=4, maxIter=2, seed=seed)
            return releaser.manage(als.fit(ratings), session)

        dropped, kept = fit(1), fit(2)
        dropped_id, kept_id = dropped._java_obj.ref_id, kept._java_obj.ref_id
        assert {dropped_id, kept_id} <= _ids(session), session.client._get_ml_cache_info()
        del dropped
        gc.collect()
        wait_for(lambda: dropped_id not in _ids(session), 30, "the dropped model released on the server")
        assert kept_id in _ids(session)
        # The kept model still works (transform goes to its DataFrame's session; model attributes
        # would go to this thread's first session, which need not be this one).
        assert kept.transform(ratings).count() == expected > 0
        stopped = []
        started = time.monotonic()
        assert releaser.close(lambda: stopped.append(True), time.monotonic() + 20)
        assert stopped and time.monotonic() - started < 20
        assert kept_id not in _ids(session)
        del kept
        gc.collect()  # its finalizer was detached at close, and pyspark's own cannot reach zero
    finally:
        session.stop()


def _ids(session) -> set[str]:
    """Model ids in the session's ML cache on the server (entries read "id: <id>, obj: <class>, ...")."""
    return {entry.split(",")[0].removeprefix("id:").strip() for entry in session.client._get_ml_cache_info()}
