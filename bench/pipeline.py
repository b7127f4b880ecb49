"""Profile of `make run`: each stage's time, the Spark work behind it, and its floor.

Each run starts from an empty data directory on free ports (a user's server is never touched) and
runs the real pipeline, `lakehouse.pipeline.run_pipeline` (what `make run` runs), on ml-100k. The
server's Spark UI (its REST API) is read before and after each stage: the Spark jobs and SQL
executions (statements that reached the engine, over Thrift or Connect) the stage ran. Then, on the same server with its services stopped, the floors: the same
work done the simplest fast way, in the same run:

- ingest: one Spark read of each source file and one Delta write of it (no validation, no
  quarantine, no ledger);
- dbt build: the statements dbt ran for the models and data tests (compiled by `dbt compile
  --full-refresh`), in dbt's order, over one Thrift connection (no dbt, no per-node session);
- training: one ALS fit of the default grid's first ranking configuration on gold.ratings.

Prints a table of medians and writes bench/results/pipeline.json.

    .venv/bin/python bench/pipeline.py [--runs 3] [--ml-100k DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import free_port  # noqa: E402
from lakehouse import api_service, mlflow_ui, server  # noqa: E402
from lakehouse.console import Stages, console, table  # noqa: E402
from lakehouse.dbt_runner import ML_NODES, run_dbt  # noqa: E402
from lakehouse.settings import load_settings  # noqa: E402

DEFAULT_ML_100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"
# Stage (a prefix of its name in lakehouse/pipeline.py) -> the floor measured for it.
FLOORS = {"ingest": "ingest", "dbt build": "dbt build", "train": "train"}


# --- the server's Spark UI -------------------------------------------------------------------

def spark_ui(settings) -> str:
    """The server's Spark UI: the one port of its JVM that answers Spark's REST API."""
    pid = server.running_pid(settings)
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    ports = {c.laddr.port for p in procs for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    for port in sorted(ports - {settings.thrift_port, settings.connect_port}):
        try:
            apps = requests.get(f"http://127.0.0.1:{port}/api/v1/applications", timeout=2).json()
        except (requests.RequestException, ValueError):
            continue
        return f"http://127.0.0.1:{port}/api/v1/applications/{apps[0]['id']}"
    raise RuntimeError(f"no Spark UI among the server's ports {sorted(ports)}")


def spark_marks(base: str) -> tuple[int, int]:
    """The newest Spark job id and SQL execution id so far (-1 before the first): both count up
    by one per job or statement, so the difference of two marks is the work in between."""
    jobs = requests.get(f"{base}/jobs", timeout=30).json()
    executions = requests.get(f"{base}/sql", params={"details": "false", "offset": 0, "length": 1000},
                              timeout=30).json()
    return (max((job["jobId"] for job in jobs), default=-1),
            max((execution["id"] for execution in executions), default=-1))


class CountingStages(Stages):
    """The pipeline's stages, each with the Spark jobs and SQL statements it ran. The UI is read
    before and after a stage, outside its timing."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.work: dict[str, tuple[int, int]] = {}

    @contextmanager
    def stage(self, name: str):
        before = spark_marks(self.base)
        with super().stage(name) as notes:
            yield notes
        after = spark_marks(self.base)
        self.work[name] = (after[0] - before[0], after[1] - before[1])


# --- the floors ------------------------------------------------------------------------------

def ingest_floor(spark, source: Path) -> float:
    """u.data, u.item and u.user read by Spark and written as Delta tables, once each."""
    started = time.monotonic()
    spark.sql("create schema if not exists floor")
    for name, sep, encoding in (("u.data", "\t", "UTF-8"), ("u.item", "|", "ISO-8859-1"), ("u.user", "|", "UTF-8")):
        frame = spark.read.option("sep", sep).option("encoding", encoding).csv(str(source / name))
        frame.write.format("delta").mode("overwrite").saveAsTable(f"floor.{name.replace('.', '_')}")
    return time.monotonic() - started


def dbt_floor(settings, scratch: Path) -> tuple[float, int]:
    """The models and data tests of the pipeline's first `dbt build`, compiled, then run in dbt's
    order over one Thrift connection: (seconds, statements)."""
    from pyhive import hive

    target = scratch / "dbt-floor"
    outcome = run_dbt(settings, "compile", "--exclude", ML_NODES, "--full-refresh", "--threads", "1", "--quiet",
                      target_dir=target)
    if not outcome.ok:
        raise SystemExit(f"dbt compile failed: {outcome.failures}")
    nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    order = [r["unique_id"] for r in json.loads((target / "run_results.json").read_text())["results"]]
    statements = []
    for unique_id in order:
        node = nodes[unique_id]
        sql = node.get("compiled_code")
        if not sql or node["resource_type"] not in ("model", "test"):
            continue  # seeds (loaded by the pipeline already, four tiny tables) and unit tests
        if node["resource_type"] == "test":
            statements.append(f"select count(*) from ({sql}) dbt_test")
        elif node["config"]["materialized"] == "view":
            statements.append(f"create or replace view {node['relation_name']} as {sql}")
        else:
            statements.append(f"create or replace table {node['relation_name']} using delta as {sql}")
    connection = hive.connect(host=settings.host, port=settings.thrift_port, username="bench")
    try:
        cursor = connection.cursor()
        for option in ("spark.sql.ansi.enabled=true", "spark.sql.session.timeZone=UTC"):  # as profiles.yml
            cursor.execute(f"set {option}")
        started = time.monotonic()
        for statement in statements:
            cursor.execute(statement)
            if cursor.description:
                cursor.fetchall()
        return time.monotonic() - started, len(statements)
    finally:
        connection.close()


