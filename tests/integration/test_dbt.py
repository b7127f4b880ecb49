"""dbt on the server: `dbt build` turns bronze into gold, for both MovieLens layouts."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from lakehouse.dbt_runner import ML_NODES, run_dbt
from lakehouse.ingest import bronze
from tests.integration.conftest import count, ingest


def gold(spark, name: str):
    spark.catalog.refreshTable(f"gold.{name}")  # dbt rewrote it from another session
    return spark.table(f"gold.{name}")


def assert_gold_invariants(spark) -> None:
    """What must hold for any dataset once dbt build passed."""
    n_ratings = count(spark, "gold.ratings")
    distinct_pairs = spark.table(bronze.RATINGS).select("user_id", "movie_id").distinct().count()
    assert n_ratings == distinct_pairs  # latest rating wins per (user, movie), none lost
    assert count(spark, "gold.movies") == spark.table(bronze.MOVIES).select("movie_id").distinct().count()
    raters = spark.table(bronze.RATINGS).select("user_id")
    known = spark.table(bronze.USERS).select("user_id")
    assert count(spark, "gold.users") == raters.union(known).distinct().count()
    histogram = gold(spark, "rating_distribution").agg(F.sum("rating_count")).first()[0]
    assert histogram == n_ratings
    volume = {r.grain: r.n for r in gold(spark, "rating_volume_over_time").groupBy("grain").agg(F.sum("rating_count").alias("n")).collect()}
    assert volume == {"day": n_ratings, "week": n_ratings, "month": n_ratings}
    stats = gold(spark, "movies").where("rating_count > 0").agg(
        F.min("bayesian_rating"), F.max("bayesian_rating"), F.sum("rating_count")
    ).first()
    assert 0.5 <= stats[0] <= stats[1] <= 5.0
    assert stats[2] == n_ratings
    assert count(spark, "gold.top_movies_by_count") == 10
    assert "zip_code" not in gold(spark, "users").columns


def test_dbt_debug_connects_over_thrift(lakehouse_server):
    assert run_dbt(lakehouse_server, "debug").ok


@pytest.mark.parametrize(
    ("dataset", "layout_fixture"),
    [("ml-latest-small", "synthetic_latest_layout"), ("ml-100k", "synthetic_100k_layout")],
)
def test_dbt_build_on_synthetic_data(spark, lakehouse_server, dataset, layout_fixture, request):
    ingest(spark, lakehouse_server, dataset, request.getfixturevalue(layout_fixture), replace=True)
    # The ml marts need the recommender jobs' tables: test_ml100k builds them after `make run`'s jobs.
    outcome = run_dbt(lakehouse_server, "build", "--exclude", ML_NODES)
    assert outcome.ok, outcome.failures
    assert outcome.statuses.get("pass", 0) > 20 and not outcome.failures
    assert_gold_invariants(spark)
    # Every table dbt wrote uses the format the server resolved.
    detail = {r.col_name: r.data_type for r in spark.sql("describe table extended gold.movies").collect()}
    assert detail["Provider"] == spark.conf.get("spark.lakehouse.tableFormat")


def test_second_dbt_build_is_clean(spark, lakehouse_server):
    before = count(spark, "gold.ratings")
    outcome = run_dbt(lakehouse_server, "build", "--exclude", ML_NODES)
    assert outcome.ok, outcome.failures
    assert count(spark, "gold.ratings") == before
