"""Neighbourhood models on baseline residuals (the "KNNBaseline" of Koren 2008, section 2.2).

Item-based (`by="item"`):
    e_ui      = r_ui - baseline_ui                         (residual of the chosen baseline)
    sim(i, j) = shrunk Pearson correlation of residuals over the users who rated both:
                sum e_ui e_uj / sqrt(sum e_ui^2 * sum e_uj^2) * (n_ij - 1) / (n_ij - 1 + shrinkage)
    predict   = baseline_ui + sum_{j in N_k(i; u)} sim(i, j) e_uj / sum_{j in N_k(i; u)} sim(i, j)
N_k(i; u) are the k movies most similar to i (positive similarity only) among those u rated; with
no such neighbour the prediction is the baseline. User-based (`by="user"`) is the same with the
roles of users and movies swapped.

Cost: the similarity pass joins the ratings with themselves on the other key: sum over users of
n_u^2 pairs for items (about 13 million on an ml-100k fold), sum over movies of n_i^2 for users
(about 11 million), each computed once per fit with i < j and mirrored. Only the `keep` most
similar neighbours of each entity are kept, which bounds the prediction join.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from ml.baseline import Baseline


@dataclass(frozen=True)
class KnnParams:
    by: str = "item"  # item or user
    k: int = 40
    shrinkage: float = 100.0
    min_support: int = 2  # co-raters needed before a similarity counts
    keep: int = 200  # neighbours kept per movie

    @property
    def name(self) -> str:
        return f"{self.by}_knn"

    def as_params(self) -> dict[str, object]:
        return {f"{self.name}.{key}": value for key, value in asdict(self).items() if key != "by"}

    @classmethod
    def from_params(cls, params: dict, by: str) -> KnnParams:
        prefix = f"{by}_knn"
        fields = {k: type(getattr(cls(), k))(params[f"{prefix}.{k}"]) for k in asdict(cls()) if f"{prefix}.{k}" in params}
        return cls(by=by, **fields)


def _keys(by: str) -> tuple[str, str]:
    """(the entity whose neighbours are computed, the key two entities are co-rated on)."""
    return ("movie_id", "user_id") if by == "item" else ("user_id", "movie_id")


@dataclass
class FittedKnn:
    residuals: DataFrame  # user_id, movie_id, residual (training ratings)
    neighbours: DataFrame  # <entity>, neighbour_id, similarity
    params: KnnParams

    @property
    def name(self) -> str:
        return self.params.name

    def predict(self, scored: DataFrame) -> DataFrame:
        """`scored` (user_id, movie_id, baseline, ...) plus a column named after the model."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        entity, other = _keys(self.params.by)
        pairs = scored.select("user_id", "movie_id").distinct()
        # The residuals of the pair's `other` on the entity's neighbours: for an item model, the
        # user's residuals on the movies similar to this movie.
        rated = self.residuals.select(other, F.col(entity).alias("neighbour_id"), "residual")
        candidates = pairs.join(rated, other).join(self.neighbours, [entity, "neighbour_id"])
        top = candidates.withColumn(
            "_rank",
            F.row_number().over(Window.partitionBy("user_id", "movie_id").orderBy(F.desc("similarity"), "neighbour_id")),
        ).where(F.col("_rank") <= self.params.k)
        term = top.groupBy("user_id", "movie_id").agg(
            (F.sum(F.col("similarity") * F.col("residual")) / F.sum("similarity")).alias("_knn")
        )
        out = scored.join(term, ["user_id", "movie_id"], "left")
        return out.withColumn(self.name, F.col("baseline") + F.coalesce(F.col("_knn"), F.lit(0.0))).drop("_knn")


def fit_knn(baseline: Baseline, train: DataFrame, params: KnnParams) -> FittedKnn:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    entity, other = _keys(params.by)
    residuals = baseline.residuals(train).select("user_id", "movie_id", "residual").localCheckpoint()
    left = residuals.select(other, F.col(entity).alias("i"), F.col("residual").alias("e_i"))
    right = residuals.select(other, F.col(entity).alias("j"), F.col("residual").alias("e_j"))
    stats = (
        left.join(right, other)
        .where(F.col("i") < F.col("j"))
        .groupBy("i", "j")
        .agg(
            F.count(F.lit(1)).alias("support"),
            F.sum(F.col("e_i") * F.col("e_j")).alias("sum_ij"),
            F.sum(F.col("e_i") * F.col("e_i")).alias("sum_ii"),
            F.sum(F.col("e_j") * F.col("e_j")).alias("sum_jj"),
        )
        .where(F.col("support") >= params.min_support)
    )
    shrunk = (F.col("sum_ij") / F.sqrt(F.col("sum_ii") * F.col("sum_jj"))) * (
        (F.col("support") - 1) / (F.col("support") - 1 + F.lit(params.shrinkage))
    )
    similar = stats.select("i", "j", shrunk.alias("similarity")).where(F.col("similarity") > 0)
    both_ways = similar.select(F.col("i").alias(entity), F.col("j").alias("neighbour_id"), "similarity").unionByName(
        similar.select(F.col("j").alias(entity), F.col("i").alias("neighbour_id"), "similarity")
    )
    neighbours = (
        both_ways.withColumn("_rank", F.row_number().over(Window.partitionBy(entity).orderBy(F.desc("similarity"), "neighbour_id")))
        .where(F.col("_rank") <= params.keep)
        .drop("_rank")
        .localCheckpoint()
    )
    return FittedKnn(residuals, neighbours, params)