def train_floor(spark) -> float:
    """One ALS fit of the default grid's first ranking configuration, its factors collected."""
    from ml.als import fit_als
    from ml.train import RANKING_GRIDS

    params = RANKING_GRIDS["default"][0].als
    started = time.monotonic()
    ratings = spark.table("gold.ratings").select("user_id", "movie_id", "rating")
    model = fit_als(ratings, params, "rating", implicit=True)
    model.userFactors.count()
    return time.monotonic() - started


# --- one run ---------------------------------------------------------------------------------

def one_run(source: Path, driver_memory: str) -> dict:
    from lakehouse.pipeline import run_pipeline
    from lakehouse.session import connect
    from lakehouse.stream import job
    from lakehouse.superset import service as superset

    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as scratch:
        home = Path(scratch) / "home"
        saved = dict(os.environ)
        os.environ.update({
            "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_DRIVER_MEMORY": driver_memory,
            "DBT_TARGET_PATH": str(home / "dbt-target"), "LAKEHOUSE_MLFLOW_DIR": str(home / "mlflow"),
            "LAKEHOUSE_STREAM_DIR": str(home / "landing"), "LAKEHOUSE_SUPERSET_ENV": str(home / "superset.env"),
            **{f"LAKEHOUSE_{name}_PORT": str(free_port())
               for name in ("THRIFT", "CONNECT", "MLFLOW", "SUPERSET", "API", "DOCS")},
        })
        os.environ.pop("LAKEHOUSE_MLFLOW_TRACKING_URI", None)
        settings = load_settings()
        try:
            started = time.monotonic()
            server.up(settings, quiet=True)  # the pipeline's first stage then finds it running
            server_seconds = time.monotonic() - started
            stages = CountingStages(spark_ui(settings))
            if run_pipeline(settings, "ml-100k", source, stages=stages) != 0:
                raise SystemExit("the pipeline failed; see its output above")
            # The floors, on the same server with nothing else running.
            job.stop(settings)
            api_service.down(settings)
            superset.down(settings)
            mlflow_ui.down(settings)
            spark = connect(settings)
            floors = {"ingest": ingest_floor(spark, source)}
            floors["dbt build"], statements = dbt_floor(settings, Path(scratch))
            floors["train"] = train_floor(spark)
            spark.stop()
        finally:
            server.down(settings)
            os.environ.clear()
            os.environ.update(saved)
        rows = []
        for name, seconds, _ in stages.timings:
            jobs, sql = stages.work.get(name, (None, None))
            floor = next((floors[key] for prefix, key in FLOORS.items() if name.startswith(prefix)
                          and not name.startswith("dbt build (")), None)
            if name == "lakehouse server":
                seconds = server_seconds  # started above, before the UI could be followed
            rows.append({"stage": name, "seconds": seconds, "spark_jobs": jobs, "sql_statements": sql,
                         "floor_seconds": floor})
        return {"stages": rows, "total_seconds": sum(r["seconds"] for r in rows),
                "dbt_floor_statements": statements}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ml-100k", type=Path, default=DEFAULT_ML_100K)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    if not (args.ml_100k / "u.data").exists():
        raise SystemExit(f"MovieLens 100K not found at {args.ml_100k} (--ml-100k DIR)")

    runs = []
    for index in range(args.runs):
        console.rule(f"[bold]bench/pipeline: run {index + 1} of {args.runs}")
        runs.append(one_run(args.ml_100k, args.driver_memory))
    names = [row["stage"] for row in runs[0]["stages"]]

    def median(stage: str, key: str) -> float | None:
        values = [row[key] for run in runs for row in run["stages"] if row["stage"] == stage and row[key] is not None]
        return statistics.median(values) if values else None

    summary = [{"stage": name, **{key: median(name, key) for key in ("seconds", "spark_jobs", "sql_statements",
                                                                      "floor_seconds")}} for name in names]
    total = statistics.median(run["total_seconds"] for run in runs)
    machine = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "runs": runs, "median": summary, "median_total_seconds": total},
                                   indent=2))
    rows = [(s["stage"], f"{s['seconds']:.1f}", f"{s['spark_jobs']:.0f}", f"{s['sql_statements']:.0f}",
             "—" if s["floor_seconds"] is None else f"{s['floor_seconds']:.1f}") for s in summary]
    rows.append(("total", f"{total:.1f}", "", "", ""))
    console.print(table(f"`make run` on ml-100k, median of {args.runs} runs ({machine['cpus']} cores, "
                        f"{machine['memory_gib']} GiB)", ["stage", "seconds", "Spark jobs", "SQL statements",
                                                          "floor s"], rows))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
