"""Shared fixtures. The lakehouse server is started once per test session, on free ports, in a
temporary data directory: the tests never touch a server the user has running."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.harness import free_port  # noqa: F401 - the tests import it from here

REPO = Path(__file__).resolve().parent.parent
SHARED_ML_100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"


# Modules that only read the lakehouse test_ml100k's `make run` pipeline fills run right after it,
# before any other module loads bronze again, and use it (tests/integration/conftest.py,
# pipeline_lakehouse); on their own, or without ml-100k, they build their own.
READ_THE_PIPELINE = ("test_superset.py",)
PIPELINE_MODULE = "test_ml100k.py"


def pytest_collection_modifyitems(session, config, items):
    readers = [item for item in items if item.path.name in READ_THE_PIPELINE]
    if not readers or not any(item.path.name == PIPELINE_MODULE for item in items):
        return
    rest = [item for item in items if item.path.name not in READ_THE_PIPELINE]
    last = max(i for i, item in enumerate(rest) if item.path.name == PIPELINE_MODULE)
    items[:] = rest[:last + 1] + readers + rest[last + 1:]


@pytest.fixture(scope="session")
def lakehouse_settings(tmp_path_factory):
    """Settings for the test server; also exported so dbt (profiles.yml) and the CLI see them."""
    from lakehouse.settings import load_settings

    home = tmp_path_factory.mktemp("lakehouse-home")
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_THRIFT_PORT": str(free_port()),
        "LAKEHOUSE_CONNECT_PORT": str(free_port()),
        "LAKEHOUSE_DRIVER_MEMORY": "3g",
        "DBT_TARGET_PATH": str(home / "dbt-target"),
        "LAKEHOUSE_MLFLOW_DIR": str(home / "mlflow"),
        "LAKEHOUSE_MLFLOW_PORT": str(free_port()),
        "LAKEHOUSE_STREAM_DIR": str(home / "landing"),  # never the repository's stream/ratings
        "LAKEHOUSE_SUPERSET_PORT": str(free_port()),
        "LAKEHOUSE_SUPERSET_ENV": str(home / "superset.env"),  # never the repository's .env
        "LAKEHOUSE_API_PORT": str(free_port()),
        "LAKEHOUSE_API_WORKERS": "1",  # one snapshot in memory while the tests run beside it
        # Delta's jars: fetched into the repository's (git-ignored) test cache on the first run of
        # a fresh clone, checked against their pinned hashes and reused by every later server.
        "LAKEHOUSE_JAR_CACHE": os.environ.get("LAKEHOUSE_JAR_CACHE") or str(REPO / ".cache" / "jars"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield load_settings()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def lakehouse_server(lakehouse_settings):
    from lakehouse import server

    state, started = server.up(lakehouse_settings, timeout=240)
    assert started, "the test server must be a fresh one"
    yield lakehouse_settings
    from lakehouse import mlflow_ui
    from lakehouse.session import close_all

    # Every Connect session this process still holds (on this server, or on a module's own server
    # that is gone by now), stopped with a deadline. Otherwise pyspark's atexit hook of a session
    # whose server is gone retries for about ten minutes after the last test (seen in CI).
    close_all(timeout=30)
    from lakehouse.stream import job

    job.stop(lakehouse_settings)  # `make run`'s pipeline leaves the stream running
    mlflow_ui.down(lakehouse_settings)  # and the UI
    from lakehouse import api_service

    api_service.down(lakehouse_settings)  # and the API
    from lakehouse.superset import service as superset

    superset.down(lakehouse_settings)  # a failed Superset test may leave it running
    server.down(lakehouse_settings)


@pytest.fixture(scope="session")
def spark(lakehouse_server):
    from lakehouse.session import connect

    session = connect(lakehouse_server)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_ml_100k() -> Path:
    if not (SHARED_ML_100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {SHARED_ML_100K} (see shared/data/movielens/SOURCES.md)")
    return SHARED_ML_100K
