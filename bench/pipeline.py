"""Benchmark of the pipeline stages: server start, ingest, dbt build.

Each run starts from an empty data directory on free ports (a user's server is never touched):
`lakehouse up`, ingest, `dbt build`, then `down`. The peak resident memory of the server (driver
+ JVM) is sampled throughout. Prints a table of medians and writes bench/results/pipeline.json.

    .venv/bin/python bench/pipeline.py [--runs 3] [--synthetic-ratings 1000000] [--ml-100k DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import free_port  # noqa: E402
from lakehouse import server  # noqa: E402
from lakehouse.console import console, table  # noqa: E402
from lakehouse.dbt_runner import run_dbt  # noqa: E402
from lakehouse.generate import SyntheticSpec, generate  # noqa: E402
from lakehouse.ingest.acquire import locate  # noqa: E402
from lakehouse.datasets import get_dataset  # noqa: E402
from lakehouse.ingest.load import ingest  # noqa: E402
from lakehouse.session import connect  # noqa: E402
from lakehouse.settings import Settings  # noqa: E402

DEFAULT_ML_100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"


@dataclass
class PeakMemory:
    """Samples the server's RSS (driver process + JVM) every 0.2 s in a thread."""

    settings: Settings
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "PeakMemory":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, server.server_rss_bytes(self.settings))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def one_run(dataset: str, source: Path, driver_memory: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as home:
        settings = Settings(
            home=Path(home), thrift_port=free_port(), connect_port=free_port(), driver_memory=driver_memory
        )
        os.environ["DBT_TARGET_PATH"] = str(Path(home) / "dbt-target")
        timings: dict[str, float] = {}
        started = time.monotonic()
        server.up(settings, quiet=True)
        timings["server_start_s"] = time.monotonic() - started
        try:
            with PeakMemory(settings) as memory:
                spark = connect(settings)
                started = time.monotonic()
                files = locate(get_dataset(dataset), source, settings.cache_dir)
                report = ingest(spark, files)
                timings["ingest_s"] = time.monotonic() - started
                assert all(f.conserved for f in report.files)
                started = time.monotonic()
                outcome = run_dbt(settings, "build", "--quiet")
                timings["dbt_build_s"] = time.monotonic() - started
                if not outcome.ok:
                    raise SystemExit(f"dbt build failed: {outcome.failures}")
                timings["rows"] = sum(f.rows_loaded for f in report.files if f.target_table == "bronze.ratings")
                spark.stop()
            timings["peak_rss_gib"] = memory.peak / 2**30
        finally:
            server.down(settings)
        return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--synthetic-ratings", type=int, default=1_000_000)
    parser.add_argument("--ml-100k", type=Path, default=DEFAULT_ML_100K)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()

    cases: list[tuple[str, str, Path]] = []
    if (args.ml_100k / "u.data").exists():
        cases.append(("ml-100k", "ml-100k", args.ml_100k))
    else:
        console.print(f"[yellow]skipping ml-100k: not found at {args.ml_100k}[/]")
    synthetic_dir = Path(tempfile.mkdtemp(prefix="lakehouse-bench-data-")) / "ml-latest-small"
    console.print(f"generating {args.synthetic_ratings:,} synthetic ratings (ml-latest layout) ...")
    generate(SyntheticSpec(layout="ml-latest", ratings=args.synthetic_ratings, seed=1), synthetic_dir)
    cases.append((f"synthetic {args.synthetic_ratings / 1e6:g}M", "ml-latest-small", synthetic_dir))

    results = []
    for label, dataset, source in cases:
        runs = []
        for index in range(args.runs):
            console.print(f"{label}: run {index + 1}/{args.runs} ...")
            runs.append(one_run(dataset, source, args.driver_memory))
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        results.append({"case": label, "dataset": dataset, "runs": runs, "median": median})

    machine = {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "runs_per_case": args.runs, "results": results}, indent=2))
    rows = [
        (
            r["case"],
            int(r["median"]["rows"]),
            f"{r['median']['server_start_s']:.1f}",
            f"{r['median']['ingest_s']:.1f}",
            f"{r['median']['dbt_build_s']:.1f}",
            f"{r['median']['peak_rss_gib']:.2f}",
        )
        for r in results
    ]
    console.print(
        table(
            f"Pipeline stages, median of {args.runs} runs ({machine['cpus']} cores, {machine['memory_gib']} GiB)",
            ["case", "ratings", "server start s", "ingest s", "dbt build s", "peak server RSS GiB"],
            rows,
        )
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
