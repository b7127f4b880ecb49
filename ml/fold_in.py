"""Fold a user's ratings into the ranking champion without retraining (NumPy only, no Spark).

The item factors Y stay fixed; the user's vector is ALS's own least-squares step for one user,
exactly as MLlib's implicit ALS computes it (Hu, Koren & Volinsky 2008, with MLlib's
regularisation scaled by the user's number of positive ratings):

    (YᵀY + Σ_i c1_i y_i y_iᵀ + λ n_u I) x_u = Σ_i (1 + c1_i) y_i,   c1_i = α |v_i|,

over the movies i the user rated (v_i the rating, or 1 for a "binary" model). With the same
ratings it returns the vector training produced (tests/unit/test_fold_in.py checks it against
MLlib). Cost per user: O(n_u k² + k³) to solve, O(items k) to score.

Users with too few ratings get a cold-start list instead: the most-rated movies of the genres of
the first movies they rated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FoldInModel:
    movie_ids: np.ndarray  # (items,) int
    factors: np.ndarray  # (items, rank) float64
    reg_param: float
    alpha: float
    binary: bool  # the model saw 1 for every rating instead of the rating
    popularity_offset: np.ndarray | None = None  # (items,) added to scores (RankingParams.popularity_weight)
    gram: np.ndarray = field(init=False)
    row_of: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.factors = np.asarray(self.factors, dtype=np.float64)
        self.gram = self.factors.T @ self.factors
        self.row_of = {int(m): i for i, m in enumerate(self.movie_ids)}

    @property
    def rank(self) -> int:
        return self.factors.shape[1]

    def user_vector(self, movie_ids: np.ndarray, ratings: np.ndarray) -> np.ndarray | None:
        """x_u from the user's ratings; movies the model does not know are left out.
        None when none of the user's movies is known to the model."""
        rows, values = [], []
        for movie_id, rating in zip(movie_ids, ratings):
            row = self.row_of.get(int(movie_id))
            if row is not None:
                rows.append(row)
                values.append(1.0 if self.binary else float(rating))
        if not rows:
            return None
        y = self.factors[rows]
        v = np.asarray(values)
        c1 = self.alpha * np.abs(v)
        positive = v > 0
        a = self.gram + (y.T * c1) @ y + self.reg_param * positive.sum() * np.eye(self.rank)
        b = y[positive].T @ (1.0 + c1[positive])
        return np.linalg.solve(a, b)

    def top_n(self, vector: np.ndarray, seen: set[int], n: int) -> list[tuple[int, float]]:
        """The n best-scored movies not in `seen`, best first."""
        scores = self.factors @ vector
        if self.popularity_offset is not None:
            scores = scores + self.popularity_offset
        return _best(self.movie_ids, scores, seen, n)


@dataclass
class ColdStart:
    """Most-rated movies in the genres of a new user's first ratings."""

    movie_ids: np.ndarray  # (movies,)
    rating_counts: np.ndarray  # (movies,) popularity in the training ratings
    genres: list[frozenset[str]]  # per movie
    first_ratings: int = 3  # how many of the user's first ratings define their genres

    def top_n(self, rated_in_order: list[int], seen: set[int], n: int) -> list[tuple[int, float]]:
        """Score: how many of the user's first movies share each of a movie's genres (a genre all
        of them have counts most), then the movie's popularity (0..1) to break ties."""
        index = {int(m): i for i, m in enumerate(self.movie_ids)}
        weight: dict[str, int] = {}
        for movie_id in rated_in_order[: self.first_ratings]:
            for genre in self.genres[index[int(movie_id)]] if int(movie_id) in index else ():
                weight[genre] = weight.get(genre, 0) + 1
        overlap = np.array([sum(weight.get(g, 0) for g in genres) for genres in self.genres], dtype=np.float64)
        popularity = self.rating_counts / max(float(self.rating_counts.max(initial=0)), 1.0)
        return _best(self.movie_ids, overlap + popularity, seen, n)


def _best(movie_ids: np.ndarray, scores: np.ndarray, seen: set[int], n: int) -> list[tuple[int, float]]:
    order = np.argsort(-scores, kind="stable")
    picked = []
    for i in order:
        movie_id = int(movie_ids[i])
        if movie_id not in seen:
            picked.append((movie_id, float(scores[i])))
            if len(picked) == n:
                break
    return picked
