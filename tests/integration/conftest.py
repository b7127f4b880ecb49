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
