"""Spark MLlib ALS, configured in one place for the explicit (rating) and implicit (ranking) models.

MLlib's ALS scales the regularisation by each user's and item's number of ratings (ALS-WR), has no
bias terms, and (with `coldStartStrategy="nan"`) predicts NaN for a user or movie it never saw: the
callers fill those from the baseline and count them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from lakehouse.session import manage_model

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class AlsParams:
    rank: int = 10
    reg_param: float = 0.1
    max_iter: int = 10
    alpha: float = 1.0  # implicit feedback only: confidence = 1 + alpha * value
    seed: int = 42

    def as_params(self, prefix: str = "als") -> dict[str, object]:
        return {f"{prefix}.{key}": value for key, value in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict, prefix: str = "als") -> AlsParams:
        """The inverse of `as_params` (extra keys ignored)."""
        return cls(**{k: type(getattr(cls(), k))(params[f"{prefix}.{k}"]) for k in asdict(cls()) if f"{prefix}.{k}" in params})


def fit_als(ratings: DataFrame, params: AlsParams, value_col: str, *, implicit: bool = False) -> ALSModel:
    """Fit ALS on (user_id, movie_id, value_col)."""
    from pyspark.ml.recommendation import ALS

    als = ALS(
        userCol="user_id",
        itemCol="movie_id",
        ratingCol=value_col,
        rank=params.rank,
        regParam=params.reg_param,
        maxIter=params.max_iter,
        alpha=params.alpha,
        implicitPrefs=implicit,
        seed=params.seed,
        coldStartStrategy="nan",
        # Long lineages overflow the stack past ~15 iterations; the server sets a checkpoint dir.
        checkpointInterval=5,
    )
    model = als.fit(ratings.select("user_id", "movie_id", value_col))
    # Released by the session's releaser (its thread, or `close_all` with a deadline at the end of
    # the command), never by pyspark's finalizer at interpreter exit: see lakehouse/session.py.
    return manage_model(model, ratings.sparkSession)


def predict_pairs(model: ALSModel, pairs: DataFrame, output: str) -> DataFrame:
    """`pairs` plus `output`: the ALS score, null where the user or movie was not in training."""
    from pyspark.sql import functions as F

    scored = model.transform(pairs)
    return scored.withColumn(output, F.when(F.isnan("prediction"), None).otherwise(F.col("prediction"))).drop("prediction")
