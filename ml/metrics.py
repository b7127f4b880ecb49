"""Evaluation metrics, computed as Spark aggregations (nothing is collected but the figures).

Rating prediction: RMSE and MAE over every test rating, cold-start rows included (they are
predicted by the baseline fallback) and counted separately.

Ranking, for each user with at least one test item, over that user's top-k list (k=10):
  precision@k = hits / k
  recall@k    = hits / |test items|
  NDCG@k      = sum over hits of 1/log2(rank+1), divided by the ideal DCG of min(k, |test|) hits
  MAP@k       = sum over hits of (hits so far / rank), divided by min(k, |test items|)
and the mean over those users (a user with no recommendation counts as all zeros).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def rating_metrics(predictions: DataFrame, label: str = "rating", prediction: str = "prediction") -> dict[str, float]:
    from pyspark.sql import functions as F

    error = F.col(prediction) - F.col(label)
    row = predictions.agg(
        F.sqrt(F.avg(error * error)).alias("rmse"),
        F.avg(F.abs(error)).alias("mae"),
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.isnull(F.col(prediction)).cast("int")).alias("missing"),
    ).first()
    if row["missing"]:
        raise ValueError(f"{row['missing']} test rows have no prediction; every row must be predicted")
    return {"rmse": float(row["rmse"]), "mae": float(row["mae"]), "test_rows": float(row["rows"])}


def ranking_metrics(recommendations: DataFrame, test: DataFrame, k: int = 10) -> dict[str, float]:
    """`recommendations`: (user_id, movie_id, rank starting at 1); `test`: (user_id, movie_id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    relevant = test.select("user_id", "movie_id").distinct()
    per_user_relevant = relevant.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_relevant"))
    hits = (
        recommendations.where(F.col("rank") <= k)
        .select("user_id", "movie_id", "rank")
        .join(relevant, ["user_id", "movie_id"], "left_semi")
        .withColumn("hits_so_far", F.row_number().over(Window.partitionBy("user_id").orderBy("rank")))
        .groupBy("user_id")
        .agg(
            F.count(F.lit(1)).alias("hits"),
            F.sum(1.0 / F.log2(F.col("rank") + 1.0)).alias("dcg"),
            F.sum(F.col("hits_so_far") / F.col("rank")).alias("precision_sum"),
        )
    )
    ideal_hits = F.least(F.lit(k), F.col("n_relevant"))
    idcg = F.aggregate(
        F.sequence(F.lit(1), ideal_hits), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1.0)
    )
    per_user = per_user_relevant.join(hits, "user_id", "left").fillna(0, ["hits", "dcg", "precision_sum"])
    row = per_user.agg(
        F.avg(F.col("hits") / k).alias("precision"),
        F.avg(F.col("hits") / F.col("n_relevant")).alias("recall"),
        F.avg(F.col("dcg") / idcg).alias("ndcg"),
        F.avg(F.col("precision_sum") / ideal_hits).alias("map"),
        F.count(F.lit(1)).alias("users"),
    ).first()
    return {
        f"precision_at_{k}": float(row["precision"]),
        f"recall_at_{k}": float(row["recall"]),
        f"ndcg_at_{k}": float(row["ndcg"]),
        f"map_at_{k}": float(row["map"]),
        "test_users": float(row["users"]),
    }
