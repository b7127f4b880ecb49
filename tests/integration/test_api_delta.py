"""The API's Delta reader (api/delta_tables.py, delta-rs, no JVM) on tables the Spark server
writes: deletion vectors after a DELETE and a MERGE, checkpoints, the version of every commit;
and api/catalog.py loading a lakehouse that Spark and dbt built."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from api import catalog, delta_tables
from lakehouse import tables
from tests.integration.conftest import fresh

pytestmark = pytest.mark.integration

TABLE = "apidelta.events"
COLUMNS = ("id", "name", "score")


def history_version(spark, name: str) -> int:
    return spark.sql(f"describe history {name}").agg(F.max("version")).first()[0]


def spark_rows(spark, name: str) -> list[tuple]:
    return sorted(tuple(r) for r in fresh(spark, name).select(*COLUMNS).collect())


def api_rows(read: delta_tables.TableRead) -> list[tuple]:
    data = read.data.to_pydict()
    return sorted(zip(*(data[c] for c in COLUMNS)))


def check_reads_like_spark(spark, warehouse, name: str) -> delta_tables.TableRead:
    """delta-rs reads what Spark reads, at Spark's newest version, which latest_version sees."""
    version = history_version(spark, name)
    assert delta_tables.latest_version(delta_tables.table_path(warehouse, name)) == version
    read = delta_tables.read(warehouse, name, COLUMNS)
    assert read is not None and read.name == name and read.version == version
    assert api_rows(read) == spark_rows(spark, name)
    return read


@pytest.fixture()
def dv_table(spark, lakehouse_server):
    spark.sql("create schema if not exists apidelta")
    spark.sql(f"drop table if exists {TABLE}")
    # A checkpoint every 3 commits: latest_version must see them and delta-rs read from them.
    spark.sql(f"""create table {TABLE} (id int, name string, score double) using delta
                  tblproperties ('delta.enableDeletionVectors' = 'true', 'delta.checkpointInterval' = '3')""")
    yield TABLE
    spark.sql(f"drop table if exists {TABLE}")
    # The MERGE's source is a temporary view of the shared session, which every later
    # listTables() would list in every schema (test_dbt describes each table it lists).
    spark.catalog.dropTempView("apidelta_updates")


def test_deletion_vectors_after_delete_and_merge_are_applied(spark, lakehouse_server, dv_table):
    warehouse = lakehouse_server.warehouse_dir
    path = delta_tables.table_path(warehouse, dv_table)
    # Spark's managed table lives where table_path says.
    location = spark.sql(f"describe detail {dv_table}").first().location
    assert location.rstrip("/").endswith(str(path)), (location, path)
    assert delta_tables.latest_version(path) == 0
    empty = delta_tables.read(warehouse, dv_table, COLUMNS)
    assert empty.version == 0 and empty.data.num_rows == 0

    rows = [(i, f"movie {i}", i / 10) for i in range(1, 301)]
    spark.createDataFrame(rows, "id int, name string, score double").coalesce(1).write.format("delta") \
        .mode("append").saveAsTable(dv_table)  # one file: a DELETE then marks rows rather than dropping files
    check_reads_like_spark(spark, warehouse, dv_table)

    spark.sql(f"delete from {dv_table} where id % 3 = 0")
    history = spark.sql(f"describe history {dv_table}").orderBy(F.desc("version")).first()
    assert history.operation == "DELETE"
    assert int(history.operationMetrics["numDeletionVectorsAdded"]) > 0, history.operationMetrics  # not a rewrite
    read = check_reads_like_spark(spark, warehouse, dv_table)
    assert read.data.num_rows == 200 and not any(i % 3 == 0 for i in read.data.column("id").to_pylist())

    spark.createDataFrame([(i, f"merged {i}", -1.0) for i in range(290, 311)], "id int, name string, score double") \
        .createOrReplaceTempView("apidelta_updates")
    spark.sql(f"""merge into {dv_table} t using apidelta_updates s on t.id = s.id
                  when matched and s.id % 2 = 0 then delete
                  when matched then update set name = s.name, score = s.score
                  when not matched then insert *""")
    history = spark.sql(f"describe history {dv_table}").orderBy(F.desc("version")).first()
    assert history.operation == "MERGE"
    assert int(history.operationMetrics.get("numTargetDeletionVectorsAdded", "0")) > 0, history.operationMetrics
    read = check_reads_like_spark(spark, warehouse, dv_table)
    kept = {i for i in range(1, 301) if i % 3}
    merged = {i for i in range(290, 311) if i not in kept or i % 2}  # matched and even: deleted
    assert set(read.data.column("id").to_pylist()) == (kept - set(range(290, 311))) | merged
    updated = {i: n for i, n in zip(read.data.column("id").to_pylist(), read.data.column("name").to_pylist())}
    assert updated[291] == "merged 291" and updated[289] == "movie 289" and updated[300] == "merged 300"

    # More commits, across checkpoints: the version follows each one.
    assert any(p.name.endswith(".checkpoint.parquet") for p in (path / "_delta_log").iterdir())
    for n in range(4):
        before = delta_tables.latest_version(path)
        spark.sql(f"insert into {dv_table} values ({1000 + n}, 'late {n}', {n}.5)")
        assert delta_tables.latest_version(path) == before + 1
    spark.sql(f"delete from {dv_table} where id = 1001")
    read = check_reads_like_spark(spark, warehouse, dv_table)
    ids = set(read.data.column("id").to_pylist())
    assert {1000, 1002, 1003} <= ids and 1001 not in ids


