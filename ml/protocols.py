"""Evaluation protocols: how ratings are split into training and test sets.

Every split is a pure function of the data and a seed (hash-based, not `rand()`), so a protocol
gives the same rows on any cluster layout and a run can be reproduced from its logged params.
Hyperparameters are chosen on a validation set carved out of the training data with the same
protocol (`validation_split`), never on the test set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

PROTOCOLS = ("holdout", "official-folds", "per-user", "temporal")
DESCRIPTIONS = {
    "holdout": "random holdout of {fraction:.0%} of all ratings (seed {seed})",
    "official-folds": "MovieLens 100K official folds u1..u5 (uN.base / uN.test)",
    "per-user": "per-user stratified split: {fraction:.0%} of each user's ratings held out (seed {seed})",
    "temporal": "temporal split: each user's latest {fraction:.0%} of ratings held out",
}


@dataclass(frozen=True)
class Split:
    name: str  # "holdout", "u1", ...
    train: DataFrame
    test: DataFrame


def _unit_hash(seed: int) -> Column:
    """A deterministic pseudo-random number in [0, 1) per (user, movie) pair."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64("user_id", "movie_id", F.lit(seed)), F.lit(1_000_000)) / F.lit(1_000_000.0)


def random_split(ratings: DataFrame, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    held_out = _unit_hash(seed) < fraction
    return ratings.where(~held_out), ratings.where(held_out)


def _per_user_split(ratings: DataFrame, fraction: float, order: list) -> tuple[DataFrame, DataFrame]:
    """Keep round((1 - fraction) * n) of each user's n ratings, in `order`, for training."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_user = Window.partitionBy("user_id")
    ranked = ratings.withColumn("_pos", F.row_number().over(by_user.orderBy(*order))).withColumn(
        "_keep", F.round(F.count(F.lit(1)).over(by_user) * (1.0 - fraction))
    )
    in_train = F.col("_pos") <= F.col("_keep")
    return ranked.where(in_train).drop("_pos", "_keep"), ranked.where(~in_train).drop("_pos", "_keep")


def per_user_split(ratings: DataFrame, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    from pyspark.sql import functions as F

    return _per_user_split(ratings, fraction, [_unit_hash(seed), F.col("movie_id")])


def temporal_split(ratings: DataFrame, fraction: float, seed: int = 0) -> tuple[DataFrame, DataFrame]:
    from pyspark.sql import functions as F

    return _per_user_split(ratings, fraction, [F.col("rated_at"), F.col("movie_id")])


SPLITTERS: dict[str, Callable[[DataFrame, float, int], tuple[DataFrame, DataFrame]]] = {
    "holdout": random_split,
    "official-folds": random_split,  # validation inside a fold: a random slice, like the folds
    "per-user": per_user_split,
    "temporal": temporal_split,
}


def official_folds(ratings: DataFrame, folds_dir: Path, folds: tuple[int, ...]) -> list[Split]:
    """u1..u5 of MovieLens 100K: the uN.test pairs, matched to the ratings table by (user, movie)."""
    import pandas as pd

    spark = ratings.sparkSession
    splits = []
    for fold in folds:
        path = folds_dir / f"u{fold}.test"
        if not path.is_file():
            raise SystemExit(
                f"--protocol official-folds needs MovieLens 100K's u{fold}.test; not found in {folds_dir}. "
                "Pass --folds-dir (the ml-100k folder) or choose another --protocol."
            )
        keys = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1], names=["user_id", "movie_id"], dtype="int32")
        test_keys = spark.createDataFrame(keys)
        test = ratings.join(test_keys, ["user_id", "movie_id"], "left_semi")
        found = test.count()
        if found != len(keys):
            raise SystemExit(
                f"u{fold}.test has {len(keys):,} ratings but only {found:,} match the ratings table: "
                "the table does not hold MovieLens 100K."
            )
        splits.append(Split(f"u{fold}", ratings.join(test_keys, ["user_id", "movie_id"], "left_anti"), test))
    return splits


def make_splits(
    ratings: DataFrame, protocol: str, *, fraction: float, seed: int, folds_dir: Path | None, folds: tuple[int, ...]
) -> list[Split]:
    if protocol == "official-folds":
        if folds_dir is None:
            raise SystemExit("--protocol official-folds needs --folds-dir (the ml-100k folder with u1.test ...)")
        return official_folds(ratings, folds_dir, folds)
    if protocol not in SPLITTERS:
        raise SystemExit(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    train, test = SPLITTERS[protocol](ratings, fraction, seed)
    return [Split(protocol, train, test)]


def validation_split(train: DataFrame, protocol: str, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(fit, validation) carved out of a training set with the protocol's own rule."""
    return SPLITTERS[protocol](train, fraction, seed + 1)


def describe(protocol: str, fraction: float, seed: int) -> str:
    return DESCRIPTIONS[protocol].format(fraction=fraction, seed=seed)
