"""Pure-Python parts of the recommender jobs: parameter round trips through MLflow params, sweep
bookkeeping and selection."""
from __future__ import annotations

import math

import pytest

from ml.als import AlsParams
from ml.knn import KnnParams
from ml.protocols import PROTOCOLS, describe
from ml.ranking_model import RankingParams
from ml.sweep import Candidate, best


def test_params_survive_the_round_trip_through_mlflow_params():
    als = AlsParams(rank=50, reg_param=0.12, max_iter=15, alpha=0.3, seed=7)
    # MLflow stores params as strings: parse back from str values.
    assert AlsParams.from_params({k: str(v) for k, v in als.as_params().items()}) == als
    knn = KnnParams(by="user", k=80, shrinkage=400.0, min_support=3, keep=150)
    assert KnnParams.from_params({k: str(v) for k, v in knn.as_params().items()}, "user") == knn
    ranking = RankingParams(als, value="binary", popularity_weight=0.1)
    assert RankingParams.from_params({k: str(v) for k, v in ranking.as_params().items()}) == ranking


def test_item_and_user_neighbourhoods_log_distinct_params():
    item, user = KnnParams(by="item").as_params(), KnnParams(by="user").as_params()
    assert set(item).isdisjoint(user)
    assert all(key.startswith("item_knn.") for key in item)


def test_candidate_metrics_per_split_and_mean():
    candidate = Candidate("als", "als rank=10", {})
    candidate.validation = {"u1": {"rmse": 0.9}, "u2": {"rmse": 1.1}}
    candidate.test = {"u1": {"rmse": 0.95, "mae": 0.7}, "u2": {"rmse": 0.97, "mae": 0.8}}
    candidate.fit_seconds = [2.0, 4.0]
    metrics = candidate.metrics()
    assert metrics["val_rmse"] == pytest.approx(1.0)
    assert metrics["rmse_u1"] == 0.95 and metrics["rmse"] == pytest.approx(0.96)
    assert metrics["mae"] == pytest.approx(0.75)
    assert metrics["fit_seconds"] == 3.0
    single = Candidate("als", "one split", {}, test={"holdout": {"rmse": 0.9}})
    assert single.metrics() == {"rmse": 0.9}  # no per-split copy when there is one split
    assert math.isnan(Candidate("x", "y", {}).mean("test", "rmse"))


def test_selection_uses_validation_never_test():
    good_on_validation = Candidate("als", "a", {}, validation={"s": {"rmse": 0.90}}, test={"s": {"rmse": 0.99}})
    good_on_test = Candidate("als", "b", {}, validation={"s": {"rmse": 0.95}}, test={"s": {"rmse": 0.80}})
    assert best([good_on_test, good_on_validation], "rmse", lower_is_better=True) is good_on_validation
    ranked = [Candidate("r", "x", {}, validation={"s": {"ndcg_at_10": v}}) for v in (0.2, 0.4, 0.3)]
    assert best(ranked, "ndcg_at_10", lower_is_better=False) is ranked[1]


def test_every_protocol_describes_itself():
    for protocol in PROTOCOLS:
        assert describe(protocol, 0.25, 42)
    assert "25%" in describe("per-user", 0.25, 42) and "seed 42" in describe("holdout", 0.2, 42)
