"""The training grids side by side: what `make run`'s default grid gives up against the full sweep.

`lakehouse train` (and so `make run`) sweeps the `default` grid; `--grid full` is the bench's
sweep. Both are run here on the very same data and splits (ml-100k as `make run` loads it, the
holdout and per-user protocols with seed 42, evaluate only: nothing is registered): each grid's wall time and its
champions' test RMSE and NDCG@10, and the gap between them. The issue's bar: the default's
champions within 0.005 RMSE and 0.005 NDCG@10 of the full sweep's.

It starts its own lakehouse server on free ports in a temporary data directory (yours is never
touched). Prints a table and writes bench/results/grids.json.

    .venv/bin/python bench/grids.py [--grids default,full] [--ml-100k DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import machine_info  # noqa: E402
from bench.prepared import DEFAULT_ML_100K, bench_settings  # noqa: E402
from lakehouse import server  # noqa: E402
from lakehouse.console import Stages, console, table  # noqa: E402
from lakehouse.dbt_runner import run_dbt  # noqa: E402
from lakehouse.ingest_command import ingest_with_progress  # noqa: E402
from lakehouse.pipeline import HOLDOUT_FRACTION  # noqa: E402
from lakehouse.session import connect  # noqa: E402

RESULTS = REPO / "bench" / "results" / "grids.json"
BAR = 0.005  # the largest gap the default grid may have against the full sweep, RMSE and NDCG@10 alike


def train(spark, settings, grid: str) -> dict:
    from ml.ranking_job import K
    from ml.train import add_arguments, run_training

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--grid", grid, "--no-publish"])
    started = time.monotonic()
    outcome = run_training(spark, settings, args)
    return {
        "seconds": time.monotonic() - started,
        "rating_configurations": len(outcome.rating.candidates) - 1,  # the champion is a refit, not a configuration
        "ranking_configurations": len(outcome.ranking.candidates) - 1,
        "rating_champion": outcome.rating.champion.name,
        "rmse": outcome.rating.champion.mean("test", "rmse"),
        "ranking_champion": outcome.ranking.champion.name,
        "ndcg_at_10": outcome.ranking.champion.mean("test", f"ndcg_at_{K}"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", default="default,full", help="comma-separated; the last is the reference")
    parser.add_argument("--ml-100k", type=Path, default=DEFAULT_ML_100K)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    grids = args.grids.split(",")
    if not (args.ml_100k / "u.data").exists():
        raise SystemExit(f"MovieLens 100K not found at {args.ml_100k} (--ml-100k DIR)")
    machine = machine_info()
    results: dict[str, dict] = {}
    stages = Stages()
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-grids-") as home:
        settings = bench_settings(Path(home), args.driver_memory)
        server.up(settings, quiet=True)
        try:
            spark = connect(settings)
            with stages.stage("ingest ml-100k, dbt run +ratings"):
                # As `make run` loads it: the latest 10% held out for the stream.
                ingest_with_progress(spark, settings, "ml-100k", args.ml_100k, holdout_fraction=HOLDOUT_FRACTION)
                if not run_dbt(settings, "run", "--select", "+ratings", "--quiet").ok:
                    raise SystemExit("dbt run failed")
            for grid in grids:
                with stages.stage(f"lakehouse train --grid {grid} --no-publish"):
                    results[grid] = train(spark, settings, grid)
            spark.stop()
        finally:
            server.down(settings)
    reference = results[grids[-1]]
    for result in results.values():
        result["rmse_gap"] = result["rmse"] - reference["rmse"]  # > 0: worse than the reference
        result["ndcg_gap"] = reference["ndcg_at_10"] - result["ndcg_at_10"]
        result["within_bar"] = result["rmse_gap"] <= BAR and result["ndcg_gap"] <= BAR
    rows = [(grid, f"{r['seconds']:.0f}", f"{r['rating_configurations']} + {r['ranking_configurations']}",
             f"{r['rmse']:.4f}", f"{r['rmse_gap']:+.4f}", f"{r['ndcg_at_10']:.4f}", f"{-r['ndcg_gap']:+.4f}",
             "yes" if r["within_bar"] else "no") for grid, r in results.items()]
    console.print(table(f"Training grids on ml-100k ({machine['cpus']} cores; gaps against `{grids[-1]}`)",
                        ["grid", "seconds", "candidates (rating + ranking)", "champion RMSE", "gap",
                         "champion NDCG@10", "gap", f"within {BAR}"], rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "reference": grids[-1], "bar": BAR, "grids": results},
                                   indent=2))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
