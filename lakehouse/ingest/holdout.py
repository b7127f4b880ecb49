"""`ingest --holdout-fraction F`: keep the latest F of the ratings out of bronze, for the replay.

The held-out ratings are the latest by (epoch_seconds, user_id, movie_id): the pair breaks ties at
the cutoff second, so the split is deterministic. The cutoff is counted over the rows that pass
the row-level checks: while the file is parsed their epoch seconds are kept in NumPy (8 bytes a
rating, 256 MB for ml-32m), the k-th latest second comes from a partial sort, and the few ties at
that second are ranked in Spark. The split is applied after the set-level checks, so every
held-out rating is one bronze would have accepted; rejected rows go to quarantine as always.

The held-out ratings go to `<LAKEHOUSE_HOME>/holdout/<dataset>/ratings.csv` (header
`user_id,movie_id,rating,timestamp`, epoch seconds, time order), where `lakehouse replay` reads them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lakehouse.datasets import HOLDOUT_HEADER as HEADER

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame


def check_fraction(fraction: float) -> float:
    if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
        raise ValueError(f"--holdout-fraction {fraction}: expected a number from 0 (off) up to, not including, 1")
    return fraction


@dataclass(frozen=True)
class Cutoff:
    """The earliest held-out rating's key: every rating with a key >= this one is held out."""

    epoch_seconds: int
    user_id: int
    movie_id: int

    def held_out(self) -> Column:
        from pyspark.sql import functions as F

        ts, user, movie = F.col("epoch_seconds"), F.col("user_id"), F.col("movie_id")
        same_second = ts == F.lit(self.epoch_seconds)
        same_user = user == F.lit(self.user_id)
        return (
            (ts > F.lit(self.epoch_seconds))
            | (same_second & (user > F.lit(self.user_id)))
            | (same_second & same_user & (movie >= F.lit(self.movie_id)))
        )


def held_out_count(rows: int, fraction: float) -> int:
    """How many of `rows` ratings a fraction holds out (rounded half up)."""
    return min(rows, math.floor(fraction * rows + 0.5))


def rank_cutoff(timestamps: np.ndarray, fraction: float) -> tuple[int, int, int] | None:
    """(ratings to hold out, the cutoff second, ratings later than that second); None for none.

    Sorts `timestamps` partially in place (the caller's array is scratch).
    """
    rows = len(timestamps)
    k = held_out_count(rows, fraction)
    if k == 0:
        return None
    timestamps.partition(rows - k)
    second = int(timestamps[rows - k])
    later = int(np.count_nonzero(timestamps > second))
    return k, second, later


def find_cutoff(staged: DataFrame, timestamps: np.ndarray, fraction: float) -> Cutoff | None:
    """The cutoff over `staged` (the row-level-valid ratings whose seconds are `timestamps`)."""
    from pyspark.sql import functions as F

    ranked = rank_cutoff(timestamps, fraction)
    if ranked is None:
        return None
    k, second, later = ranked
    # Only the ratings at the cutoff second are ranked by (user_id, movie_id): a handful, usually.
    ties = (
        staged.where(F.col("epoch_seconds") == second)
        .select("user_id", "movie_id")
        .orderBy(F.desc("user_id"), F.desc("movie_id"))
        .limit(k - later)
        .collect()
    )
    last = ties[-1]
    return Cutoff(second, last.user_id, last.movie_id)


def write_holdout(rows: pd.DataFrame, path: Path) -> int:
    """Write held-out ratings (columns user_id, movie_id, rating, epoch_seconds) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame = rows[["user_id", "movie_id", "rating", "epoch_seconds"]].sort_values(
        ["epoch_seconds", "user_id", "movie_id"], kind="stable"
    )
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            frame.to_csv(out, index=False, header=list(HEADER), lineterminator="\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frame)


def remove_holdout(path: Path) -> bool:
    """Drop a held-out file that no longer matches bronze (the ratings were loaded without one)."""
    if path.exists():
        path.unlink()
        return True
    return False