def test_a_missing_table_has_no_version_and_no_read(lakehouse_server):
    warehouse = lakehouse_server.warehouse_dir
    assert delta_tables.latest_version(delta_tables.table_path(warehouse, "apidelta.nothing_here")) is None
    assert delta_tables.read(warehouse, "apidelta.nothing_here", COLUMNS) is None


def test_the_catalog_loads_a_built_lakehouse(spark, served_lakehouse):
    warehouse = served_lakehouse.warehouse_dir
    versions = catalog.current_versions(warehouse)
    assert {t.name for t in catalog.REQUIRED} <= set(versions)
    for name, version in versions.items():
        assert version == history_version(spark, name), name

    loaded = catalog.load(warehouse)
    assert loaded.versions == {name: v for name, v in versions.items() if name in loaded.versions}
    assert set(loaded.versions) == set(versions)  # every served table that exists was read
    assert len(loaded.movies.ids) == fresh(spark, tables.GOLD_MOVIES.name).count()
    movie = fresh(spark, tables.GOLD_MOVIES.name).orderBy("movie_id").first()
    row = loaded.movies.row(movie.movie_id)
    assert loaded.movies.titles[row] == movie.title and list(loaded.movies.genres[row]) == list(movie.genres or [])
    # A user's ratings: gold's, and the stream's that dbt has not merged yet.
    user = fresh(spark, tables.GOLD_RATINGS.name).agg(F.min("user_id")).first()[0]
    rated = {r.movie_id for table in (tables.GOLD_RATINGS, tables.RATING_EVENTS)
             for r in fresh(spark, table.name).where(F.col("user_id") == user).select("movie_id").collect()}
    movie_ids, values = loaded.user_ratings(user)
    assert sorted(movie_ids.tolist()) == sorted(rated) and len(values) == len(rated)
    recommendations = fresh(spark, tables.RECOMMENDATIONS.name)
    assert len(loaded.recommendations) == recommendations.select("user_id").distinct().count()
    assert int(loaded.recommendations.starts[-1]) == recommendations.count()
    assert loaded.model_name == "als-ranking" and loaded.model_version and loaded.run_id
    assert len(loaded.item_ids) > 0 and loaded.item_vectors.shape[0] == len(loaded.item_ids)
    assert loaded.scale.maximum == 5.0 and loaded.scale.step == 1.0  # the synthetic set is ml-100k shaped
    assert set(loaded.known_movies.tolist()) == {r.movie_id for r in fresh(spark, tables.MOVIES.name).collect()}
    assert loaded.updated_at is not None and loaded.index.search(loaded.movies.titles[0])

    # Loaded again with nothing changed: the search index is reused.
    again = catalog.load(warehouse, loaded)
    assert again.index is loaded.index and again.versions == loaded.versions
