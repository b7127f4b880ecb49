"""The top-N ranking model: MLlib ALS on implicit feedback, every rating an interaction.

Confidence of an observed (user, movie) pair is 1 + alpha * value, where value is the rating
("rating") or 1 ("binary"); unobserved pairs have preference 0 (Hu, Koren & Volinsky 2008). A
movie's candidates are every movie the user has not rated; `popularity_weight` optionally adds a
popularity prior (share of the most-rated movie's count) to every score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ml.als import AlsParams, fit_als
from ml.top_n import popularity_top_n, top_n

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame

VALUES = ("binary", "rating")


@dataclass(frozen=True)
class RankingParams:
    als: AlsParams = AlsParams(rank=16, reg_param=0.15, max_iter=15, alpha=0.3)
    value: str = "rating"
    popularity_weight: float = 0.0

    def as_params(self) -> dict[str, object]:
        return {**self.als.as_params(), "ranking.value": self.value, "ranking.popularity_weight": self.popularity_weight}

    @classmethod
    def from_params(cls, params: dict) -> RankingParams:
        return cls(AlsParams.from_params(params), str(params["ranking.value"]), float(params["ranking.popularity_weight"]))

    def describe(self) -> str:
        a = self.als
        text = f"implicit_als rank={a.rank} reg={a.reg_param:g} alpha={a.alpha:g} iter={a.max_iter} value={self.value}"
        return text + (f" popularity={self.popularity_weight:g}" if self.popularity_weight else "")


class Recommender(Protocol):
    def recommend(self, users: DataFrame, exclude: DataFrame, n: int) -> DataFrame:
        """(user_id, movie_id, score, rank) for each user in `users`, pairs in `exclude` left out."""


@dataclass
class PopularityModel:
    """The baseline every ranking model must beat: the most-rated movies the user has not seen."""

    train: DataFrame

    def recommend(self, users: DataFrame, exclude: DataFrame, n: int) -> DataFrame:
        return popularity_top_n(self.train, users, exclude, n)


@dataclass
class RankingModel:
    als: ALSModel
    params: RankingParams
    popularity: DataFrame  # movie_id, offset

    def recommend(self, users: DataFrame, exclude: DataFrame, n: int) -> DataFrame:
        """(user_id, movie_id, score, rank) for each user in `users` (user_id), seen movies excluded."""
        from pyspark.sql import functions as F

        user_vectors = self.als.userFactors.select(F.col("id").alias("user_id"), F.col("features").alias("u_features"))
        user_vectors = user_vectors.join(users.select("user_id").distinct(), "user_id", "left_semi")
        item_vectors = self.als.itemFactors.select(F.col("id").alias("movie_id"), F.col("features").alias("i_features"))
        offset = self.popularity if self.params.popularity_weight else None
        return top_n(user_vectors, item_vectors, exclude, n, offset)


def fit_ranking(train: DataFrame, params: RankingParams) -> RankingModel:
    from pyspark.sql import functions as F

    if params.value not in VALUES:
        raise ValueError(f"ranking value {params.value!r}: expected one of {VALUES}")
    value = F.col("rating") if params.value == "rating" else F.lit(1.0)
    model = fit_als(train.withColumn("value", value.cast("double")), params.als, "value", implicit=True)
    counts = train.groupBy("movie_id").agg(F.count(F.lit(1)).alias("n"))
    top = counts.agg(F.max("n")).first()[0]
    popularity = counts.select("movie_id", (F.lit(params.popularity_weight) * F.col("n") / F.lit(float(top))).alias("offset"))
    return RankingModel(model, params, popularity.localCheckpoint())



