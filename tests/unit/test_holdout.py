"""The holdout cutoff and file, without Spark (the split itself is tested in tests/integration)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lakehouse.datasets import holdout_file
from lakehouse.ingest.holdout import (
    HEADER,
    check_fraction,
    held_out_count,
    rank_cutoff,
    remove_holdout,
    write_holdout,
)


@pytest.mark.parametrize("fraction", [0.001, 0.1, 0.25, 0.5, 0.9])
def test_the_cutoff_is_the_kth_latest_second(fraction):
    rng = np.random.default_rng(3)
    seconds = rng.integers(900_000_000, 900_000_300, size=5000)  # many ties per second
    k, second, later = rank_cutoff(seconds.copy(), fraction)
    ordered = np.sort(seconds)[::-1]
    assert k == held_out_count(5000, fraction) == round(fraction * 5000)
    assert second == ordered[k - 1]
    assert later == np.count_nonzero(seconds > second) < k <= later + np.count_nonzero(seconds == second)


def test_nothing_held_out_when_the_fraction_rounds_to_zero():
    assert rank_cutoff(np.array([5, 6, 7], dtype=np.int64), 0.1) is None
    assert rank_cutoff(np.array([], dtype=np.int64), 0.5) is None
    assert held_out_count(3, 0.5) == 2  # half up


def test_fraction_bounds():
    assert check_fraction(0.0) == 0.0 and check_fraction(0.999) == 0.999
    for bad in (-0.1, 1.0, 2.0, float("nan")):
        with pytest.raises(ValueError, match="--holdout-fraction"):
            check_fraction(bad)


def test_the_file_is_sorted_by_time_then_ids_with_the_header(tmp_path):
    path = holdout_file(tmp_path, "ml-100k")
    rows = pd.DataFrame(
        {"user_id": [3, 1, 2, 1], "movie_id": [1, 9, 5, 2], "rating": [4.0, 3.5, 1.0, 5.0],
         "epoch_seconds": [20, 10, 10, 10]}
    )
    assert write_holdout(rows, path) == 4
    assert path == tmp_path / "ml-100k" / "ratings.csv"
    assert path.read_text().splitlines() == [
        ",".join(HEADER), "1,2,5.0,10", "1,9,3.5,10", "2,5,1.0,10", "3,1,4.0,20",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["ratings.csv"]  # no temporary left
    assert write_holdout(rows.iloc[0:0], path) == 0 and path.read_text() == ",".join(HEADER) + "\n"
    assert remove_holdout(path) and not path.exists() and not remove_holdout(path)
