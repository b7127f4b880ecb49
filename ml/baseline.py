"""Baseline predictor: global mean + regularised user and item biases.

    r_ui ~ mu + b_u + b_i,   fitted by alternating ridge steps (Koren 2008, section 2.1):
    b_i = sum_u (r_ui - mu - b_u) / (damping_item + n_i),  b_u = sum_i (r_ui - mu - b_i) / (damping_user + n_u)

The damping shrinks the bias of a user or movie with few ratings towards zero. Unknown users and
movies get a bias of zero, so the baseline predicts every pair: it is the cold-start fallback of
every model built on top of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass
class Baseline:
    global_mean: float
    user_bias: DataFrame  # user_id, user_bias, user_support (ratings in training)
    item_bias: DataFrame  # movie_id, item_bias, item_support
    damping_user: float
    damping_item: float

    def predict(self, pairs: DataFrame, output: str = "baseline") -> DataFrame:
        """`pairs` plus biases, supports and `output` (every row predicted; unknown: bias 0, support 0)."""
        from pyspark.sql import functions as F

        with_biases = pairs.join(self.user_bias, "user_id", "left").join(self.item_bias, "movie_id", "left")
        with_biases = with_biases.fillna(0.0, ["user_bias", "item_bias"]).fillna(0, ["user_support", "item_support"])
        return with_biases.withColumn(output, F.lit(self.global_mean) + F.col("user_bias") + F.col("item_bias"))

    def residuals(self, ratings: DataFrame) -> DataFrame:
        """Ratings with `residual` = rating - baseline: what the models stacked on the baseline fit."""
        from pyspark.sql import functions as F

        return self.predict(ratings).withColumn("residual", F.col("rating") - F.col("baseline"))


def fit_baseline(train: DataFrame, damping_user: float = 5.0, damping_item: float = 2.0, iterations: int = 5) -> Baseline:
    from pyspark.sql import functions as F

    mu = float(train.agg(F.avg("rating")).first()[0])
    spark = train.sparkSession
    user_bias = spark.createDataFrame([], "user_id int, user_bias double, user_support bigint")
    item_bias = None
    for _ in range(iterations):
        item_bias = (
            train.join(user_bias.select("user_id", "user_bias"), "user_id", "left")
            .groupBy("movie_id")
            .agg(
                (F.sum(F.col("rating") - mu - F.coalesce(F.col("user_bias"), F.lit(0.0))) / (F.count(F.lit(1)) + damping_item)).alias("item_bias"),
                F.count(F.lit(1)).alias("item_support"),
            )
            .localCheckpoint()  # cut the lineage: each step would otherwise replay all earlier ones
        )
        user_bias = (
            train.join(item_bias.select("movie_id", "item_bias"), "movie_id")
            .groupBy("user_id")
            .agg(
                (F.sum(F.col("rating") - mu - F.col("item_bias")) / (F.count(F.lit(1)) + damping_user)).alias("user_bias"),
                F.count(F.lit(1)).alias("user_support"),
            )
            .localCheckpoint()
        )
    return Baseline(mu, user_bias, item_bias, damping_user, damping_item)


def fit_mean_of_means(train: DataFrame) -> Baseline:
    """The seed projects' predictor, (user mean + movie mean) / 2, as a Baseline for comparison:
    mu + (mean_u - mu) / 2 + (mean_i - mu) / 2, with an unknown user's or movie's mean taken as mu."""
    from pyspark.sql import functions as F

    mu = float(train.agg(F.avg("rating")).first()[0])

    def half_offsets(key: str, name: str) -> DataFrame:
        return train.groupBy(key).agg(
            ((F.avg("rating") - mu) / 2).alias(name), F.count(F.lit(1)).alias(name.replace("bias", "support"))
        ).localCheckpoint()

    return Baseline(mu, half_offsets("user_id", "user_bias"), half_offsets("movie_id", "item_bias"), 0.0, 0.0)
