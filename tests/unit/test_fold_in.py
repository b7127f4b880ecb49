"""The fold-in's least-squares step and the cold-start list (NumPy only; MLlib agreement is in
tests/integration/test_stream.py)."""
from __future__ import annotations

import numpy as np
import pytest

from ml.fold_in import ColdStart, FoldInModel


def implicit_loss(x, factors, rated_rows, values, reg, alpha):
    """MLlib's implicit ALS objective for one user, written out over every movie."""
    preference = np.zeros(len(factors))
    confidence = np.ones(len(factors))
    preference[rated_rows] = (values > 0).astype(float)
    confidence[rated_rows] = 1 + alpha * np.abs(values)
    residual = preference - factors @ x
    return float(np.sum(confidence * residual**2) + reg * np.sum(values > 0) * x @ x)


@pytest.mark.parametrize("binary", [False, True])
def test_user_vector_minimises_the_implicit_objective(binary):
    rng = np.random.default_rng(3)
    factors = rng.normal(0, 0.3, (60, 5))
    model = FoldInModel(np.arange(100, 160), factors, reg_param=0.1, alpha=2.0, binary=binary)
    rated = np.array([101, 105, 130, 131, 150, 999])  # 999: a movie the model does not know
    ratings = np.array([5.0, 3.0, 4.0, 1.0, 2.0, 5.0])
    x = model.user_vector(rated, ratings)
    rows, values = np.array([1, 5, 30, 31, 50]), (np.ones(5) if binary else ratings[:5])
    best = implicit_loss(x, factors, rows, values, 0.1, 2.0)
    for _ in range(50):  # no nearby vector does better
        assert implicit_loss(x + rng.normal(0, 1e-3, 5), factors, rows, values, 0.1, 2.0) > best


def test_user_vector_is_none_without_known_movies():
    model = FoldInModel(np.array([1, 2]), np.eye(2), reg_param=0.1, alpha=1.0, binary=False)
    assert model.user_vector(np.array([7, 8]), np.array([4.0, 5.0])) is None


def test_top_n_excludes_seen_movies_and_orders_by_score():
    factors = np.array([[1.0], [3.0], [2.0], [0.5]])
    model = FoldInModel(np.array([10, 11, 12, 13]), factors, reg_param=0.1, alpha=1.0, binary=False)
    assert [m for m, _ in model.top_n(np.array([1.0]), seen={11}, n=2)] == [12, 10]
    offset = FoldInModel(np.array([10, 11, 12, 13]), factors, 0.1, 1.0, False, popularity_offset=np.array([0, 0, 0, 9.0]))
    assert offset.top_n(np.array([1.0]), seen=set(), n=1)[0][0] == 13


def test_cold_start_prefers_the_genres_of_the_first_ratings_then_popularity():
    cold = ColdStart(
        movie_ids=np.array([1, 2, 3, 4, 5]),
        rating_counts=np.array([100.0, 5.0, 50.0, 80.0, 1.0]),
        genres=[frozenset({"Drama"}), frozenset({"Horror"}), frozenset({"Horror", "Thriller"}),
                frozenset({"Comedy"}), frozenset({"Horror"})],
    )
    picked = [m for m, _ in cold.top_n(rated_in_order=[2], seen={2}, n=4)]
    assert picked[:2] == [3, 5]  # the other Horror movies first, most-rated first
    assert picked[2:] == [1, 4]  # then the most popular of the rest


def test_cold_start_weighs_a_genre_by_how_many_first_movies_share_it():
    cold = ColdStart(
        movie_ids=np.array([1, 2, 3, 4]),
        rating_counts=np.array([10.0, 10.0, 500.0, 1.0]),
        genres=[frozenset({"Western", "Drama"}), frozenset({"Western", "Comedy"}), frozenset({"Drama"}),
                frozenset({"Western"})],
    )
    # Two Westerns rated: another Western beats a far more popular drama.
    assert cold.top_n(rated_in_order=[1, 2], seen={1, 2}, n=1)[0][0] == 4
