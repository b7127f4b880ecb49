"""`lakehouse train` on planted low-rank data: the models must learn the structure, MLflow must
hold the runs and the registered champions, and the `ml` tables must keep their invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

TABLE = "planted.ratings"
USERS, MOVIES, RANK = 240, 160, 3


def planted_ratings(seed: int = 7) -> pd.DataFrame:
    """Ratings drawn from a rank-3 model plus noise, and users choosing what to rate by the same
    taste: a model that learns the structure beats the global mean and the popularity list."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(USERS, RANK))
    movies = rng.normal(size=(MOVIES, RANK))
    rows = []
    for user in range(USERS):
        count = int(rng.integers(25, 60))
        taste = np.exp(1.5 * movies @ users[user])
        seen = rng.choice(MOVIES, size=count, replace=False, p=taste / taste.sum())
        for movie in seen:
            value = 3.2 + 0.9 * users[user] @ movies[movie] + rng.normal(scale=0.3)
            rows.append((user + 1, int(movie) + 1, float(np.clip(np.rint(value), 1, 5)), 880_000_000 + len(rows) * 60))
    frame = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "epoch"])
    frame["rated_at"] = pd.to_datetime(frame.pop("epoch"), unit="s")
    return frame


@pytest.fixture(scope="module")
def trained(spark, lakehouse_server):
    from lakehouse.cli import build_parser
    from lakehouse import delta
    from ml.train import run_training

    spark.sql("create schema if not exists planted")
    delta.replace(spark.createDataFrame(planted_ratings()), TABLE)
    args = build_parser().parse_args(["train", "--table", TABLE, "--grid", "quick"])
    return run_training(spark, lakehouse_server, args)


def test_rating_champion_beats_the_global_mean(trained, spark):
    from pyspark.sql import functions as F

    rating = trained.rating
    champion_rmse = rating.champion.mean("test", "rmse")
    predictions = spark.table("ml.predictions")
    global_mean = spark.table(TABLE).agg(F.avg("rating")).first()[0]
    mean_rmse = predictions.agg(F.sqrt(F.avg((F.col("rating") - global_mean) ** 2))).first()[0]
    assert champion_rmse < 0.8 * mean_rmse, (champion_rmse, mean_rmse)
    baseline = next(c for c in rating.candidates if c.family == "baseline")
    assert champion_rmse < baseline.mean("test", "rmse")
    # Every test rating is predicted and kept, cold-start rows included and counted.
    assert predictions.count() == rating.champion.test["holdout"]["test_rows"]
    assert predictions.where(F.col("prediction").isNull()).count() == 0
    cold = predictions.where("cold_start != 'none'").count()
    assert cold == rating.champion.test["holdout"]["cold_start_rows"]
    assert predictions.agg(F.min("prediction"), F.max("prediction")).first() >= (1.0, 1.0)


def test_ranking_champion_beats_popularity(trained):
    ranking = trained.ranking
    popularity = next(c for c in ranking.candidates if c.family == "popularity")
    assert ranking.champion.mean("test", "ndcg_at_10") > popularity.mean("test", "ndcg_at_10")
    for metric in ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10"):
        assert 0.0 < ranking.champion.mean("test", metric) <= 1.0


def test_mlflow_holds_every_run_and_the_registered_champions(trained, lakehouse_server):
    import mlflow

    from ml import tracking

    client = tracking.configure(lakehouse_server)
    sweep = trained.rating.parent_run_id
    every_run = mlflow.search_runs(experiment_names=[tracking.EXPERIMENTS["rating"]], output_format="list")
    # The session's store also holds other tests' runs: keep this sweep's (the parent and its children).
    rating_runs = [r for r in every_run if sweep in (r.info.run_id, r.data.tags.get("mlflow.parentRunId"))]
    names = {r.info.run_name for r in rating_runs}
    assert {c.name for c in trained.rating.candidates} <= names
    for run in rating_runs:
        assert "rmse" in run.data.metrics and "mae" in run.data.metrics, run.info.run_name
        assert run.data.tags["protocol"] == "holdout"
        assert run.data.tags["input.table"] == TABLE
        assert int(run.data.tags["input.rows"]) == len(planted_ratings())
        assert run.data.tags["table_format"] == "delta" and run.data.tags["input.version"].isdigit()
        assert run.data.tags["code_version"]
    for name in (tracking.RATING_MODEL, tracking.RANKING_MODEL):
        version = client.get_model_version_by_alias(name, tracking.CHAMPION)
        assert str(version.version) == trained.registered[name]


def test_reloaded_models_predict_like_spark(trained, spark, lakehouse_server):
    import mlflow

    from ml import tracking

    tracking.configure(lakehouse_server)
    pairs = spark.table(TABLE).select("user_id", "movie_id").limit(200)
    pairs = pairs.unionByName(spark.createDataFrame([(9999, 1), (1, 9999)], "user_id int, movie_id int"))  # cold start
    expected = trained.rating.serving.predict(pairs).select("user_id", "movie_id", "prediction").toPandas()
    model = mlflow.pyfunc.load_model(f"models:/{tracking.RATING_MODEL}@{tracking.CHAMPION}")
    got = model.predict(expected[["user_id", "movie_id"]])
    np.testing.assert_allclose(got.to_numpy(), expected["prediction"].to_numpy(), atol=1e-6)

    ranking = mlflow.pyfunc.load_model(f"models:/{tracking.RANKING_MODEL}@{tracking.CHAMPION}")
    local = ranking.predict(pd.DataFrame({"user_id": [1, 2]}), params={"n": 10})
    served = spark.table("ml.recommendations").where("user_id in (1, 2)").toPandas()
    assert sorted(zip(local.user_id, local.movie_id)) == sorted(zip(served.user_id, served.movie_id))


def test_ml_tables_keep_their_invariants(trained, spark):
    from pyspark.sql import functions as F

    recs = spark.table("ml.recommendations")
    users = spark.table(TABLE).select("user_id").distinct().count()
    assert recs.count() == users * 10
    assert recs.groupBy("user_id").agg(F.min("rank").alias("lo"), F.max("rank").alias("hi"), F.countDistinct("movie_id").alias("n")) \
        .where("lo != 1 or hi != 10 or n != 10").count() == 0
    seen = spark.table(TABLE).select("user_id", "movie_id")
    assert recs.join(seen, ["user_id", "movie_id"], "left_semi").count() == 0, "a recommendation of a movie already rated"
    assert recs.select("model_version").distinct().first()[0] == trained.registered["als-ranking"]

    factors = spark.table("ml.user_factors")
    assert {r[0] for r in factors.select("model_name").distinct().collect()} == {"als-rating", "als-ranking"}
    assert factors.where("model_name = 'als-rating' and bias is null").count() == 0
    similar = spark.table("ml.similar_movies")
    assert similar.where("movie_id = similar_movie_id").count() == 0
    assert similar.where("similarity < -1.0001 or similarity > 1.0001").count() == 0

    runs = spark.table("ml.model_runs")
    assert runs.where("is_champion").count() >= 2
    assert runs.where("experiment like '%rating%' and rmse is null").count() == 0
