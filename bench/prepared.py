"""A bench's own lakehouse: settings in a data directory of its own (free ports, the repository's
jar cache), set up as a user would (ingest ml-100k, dbt build, `lakehouse train --task ranking
--grid quick`: a champion for the fold-in), and the stream's ledger read back. bench/readers.py
and bench/soak.py share it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import free_port, short_error
from lakehouse import tables
from lakehouse.console import Stages, console
from lakehouse.dbt_runner import ML_NODES, run_dbt
from lakehouse.generate import SyntheticSpec, generate
from lakehouse.ingest_command import ingest_with_progress
from lakehouse.settings import Settings
from lakehouse.stream import job

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ML_100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"
# dbt's unit tests run on fixtures, not on the tables the benches read.
DBT_BUILD = ("build", "--exclude", ML_NODES, "--exclude-resource-type", "unit_test")
SETUP_BUILD = (*DBT_BUILD, "--exclude-resource-type", "test")  # seeds and models


def bench_settings(home: Path, driver_memory: str, **overrides) -> Settings:
    os.environ["DBT_TARGET_PATH"] = str(home / "dbt-target")
    return Settings(home=home, thrift_port=free_port(), connect_port=free_port(), driver_memory=driver_memory,
                    mlflow_dir=home / "mlflow", mlflow_port=free_port(), stream_dir=home / "landing",
                    stream_trigger_seconds=1.0,
                    # Delta's jars resolved once for every bench run (git-ignored), not per temp home.
                    jar_cache=Path(os.environ.get("LAKEHOUSE_JAR_CACHE") or REPO / ".cache" / "jars").resolve(),
                    **overrides)


def lakehouse_cli(settings: Settings, *args: str, timeout: float = 1800) -> tuple[bool, str]:
    """`lakehouse <args>` on the bench's server: (succeeded, the last lines of its output)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "lakehouse.cli", *args], cwd=REPO,
                              env={**os.environ, **settings.as_env()}, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"did not return within {timeout:.0f}s"
    return proc.returncode == 0, "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])


def set_up(stages: Stages, spark, settings: Settings, ml_100k: Path) -> str:
    if (ml_100k / "u.data").exists():
        source, label = ml_100k, f"ml-100k ({ml_100k})"
    else:
        source = settings.home / "synthetic-ml-100k"
        generate(SyntheticSpec(layout="ml-100k", ratings=100_000, seed=1), source)
        label = "synthetic 100k (ml-100k layout)"
    with stages.stage("ingest ml-100k") as notes:
        report = ingest_with_progress(spark, settings, "ml-100k", source)
        notes.append(f"{sum(f.rows_loaded for f in report.files if f.target_table == tables.RATINGS.name):,} ratings")
    with stages.stage("dbt build (seeds and models)") as notes:
        outcome = run_dbt(settings, *SETUP_BUILD, "--quiet")
        notes.append(outcome.describe())
        if not outcome.ok:
            raise SystemExit(f"dbt build failed: {outcome.failures}")
    with stages.stage("lakehouse train --task ranking --grid quick") as notes:
        ok, tail = lakehouse_cli(settings, "train", "--task", "ranking", "--grid", "quick")
        if not ok:
            raise SystemExit(f"lakehouse train failed:\n{tail}")
        notes.append("champion published")
    return label


def ledger_files(spark, settings: Settings, names: list[str]) -> dict[str, int]:
    """Landed file -> rows accepted, for the files bronze.stream_files has for this stream."""
    from pyspark.sql import functions as F

    spark.catalog.refreshTable(tables.STREAM_FILES.name)
    prefix = f"{tables.STREAM_LOAD_PREFIX}{job.stream_id(settings)}-"
    rows = (spark.table(tables.STREAM_FILES.name).where(F.col("source_file").isin(names))
            .where(F.col("load_id").startswith(prefix)).select("source_file", "rows_accepted").collect())
    return {r.source_file: r.rows_accepted for r in rows}


def wait_committed(spark, settings: Settings, names: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(ledger_files(spark, settings, names)) >= len(names):
                return True
        except Exception as error:  # noqa: BLE001 - a read racing a write: try again
            console.print(f"[yellow]ledger read failed, retrying: {short_error(error)}[/]")
        time.sleep(1.0)
    return False
