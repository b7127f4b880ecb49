"""Recommender quality on MovieLens 100K, side by side with scikit-surprise and the seeds' method.

One go, on the very same data:
- rating prediction on the official folds u1..u5 (train on uN.base, score uN.test): the project's
  sweep (`lakehouse train --protocol official-folds`: every family, the blend, the champion),
  scikit-surprise BaselineOnly, SVD, SVD++ and KNNBaseline, and the seeds' (user mean + item mean) / 2;
- top-N ranking on the per-user stratified 75/25 split (seeded): the project's implicit ALS and
  the popularity baseline (precision, recall, NDCG and MAP at 10);
- the cost of one ALS fit: Spark MLlib (warm) against the same math in NumPy.

It starts its own lakehouse server on free ports in a temporary data directory (yours is never
touched), loads u.data into a table, and runs the project's jobs over Spark Connect with MLflow
in that directory. Prints tables and writes bench/results/ml_quality.json.

    make bench-ml          # installs scikit-surprise (bench/requirements.txt) first
    .venv/bin/python bench/ml_quality.py [--ml-100k DIR] [--grid default|full] [--skip-surprise]
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
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import free_port  # noqa: E402
from lakehouse import server  # noqa: E402
from lakehouse.console import console, table  # noqa: E402
from lakehouse.session import connect  # noqa: E402
from lakehouse.settings import Settings  # noqa: E402
from lakehouse import delta  # noqa: E402

DEFAULT_ML_100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"
RESULTS = REPO / "bench" / "results" / "ml_quality.json"
TABLE = "bench.ml100k_ratings"
FOLDS = ("u1", "u2", "u3", "u4", "u5")


def read_ratings(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", names=["user_id", "movie_id", "rating", "epoch"])


def project_models(spark, settings: Settings, folder: Path, grid: str) -> dict:
    """The project's own jobs, evaluation only (nothing registered or published)."""
    from lakehouse.cli import build_parser
    from ml.train import run_training

    frame = read_ratings(folder / "u.data")
    frame["rated_at"] = pd.to_datetime(frame.pop("epoch"), unit="s")
    frame["rating"] = frame["rating"].astype(float)
    spark.sql("create schema if not exists bench")
    delta.replace(spark.createDataFrame(frame), TABLE)
    args = build_parser().parse_args([
        "train", "--table", TABLE, "--protocol", "official-folds", "--folds-dir", str(folder),
        "--grid", grid, "--no-publish",
    ])
    started = time.perf_counter()
    outcome = run_training(spark, settings, args)
    elapsed = time.perf_counter() - started
    rating = {
        c.name: {"family": c.family, "rmse": {f: c.test[f]["rmse"] for f in FOLDS}, "mae": {f: c.test[f]["mae"] for f in FOLDS},
                 "fit_seconds": statistics.fmean(c.fit_seconds) if c.fit_seconds else None}
        for c in outcome.rating.candidates
    }
    ranking = {
        c.name: {"family": c.family, **{m: c.mean("test", f"{m}_at_10") for m in ("precision", "recall", "ndcg", "map")},
                 "fit_seconds": statistics.fmean(c.fit_seconds) if c.fit_seconds else None}
        for c in outcome.ranking.candidates
    }
    return {"rating": rating, "ranking": ranking, "seconds": elapsed}


def surprise_models(folder: Path) -> dict:
    """scikit-surprise on the same folds (its own defaults, KNNBaseline with pearson_baseline items)."""
    from surprise import SVD, BaselineOnly, Dataset, KNNBaseline, Reader, SVDpp, accuracy
    from surprise.model_selection import PredefinedKFold

    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    algorithms = {
        "surprise BaselineOnly": lambda: BaselineOnly(verbose=False),
        "surprise SVD": lambda: SVD(random_state=0),
        "surprise SVD++": lambda: SVDpp(random_state=0),
        "surprise KNNBaseline": lambda: KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False}, verbose=False),
    }
    out = {}
    for name, make in algorithms.items():
        rmse, mae, seconds = {}, {}, []
        for fold in FOLDS:
            data = Dataset.load_from_folds([(str(folder / f"{fold}.base"), str(folder / f"{fold}.test"))], reader)
            trainset, testset = next(PredefinedKFold().split(data))
            algo = make()
            started = time.perf_counter()
            algo.fit(trainset)
            seconds.append(time.perf_counter() - started)
            predictions = algo.test(testset)
            rmse[fold] = accuracy.rmse(predictions, verbose=False)
            mae[fold] = accuracy.mae(predictions, verbose=False)
        out[name] = {"family": "surprise", "rmse": rmse, "mae": mae, "fit_seconds": statistics.fmean(seconds)}
        console.print(f"{name}: mean RMSE {statistics.fmean(rmse.values()):.4f}")
    return out


