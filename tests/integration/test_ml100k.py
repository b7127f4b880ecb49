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
    assert count(spark, "bronze.ratings") == 100_000
    assert count(spark, "bronze.quarantine") == 0
    assert count(spark, "gold.ratings") == 100_000
    assert count(spark, "gold.users") == 943
    assert count(spark, "gold.movies") == 1682
    top = spark.table("gold.top_movies_by_count").orderBy("rank").first()
    assert top.title == "Star Wars" and top.rating_count == 583  # the best-known ml-100k fact
