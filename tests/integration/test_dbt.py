"""dbt on the server: `dbt build` turns bronze into gold, for both MovieLens layouts."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.dbt_runner import ML_NODES, PROJECT_DIR, run_dbt
from lakehouse import data_catalog, tables
from tests.integration.conftest import count, ingest


def gold(spark, name: str):
    spark.catalog.refreshTable(f"gold.{name}")  # dbt rewrote it from another session
    return spark.table(f"gold.{name}")


def assert_gold_invariants(spark) -> None:
    """What must hold for any dataset once dbt build passed."""
    n_ratings = count(spark, "gold.ratings")
    distinct_pairs = spark.table(tables.RATINGS.name).select("user_id", "movie_id").distinct().count()
    assert n_ratings == distinct_pairs  # latest rating wins per (user, movie), none lost
    assert count(spark, "gold.movies") == spark.table(tables.MOVIES.name).select("movie_id").distinct().count()
    raters = spark.table(tables.RATINGS.name).select("user_id")
    known = spark.table(tables.USERS.name).select("user_id")
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
    if dataset == "ml-100k":  # every model, seed, data test and unit test
        outcome = run_dbt(lakehouse_server, "build", "--exclude", ML_NODES)
    else:
        # The layouts differ only from bronze to staging: every model is built, and the data tests
        # run where the layout shows (staging). The marts' tests and dbt's unit tests (which run on
        # their own fixtures) are the ml-100k case's; the invariants below check the marts here.
        built = run_dbt(lakehouse_server, "build", "--exclude", ML_NODES, "--exclude-resource-type", "test",
                        "--exclude-resource-type", "unit_test")
        assert built.ok, built.failures
        outcome = run_dbt(lakehouse_server, "test", "--select", "staging", "--exclude", ML_NODES,
                          "--exclude-resource-type", "unit_test")
    assert outcome.ok, outcome.failures
    assert outcome.statuses.get("pass", 0) > 20 and not outcome.failures
    assert_gold_invariants(spark)
    # Every table dbt wrote (the seeds in silver, the marts in gold) is a Delta table.
    written = [f"{schema}.{t.name}" for schema in ("silver", "gold") for t in spark.catalog.listTables(schema)
               if t.tableType != "VIEW"]
    assert "gold.movies" in written and "silver.lookup_genres" in written
    for name in written:
        assert spark.sql(f"describe detail {name}").first()["format"] == "delta", name


def versions(spark, schema: str = "gold") -> dict[str, tuple[int, str]]:
    """Each table of `schema`: (its last Delta version, that commit's operation)."""
    tables_ = [t.name for t in spark.catalog.listTables(schema) if t.tableType != "VIEW"]
    return {name: tuple(spark.sql(f"describe history {schema}.{name} limit 1").select("version", "operation").first())
            for name in tables_}


SEEDS = ("lookup_age_bands", "lookup_genres", "lookup_occupations", "lookup_user_activity_buckets")


def test_second_dbt_build_adds_delta_versions(spark, lakehouse_server):
    before_rows = count(spark, "gold.ratings")
    before, seeds_before = versions(spark), versions(spark, "silver")
    seed_rows = {name: count(spark, f"silver.{name}") for name in SEEDS}
    # Seeds and models only: what a rebuild writes. The data tests passed on these rows just before.
    outcome = run_dbt(lakehouse_server, "build", "--exclude", ML_NODES,
                      "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test")
    assert outcome.ok, outcome.failures
    assert count(spark, "gold.ratings") == before_rows
    after, seeds_after = versions(spark), versions(spark, "silver")
    # A seed is reloaded in one commit on the same table (macros/seeds_in_one_commit.sql), not
    # dropped, created and filled: its history goes on and it never reads empty.
    for name in SEEDS:
        assert seeds_after[name] == (seeds_before[name][0] + 1, "CREATE OR REPLACE TABLE AS SELECT"), \
            (name, seeds_before[name], seeds_after[name])
        assert count(spark, f"silver.{name}") == seed_rows[name] > 0
        assert spark.sql(f"select count(*) from silver.{name} version as of {seeds_before[name][0]}").first()[0] \
            == seed_rows[name]
    # Each rebuilt mart got a new version of the same table (history kept), not a new table...
    assert after["movies"][0] == before["movies"][0] + 1 and after["movies"][1] == "CREATE OR REPLACE TABLE AS SELECT"
    rebuilt = ("users", "genres", "rating_distribution", "top_movies_by_count", "user_activity")
    assert all(after[name][0] == before[name][0] + 1 for name in rebuilt), (before, after)
    # ...while the incremental gold.ratings is never rebuilt: after its first build, only merges
    # (here with nothing new to merge, which Delta may commit as an empty MERGE or not at all).
    operations = [r.operation for r in spark.sql("describe history gold.ratings").collect()]  # newest first
    assert operations[-1].startswith("CREATE") and set(operations[:-1]) <= {"MERGE"}, operations
    assert after["ratings"][0] >= before["ratings"][0]
    assert spark.sql("select count(*) from gold.movies version as of 0").first()[0] > 0  # time travel


def test_docs_catalog_has_no_column_the_yaml_lacks(lakehouse_server):
    """`dbt docs generate` (what `make docs` runs) reads every built table's columns from Spark
    (catalog.json): each must be in the YAML with a class, and each listed column must exist, so a
    column a model selects cannot go undocumented. The ml tables are not built in this module."""
    outcome = run_dbt(lakehouse_server, "docs", "generate")
    assert outcome.ok, outcome.failures
    target = Path(os.environ["DBT_TARGET_PATH"])
    manifest, catalog = data_catalog.load(target / "manifest.json"), data_catalog.load(target / "catalog.json")
    assert not catalog.get("errors"), catalog["errors"]
    found = {**catalog["nodes"], **catalog["sources"]}
    project = "movielens_lakehouse"
    assert {f"model.{project}.users", f"model.{project}.ratings", f"model.{project}.stream_health",
            f"model.{project}.stg_movielens__users", f"seed.{project}.lookup_genres",
            f"source.{project}.movielens.ingest_log", f"source.{project}.stream.rating_events"} <= set(found)
    mismatches = data_catalog.column_mismatches(manifest, catalog)
    assert not mismatches, "\n".join(map(str, mismatches))
    assert not data_catalog.gaps(manifest)


PROBE_SCHEMA = "silver_not_null_probe"  # the profile's schema, silver, + the probe tests' `schema`


def test_not_null_columns_fails_naming_each_column_with_nulls(spark, lakehouse_server, tmp_path):
    """The generic test not_null_columns (data_tests/generic/) checks several columns in one query:
    on a table with nulls it fails with one row per column holding any, named and counted, and it
    passes on the columns without. Run in a throwaway project (the repository's profile and a copy
    of the test's file) over a three-row Delta table, in a schema of its own dropped afterwards."""
    project = tmp_path / "project"
    (project / "data_tests" / "generic").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "data_tests" / "generic" / "not_null_columns.sql", project / "data_tests" / "generic")
    (project / "dbt_project.yml").write_text(
        'name: not_null_probe\nversion: "1.0.0"\nprofile: movielens_lakehouse\ntest-paths: ["data_tests"]\n'
        "data_tests:\n  not_null_probe:\n    +store_failures: true\n    +schema: not_null_probe\n")
    (project / "models").mkdir()
    (project / "models" / "_probe__sources.yml").write_text(f"""version: 2
sources:
  - name: probe
    schema: {PROBE_SCHEMA}
    tables:
      - name: with_nulls
        data_tests:
          - not_null_columns:
              arguments:
                columns: [id, label, score]
          - not_null_columns:
              arguments:
                columns: [id]
""")
    try:
        spark.sql(f"create schema if not exists {PROBE_SCHEMA}")
        spark.sql(f"create or replace table {PROBE_SCHEMA}.with_nulls using delta as select * from values "
                  "(1, 'a', cast(null as int)), (2, null, null), (3, 'c', 3) as t(id, label, score)")
        outcome = run_dbt(lakehouse_server, "test", project_dir=project, target_dir=tmp_path / "target")
        assert outcome.returncode == 1 and outcome.statuses == {"fail": 1, "pass": 1}, outcome
        results = {r["unique_id"].split(".")[2]: r
                   for r in json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]}
        failed = results["source_not_null_columns_probe_with_nulls_id__label__score"]
        assert failed["status"] == "fail" and failed["failures"] == 2, failed
        # The failing rows dbt stored: each column with nulls, and how many rows have one there.
        stored = spark.sql(f"select column_name, null_rows from {failed['relation_name']}").collect()
        assert {tuple(row) for row in stored} == {("label", 1), ("score", 2)}
        assert results["source_not_null_columns_probe_with_nulls_id"]["status"] == "pass"
    finally:
        spark.sql(f"drop schema if exists {PROBE_SCHEMA} cascade")
