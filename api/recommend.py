"""What the endpoints compute from a Catalog: plain functions, no I/O, no web framework.

- A user's list is the champion's top-N from ml.recommendations (kept fresh by the stream's
  fold-in), minus anything the user has rated since, each with a reason: the user's highly rated
  movie nearest to it in the champion's item space (cosine of the ALS item factors).
- "People who liked X also liked" (by title) scores each movie m over the users U who rated X
  highly (>= the scale's maximum minus one) and their graph neighbours N(u):

      votes(m) = sum_{u in U} w(rank_u(m)) + sum_{u in U} sum_{v in N(u)} sim(u, v) * w(rank_v(m)) / 2,
      w(rank) = 1 / log2(rank + 1),      score(m) = votes(m) / sqrt(L(m))

  (w is the discount NDCG uses: a first place counts 1, a tenth 0.29; L(m) is the number of all
  users' lists m is in, so a movie everyone is recommended does not win every title: "liked X
  also liked" means more than everyone else). X itself is excluded; ties are broken by the
  movie's rating count. `supporters` is how many of U and N(U) recommended m.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from api.catalog import Catalog


@dataclass(frozen=True)
class Recommended:
    movie_id: int
    score: float
    because_movie_id: int | None = None
    because_rating: float | None = None
    supporters: int = 0


def high_rating(catalog: Catalog) -> float:
    return catalog.scale.maximum - 1.0


@dataclass(frozen=True)
class UserList:
    items: list[Recommended]
    cold_start: bool  # not the champion's list: the API's popular list, or the fold-in's cold-start one
    model_name: str | None  # whose list it is (None: the API's popular list)
    updated_at: int | None  # µs


def for_user(catalog: Catalog, user_id: int, k: int) -> UserList:
    """The user's top-k. A user without a list gets the most popular unseen movies."""
    seen, _ = catalog.user_ratings(user_id)
    at = catalog.recommendations.span(user_id)
    if at is None:
        seen_set = set(seen.tolist())
        picked = [m for m in catalog.cold_start if int(m) not in seen_set][:k]
        rows = [catalog.movies.row(int(m)) for m in picked]
        return UserList([Recommended(int(m), float(catalog.movies.bayesian_rating[r])) for m, r in zip(picked, rows)],
                        True, None, None)
    values = catalog.recommendations.values
    movies, scores = values["movie_id"][at], values["score"][at]
    updated = int(values["updated_at"][at].max(initial=0)) or None
    model = catalog.list_models[int(values["model"][at][0])] if len(values["model"][at]) else ""
    fresh = ~np.isin(movies, seen)
    movies, scores = movies[fresh][:k], scores[fresh][:k]
    because = _reasons(catalog, user_id, movies)
    items = [Recommended(int(m), float(s), *because.get(int(m), (None, None))) for m, s in zip(movies, scores)]
    return UserList(items, model != catalog.model_name, model or None, updated)


def _reasons(catalog: Catalog, user_id: int, movies: np.ndarray) -> dict[int, tuple[int, float]]:
    """For each recommended movie, the user's highly rated movie closest to it."""
    rated, values = catalog.user_ratings(user_id)
    if not len(rated) or not len(movies):
        return {}
    liked = values >= min(high_rating(catalog), float(values.max()))  # their best if none is high
    rated, values = rated[liked], values[liked]
    known_rated, rated_vectors = catalog.item_vector(rated)
    known_recs, rec_vectors = catalog.item_vector(movies.astype(np.int64))
    if not len(rated_vectors) or not len(rec_vectors):
        return {}
    nearest = np.argmax(rec_vectors @ rated_vectors.T, axis=1)
    liked_ids, liked_values = rated[known_rated], values[known_rated]
    return {int(m): (int(liked_ids[j]), float(liked_values[j])) for m, j in zip(movies[known_recs], nearest)}


def by_title(catalog: Catalog, movie_id: int, k: int) -> tuple[list[Recommended], int]:
    """(people who liked movie_id also liked, number of users who liked it)."""
    raters, ratings = catalog.movie_raters(movie_id)
    fans = raters[ratings >= high_rating(catalog)]
    scores: dict[int, float] = {}
    support: dict[int, int] = {}

    def add(user: int, weight: float) -> None:
        at = catalog.recommendations.span(user)
        if at is None:
            return
        for rank, m in enumerate(catalog.recommendations.values["movie_id"][at], start=1):
            m = int(m)
            if m != movie_id:
                scores[m] = scores.get(m, 0.0) + weight / np.log2(rank + 1)
                support[m] = support.get(m, 0) + 1

    for user in fans:
        add(int(user), 1.0)
        at = catalog.neighbours.span(int(user))
        if at is not None:
            for v, sim in zip(catalog.neighbours.values["neighbour_id"][at], catalog.neighbours.values["similarity"][at]):
                add(int(v), float(sim) / 2)
    scores = {m: votes / np.sqrt(max(catalog.times_listed(m), 1)) for m, votes in scores.items()}
    ranked = sorted(scores, key=lambda m: (-round(scores[m], 9), -_count(catalog, m), m))[:k]
    return [Recommended(m, round(scores[m], 6), supporters=support[m]) for m in ranked], len(fans)


def _count(catalog: Catalog, movie_id: int) -> int:
    row = catalog.movies.row(movie_id)
    return int(catalog.movies.rating_count[row]) if row is not None else 0
