"""End to end on the real MovieLens 100K (when the shared copy is present): what `make run` does."""
from __future__ import annotations

from lakehouse.pipeline import run_pipeline
from tests.integration.conftest import count


def test_make_run_pipeline_on_ml_100k(spark, lakehouse_server, shared_ml_100k, capsys):
    from lakehouse.ingest.load import drop_bronze

    drop_bronze(spark)
    assert run_pipeline(lakehouse_server, "ml-100k", shared_ml_100k) == 0
    out = capsys.readouterr().out
    assert "every dbt test passed" in out and "read = loaded + quarantined" in out
    assert "Champions beside the baselines" in out
    assert count(spark, "bronze.ratings") == 100_000
    assert count(spark, "bronze.quarantine") == 0
    assert count(spark, "gold.ratings") == 100_000
    assert count(spark, "gold.users") == 943
    assert count(spark, "gold.movies") == 1682
    top = spark.table("gold.top_movies_by_count").orderBy("rank").first()
    assert top.title == "Star Wars" and top.rating_count == 583  # the best-known ml-100k fact

    # The recommender stages: champions registered, every ml table filled, the UI serving.
    import urllib.request

    import mlflow

    from lakehouse import mlflow_ui
    from ml import tracking

    client = tracking.configure(lakehouse_server)
    for name in (tracking.RATING_MODEL, tracking.RANKING_MODEL):
        assert client.get_model_version_by_alias(name, tracking.CHAMPION)
    champion = mlflow.search_runs(experiment_names=[tracking.EXPERIMENTS["rating"]], filter_string="tags.champion = 'true'")
    assert champion["metrics.rmse"].iloc[0] < 0.93  # plain ALS gets ~0.93 on a random 20% holdout
    for table in ("recommendations", "predictions", "user_factors", "item_factors", "similar_movies", "model_runs",
                  "user_similarity", "user_similarity_matrix", "user_communities", "community_summary"):
        assert count(spark, f"ml.{table}") > 0, table
    assert count(spark, "ml.recommendations") == 943 * 10
    with urllib.request.urlopen(mlflow_ui.url(lakehouse_server) + "/health", timeout=10) as response:
        assert response.status == 200