def numpy_als_seconds(folder: Path, rank: int = 10, iterations: int = 10, reg: float = 0.1) -> float:
    """One explicit ALS-WR fit in NumPy (MLlib's math: reg scaled by each row's rating count)."""
    frame = read_ratings(folder / "u1.base")
    users, user_index = np.unique(frame["user_id"], return_inverse=True)
    items, item_index = np.unique(frame["movie_id"], return_inverse=True)
    ratings = frame["rating"].to_numpy(float)
    rng = np.random.default_rng(0)
    factors_u = rng.normal(size=(len(users), rank)) / np.sqrt(rank)
    factors_i = rng.normal(size=(len(items), rank)) / np.sqrt(rank)
    by_user = [np.flatnonzero(user_index == u) for u in range(len(users))]
    by_item = [np.flatnonzero(item_index == i) for i in range(len(items))]
    started = time.perf_counter()
    for _ in range(iterations):
        for rows, solve_for, fixed, other in ((by_item, factors_i, factors_u, user_index), (by_user, factors_u, factors_i, item_index)):
            for k, idx in enumerate(rows):
                v = fixed[other[idx]]
                solve_for[k] = np.linalg.solve(v.T @ v + reg * len(idx) * np.eye(rank), v.T @ ratings[idx])
    return time.perf_counter() - started


def spark_als_seconds(spark, folder: Path, rank: int = 10, iterations: int = 10, reg: float = 0.1) -> dict:
    from ml.als import AlsParams, fit_als

    frame = read_ratings(folder / "u1.base")[["user_id", "movie_id", "rating"]].astype({"rating": float})
    df = spark.createDataFrame(frame).localCheckpoint()
    timings = []
    for _ in range(3):  # the first fit warms the JVM
        started = time.perf_counter()
        fit_als(df, AlsParams(rank=rank, reg_param=reg, max_iter=iterations), "rating")
        timings.append(time.perf_counter() - started)
    return {"cold": timings[0], "warm": statistics.median(timings[1:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ml-100k", type=Path, default=Path(os.environ.get("MOVIELENS_SOURCE") or DEFAULT_ML_100K))
    parser.add_argument("--grid", default="default", choices=("quick", "default", "full"))
    parser.add_argument("--skip-surprise", action="store_true")
    args = parser.parse_args()
    folder = args.ml_100k
    if not (folder / "u1.base").exists():
        raise SystemExit(f"MovieLens 100K (with u1.base ... u5.test) not found at {folder}; pass --ml-100k")

    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-ml-") as home:
        settings = Settings(home=Path(home), thrift_port=free_port(), connect_port=free_port(), mlflow_dir=Path(home) / "mlflow")
        server.up(settings, timeout=240)
        try:
            spark = connect(settings)
            als = spark_als_seconds(spark, folder)
            project = project_models(spark, settings, folder, args.grid)
            spark.stop()
        finally:
            server.down(settings)
    numpy_seconds = numpy_als_seconds(folder)
    surprise = {} if args.skip_surprise else surprise_models(folder)

    rating = {**project["rating"], **surprise}
    rows = []
    for name, r in rating.items():
        rows.append((name, *(f"{r['rmse'][f]:.4f}" for f in FOLDS), f"{statistics.fmean(r['rmse'].values()):.4f}",
                     f"{statistics.fmean(r['mae'].values()):.4f}", f"{r['fit_seconds']:.1f}" if r["fit_seconds"] else "-"))
    console.print(table("Rating prediction on ml-100k u1..u5 (RMSE per fold, mean RMSE and MAE)",
                        ["model", *FOLDS, "mean RMSE", "mean MAE", "fit s/fold"], rows))
    ranking_rows = [(name, *(f"{r[m]:.4f}" for m in ("precision", "recall", "ndcg", "map"))) for name, r in project["ranking"].items()]
    console.print(table("Top-10 ranking, per-user stratified 75/25 split (seed 42)", ["model", "P@10", "R@10", "NDCG@10", "MAP@10"], ranking_rows))
    ratio = als["warm"] / numpy_seconds
    console.print(f"ALS fit (rank 10, 10 iterations, u1.base): Spark MLlib {als['cold']:.2f} s cold, {als['warm']:.2f} s warm; "
                  f"NumPy {numpy_seconds:.2f} s; Spark/NumPy = {ratio:.1f}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "grid": args.grid, "rating": rating, "ranking": project["ranking"], "project_seconds": project["seconds"],
        "als_fit_seconds": {"spark_cold": als["cold"], "spark_warm": als["warm"], "numpy": numpy_seconds, "spark_over_numpy": ratio},
    }, indent=2))
    console.print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
