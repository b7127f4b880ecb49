"""Helpers for the integration tests: synthetic datasets and ingesting them into the test server."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse.generate import SyntheticSpec, generate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def synthetic_100k_layout(tmp_path_factory) -> Path:
    """A small synthetic dataset in the ml-100k layout (u.data, u.item, u.user)."""
    out = tmp_path_factory.mktemp("synthetic-ml-100k")
    generate(SyntheticSpec(layout="ml-100k", ratings=6000, users=120, movies=400, seed=7), out)
    return out


@pytest.fixture(scope="session")
def synthetic_latest_layout(tmp_path_factory) -> Path:
    """A small synthetic dataset in the ml-latest CSV layout (ratings.csv, movies.csv)."""
    out = tmp_path_factory.mktemp("synthetic-ml-latest")
    generate(SyntheticSpec(layout="ml-latest", ratings=5000, users=100, movies=350, seed=11), out)
    return out


def copy_dataset(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def ingest(spark, settings, dataset: str, source: Path, replace: bool = False):
    from lakehouse.ingest.acquire import locate
    from lakehouse.datasets import get_dataset
    from lakehouse.ingest.load import ingest as run_ingest

    files = locate(get_dataset(dataset), source, settings.cache_dir)
    return run_ingest(spark, files, replace=replace)


def fresh(spark, table: str):
    """`table` as it is now. Another session (dbt, the stream job) rewrites it, and this session's
    cached file listing would still name the files that rewrite deleted (FAILED_READ_FILE)."""
    spark.catalog.refreshTable(table)
    return spark.table(table)


def count(spark, table: str) -> int:
    return fresh(spark, table).count()


# Data directory -> the Delta version of bronze.ingest_log once test_ml100k's `make run` pipeline
# had built every table and mart (see pipeline_lakehouse).
_PIPELINE_BUILT: dict[Path, int | None] = {}


def _table_version(settings, name: str) -> int | None:
    """The table's latest Delta version, read from its log (no Spark); None when it has none."""
    from api.delta_tables import latest_version, table_path

    return latest_version(table_path(settings.warehouse_dir, name))


def pipeline_built(settings) -> None:
    """Said by test_ml100k once `make run`'s pipeline passed on ml-100k."""
    _PIPELINE_BUILT[settings.home] = _table_version(settings, "bronze.ingest_log")


def pipeline_lakehouse(settings):
    """The session's lakehouse as `make run`'s pipeline left it on ml-100k (every mart, a
    champion, a streamed batch, Superset provisioned), when it ran in this session and nothing
    has loaded bronze since; else None. Tests that only read it need not build their own: they
    run right after test_ml100k (tests/conftest.py orders them)."""
    if settings.home in _PIPELINE_BUILT and _PIPELINE_BUILT[settings.home] == _table_version(settings, "bronze.ingest_log"):
        return settings
    return None


# Data directory -> Delta versions of the tables served_lakehouse built (see below).
_SERVED_BUILT: dict[Path, dict[str, int | None]] = {}
_SERVED_INPUTS = ("bronze.ingest_log", "bronze.movies", "gold.movies", "gold.ratings", "ml.item_factors")


def _served_inputs(settings) -> dict[str, int | None]:
    return {name: _table_version(settings, name) for name in _SERVED_INPUTS}


@pytest.fixture(scope="module")
def served_lakehouse(spark, lakehouse_server, synthetic_100k_layout):
    """What the REST API serves, on the synthetic ml-100k layout: bronze, gold.movies and
    gold.ratings (dbt, no data tests) and a ranking champion (ml.recommendations, ml.item_factors). Built
    once and shared by the test_api_*.py modules; built again when another module has since
    re-ingested, rebuilt gold or trained (the stream's rows and fold-ins do not count)."""
    from lakehouse.cli import build_parser
    from lakehouse.dbt_runner import run_dbt
    from lakehouse.stream import job
    from ml.train import run_training

    if _SERVED_BUILT.get(lakehouse_server.home) != _served_inputs(lakehouse_server):
        job.stop(lakehouse_server)
        ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
        # Only the two marts the API and training read, with what they are built from (10 nodes,
        # not the whole project). --full-refresh: the incremental gold.ratings forgets what an
        # earlier module's bronze held.
        outcome = run_dbt(lakehouse_server, "build", "--select", "+movies", "+ratings", "--exclude-resource-type",
                          "test", "--exclude-resource-type", "unit_test", "--full-refresh")
        assert outcome.ok, outcome.failures
        args = build_parser().parse_args(["train", "--task", "ranking", "--grid", "quick"])
        run_training(spark, lakehouse_server, args)
        _SERVED_BUILT[lakehouse_server.home] = _served_inputs(lakehouse_server)
    return lakehouse_server
