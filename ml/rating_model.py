"""The rating-prediction model: a baseline, components stacked on its residuals, and a blend.

    baseline      mu + b_u + b_i                                   (ml.baseline)
    als           plain MLlib ALS on the ratings                   (comparison; blend member)
    als_residual  baseline + MLlib ALS fitted on r - baseline      (ml.als)
    item_knn      baseline + item-neighbourhood term on residuals  (ml.item_knn)
    prediction    blend of the components, clipped to the rating scale

Each component's column is a full rating prediction; where a component cannot score a pair (a
user or movie unseen in training) it falls back to the baseline, so every pair is predicted and
the cold-start rows are counted, never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ml.als import AlsParams, fit_als, predict_pairs
from ml.baseline import Baseline, fit_baseline
from ml.blend import Blend

if TYPE_CHECKING:
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import DataFrame


class FittedComponent(Protocol):
    name: str

    def predict(self, scored: DataFrame) -> DataFrame:
        """`scored` (with a `baseline` column) plus a column `name`: a rating prediction for every row."""


@dataclass
class FittedAls:
    name: str
    model: ALSModel
    on_residuals: bool

    def predict(self, scored: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        out = predict_pairs(self.model, scored, "_als")
        offset = F.col("baseline") if self.on_residuals else F.lit(0.0)
        fallback = F.col("baseline")
        return out.withColumn(self.name, F.coalesce(offset + F.col("_als"), fallback)).drop("_als")


def fit_als_component(baseline: Baseline, train: DataFrame, params: AlsParams, *, on_residuals: bool) -> FittedAls:
    if on_residuals:
        return FittedAls("als_residual", fit_als(baseline.residuals(train), params, "residual"), True)
    return FittedAls("als", fit_als(train, params, "rating"), False)


@dataclass
class RatingModel:
    baseline: Baseline
    components: list[FittedComponent] = field(default_factory=list)
    blend: Blend | None = None
    scale: tuple[float, float] = (1.0, 5.0)

    def predict(self, pairs: DataFrame) -> DataFrame:
        """`pairs` plus `baseline`, one column per component, and the clipped `prediction`."""
        from pyspark.sql import functions as F

        scored = self.baseline.predict(pairs)
        for component in self.components:
            scored = component.predict(scored)
        raw = self.blend.expression() if self.blend else F.col(self.components[-1].name if self.components else "baseline")
        low, high = self.scale
        return scored.withColumn("prediction", F.least(F.greatest(raw, F.lit(low)), F.lit(high)))


def rating_scale(train: DataFrame) -> tuple[float, float]:
    from pyspark.sql import functions as F

    row = train.agg(F.min("rating"), F.max("rating")).first()
    return float(row[0]), float(row[1])


def with_cold_start(test: DataFrame, train: DataFrame) -> DataFrame:
    """`test` plus `cold_start`: none, user, movie or both (unseen in `train`)."""
    from pyspark.sql import functions as F

    users = train.select("user_id").distinct().withColumn("_known_user", F.lit(True))
    movies = train.select("movie_id").distinct().withColumn("_known_movie", F.lit(True))
    marked = test.join(users, "user_id", "left").join(movies, "movie_id", "left")
    user_cold, movie_cold = F.col("_known_user").isNull(), F.col("_known_movie").isNull()
    return marked.withColumn(
        "cold_start",
        F.when(user_cold & movie_cold, "both").when(user_cold, "user").when(movie_cold, "movie").otherwise("none"),
    ).drop("_known_user", "_known_movie")


__all__ = ["RatingModel", "fit_baseline", "fit_als_component", "rating_scale", "with_cold_start"]
