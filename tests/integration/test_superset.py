"""Superset against the test lakehouse: every mart the dashboards read, as `make run`'s pipeline
built it on ml-100k (test_ml100k, run just before), or else built here on synthetic data (dbt, the
recommender jobs, a short stream); the bundle is imported, every chart's data endpoint
must return rows, importing is idempotent, and headless Chromium must render every dashboard
without an error panel (screenshots in test-artifacts/superset/)."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from lakehouse.dbt_runner import ML_NODES, run_dbt
from lakehouse.superset import bundle, service
from tests.integration.conftest import ingest, pipeline_lakehouse
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = REPO / "test-artifacts" / "superset"
STREAMED = 240  # ratings replayed through the stream (4 files of 60)


def streamed_lines(spark) -> int:
    """Input lines the stream has committed (accepted or quarantined), from its ledger."""
    from pyspark.sql import functions as F

    from lakehouse import tables

    if not spark.catalog.tableExists(tables.STREAM_BATCHES.name):
        return 0
    spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
    return spark.table(tables.STREAM_BATCHES.name).agg(F.sum("rows_read")).first()[0] or 0


@pytest.fixture(scope="module")
def marts(spark, lakehouse_server, synthetic_100k_layout, tmp_path_factory):
    """Every mart of superset/dashboards.yml: the ones `make run`'s pipeline built on ml-100k in
    test_ml100k just before, or else on synthetic data, built the way `make run` builds them."""
    from lakehouse.cli import build_parser
    from lakehouse.stream import job, replay
    from ml.similarity_job import run_similarity
    from ml.train import run_training

    if (prepared := pipeline_lakehouse(lakehouse_server)) is not None:
        print("the marts of test_ml100k's `make run` pipeline on ml-100k")
        return prepared
    settings = dataclasses.replace(lakehouse_server, stream_dir=tmp_path_factory.mktemp("superset-landing"),
                                   stream_trigger_seconds=1.0)
    ingest(spark, settings, "ml-100k", synthetic_100k_layout, replace=True)
    # The marts only: their data tests are test_dbt's (the same models on the same synthetic data).
    outcome = run_dbt(settings, "build", "--exclude", ML_NODES, "--exclude-resource-type", "test",
                      "--exclude-resource-type", "unit_test")
    assert outcome.ok, outcome.failures
    run_training(spark, settings, build_parser().parse_args(["train", "--grid", "quick"]))
    run_similarity(spark, settings, build_parser().parse_args(["similarity", "--vectors", "factors", "--k", "5"]))
    # The live marts are views over the stream's tables: a few files through the real stream.
    job.stop(settings)
    shutil.rmtree(settings.stream_checkpoint, ignore_errors=True)  # an earlier test's stream read another folder
    job.detach(settings, fold_in=False)
    try:
        users, movies = replay.known_ids(settings, spark)
        replay.replay(settings, source=replay.synthetic_ratings(users, movies, seed=5), limit=STREAMED,
                      rows_per_file=60, rate=0, burst=False)
        wait_for(lambda: streamed_lines(spark) >= STREAMED, 240, "the stream to commit the ratings", step=2.0)
    finally:
        job.stop(settings)
    outcome = run_dbt(settings, "build", "--select", ML_NODES)
    assert outcome.ok, outcome.failures
    return settings


@pytest.fixture(scope="module")
def superset(marts):
    provisioned = service.provision(marts, say=print)
    yield provisioned
    assert service.down(marts)
    assert not service.healthy(marts)


@pytest.fixture(scope="module")
def api(marts, superset):
    """A REST session as the admin: JWT for the API; GET endpoints need no CSRF token."""
    session = requests.Session()
    response = session.post(f"{service.url(marts)}/api/v1/security/login", timeout=60, json={
        "username": service.ADMIN_USER, "password": superset.up.credentials.admin_password, "provider": "db"})
    response.raise_for_status()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    yield lambda path, **params: session.get(f"{service.url(marts)}/api/v1/{path}", timeout=180, params=params)
    session.close()


def spec_chart_count() -> int:
    return len(bundle.all_charts(bundle.load_spec()))


def test_superset_is_local_with_generated_secrets(marts, superset):
    creds = superset.up.credentials
    assert creds.path == marts.superset_env_file and creds.path.exists()
    assert creds.admin_password != "admin" and len(creds.secret_key) >= 32
    assert service.healthy(marts)
    assert "127.0.0.1" in service.url(marts)
    assert (marts.superset_dir / "superset.db").exists()  # SQLite metadata under the data directory
    assert superset.imported.skipped == []  # every mart exists


def test_tables_and_columns_listed_with_their_real_names(api):
    (database,) = [d for d in api("database/").json()["result"] if d["database_name"] == "Lakehouse (Spark Thrift)"]
    tables = api(f"database/{database['id']}/tables/", q="(force:!t,schema_name:gold)").json()["result"]
    names = {t["value"]: t["type"] for t in tables}
    assert "gold" not in names  # PyHive's own dialect lists the schema name once per table
    assert names["movies"] == "table" and names["streamed_ratings_per_minute"] == "view"
    metadata = api(f"database/{database['id']}/table_metadata/", name="movies", schema="gold").json()
    columns = {c["column_name"] if "column_name" in c else c["name"] for c in metadata["columns"]}
    assert {"movie_id", "title", "rating_count", "bayesian_rating"} <= columns


def test_every_chart_returns_rows(api):
    charts = api("chart/", q="(page_size:100)").json()["result"]
    assert len(charts) == spec_chart_count()
    failures = []
    for chart in charts:
        response = api(f"chart/{chart['id']}/data/")
        body = response.json()
        if response.status_code != 200:
            failures.append(f"{chart['slice_name']}: HTTP {response.status_code} {str(body)[:300]}")
            continue
        result = body["result"][0]
        if result.get("error") or not result.get("rowcount"):
            failures.append(f"{chart['slice_name']}: {result.get('error') or 'no rows'}")
    assert not failures, "\n".join(failures)


def test_recommendations_dashboard_has_the_user_and_movie_filters(api):
    dashboard = api("dashboard/recommendations").json()["result"]
    user, movie = json.loads(dashboard["json_metadata"])["native_filter_configuration"]
    assert user["filterType"] == "filter_select" and user["targets"][0]["column"] == {"name": "user_id"}
    assert movie["targets"][0]["column"] == {"name": "title"}
    for native in (user, movie):
        assert isinstance(native["targets"][0]["datasetId"], int)
        assert len(native["chartsInScope"]) == 1  # its own chart, by its imported id
        assert native["defaultDataMask"]["filterState"]["value"]  # applied on load


def _login(settings, username: str, password: str) -> requests.Session:
    """A REST session as `username`: its JWT, and the CSRF token Superset wants on a POST."""
    session = requests.Session()
    response = session.post(f"{service.url(settings)}/api/v1/security/login", timeout=60, json={
        "username": username, "password": password, "provider": "db"})
    response.raise_for_status()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    csrf = session.get(f"{service.url(settings)}/api/v1/security/csrf_token/", timeout=60)
    csrf.raise_for_status()
    session.headers["X-CSRFToken"] = csrf.json()["result"]
    session.headers["Referer"] = service.url(settings)
    return session


def test_the_analyst_opens_the_gold_dashboards_and_cannot_query_bronze(marts, superset, api):
    """The "Analyst" role (superset/provision.py): every dashboard and chart of the gold marts, no
    SQL Lab, no dataset outside gold. Each refusal is checked beside the admin's success with the
    same request, so a 403 means the permission, not a malformed call."""
    base = f"{service.url(marts)}/api/v1"
    creds = superset.up.credentials
    analyst = _login(marts, service.ANALYST_USER, creds.analyst_password)
    admin = _login(marts, service.ADMIN_USER, creds.admin_password)
    try:
        boards = analyst.get(f"{base}/dashboard/", params={"q": "(page_size:100)"}, timeout=60).json()["result"]
        assert {b["slug"] for b in boards} == {slug for _, _, slug in bundle.spec_dashboards(bundle.load_spec())}
        charts = analyst.get(f"{base}/chart/", params={"q": "(page_size:100)"}, timeout=60).json()["result"]
        assert len(charts) == spec_chart_count()
        for chart in charts[:3]:
            assert analyst.get(f"{base}/chart/{chart['id']}/data/", timeout=180).status_code == 200, chart["slice_name"]
        datasets = analyst.get(f"{base}/dataset/", params={"q": "(page_size:100)"}, timeout=60).json()["result"]
        assert datasets and {d["schema"] for d in datasets} == {"gold"}

        (database,) = [d for d in admin.get(f"{base}/database/", timeout=60).json()["result"]
                       if d["database_name"] == "Lakehouse (Spark Thrift)"]
        query = {"database_id": database["id"], "sql": "select count(*) as n from bronze.ratings",
                 "runAsync": False, "schema": "bronze", "tab": "check"}
        as_admin = admin.post(f"{base}/sqllab/execute/", json=query, timeout=300)
        assert as_admin.status_code == 200, as_admin.text[:500]
        as_analyst = analyst.post(f"{base}/sqllab/execute/", json=query, timeout=300)
        assert as_analyst.status_code in (401, 403), as_analyst.text[:500]

        # A dataset on bronze, made by the admin: the analyst can neither see it nor query it.
        # (bronze.ingest_log: Superset's SQLite metadata keeps table names unique across schemas,
        # and gold has a `ratings`.)
        created = admin.post(f"{base}/dataset/", json={"database": database["id"], "schema": "bronze",
                                                       "table_name": "ingest_log"}, timeout=120)
        assert created.status_code == 201, created.text[:500]
        dataset_id = created.json()["id"]
        try:
            body = {"datasource": {"id": dataset_id, "type": "table"},
                    "queries": [{"metrics": [{"expressionType": "SQL", "sqlExpression": "count(*)", "label": "n"}],
                                 "columns": [], "row_limit": 1}], "result_format": "json", "result_type": "full"}
            assert admin.post(f"{base}/chart/data", json=body, timeout=300).status_code == 200
            assert analyst.post(f"{base}/chart/data", json=body, timeout=300).status_code in (403, 404)
            assert analyst.get(f"{base}/dataset/{dataset_id}", timeout=60).status_code in (403, 404)
        finally:
            assert admin.delete(f"{base}/dataset/{dataset_id}", timeout=60).status_code == 200
    finally:
        analyst.close()
        admin.close()


def test_import_is_idempotent_and_applies_edits(marts, api, tmp_path):
    def objects():
        charts = {c["id"]: c["slice_name"] for c in api("chart/", q="(page_size:100)").json()["result"]}
        dashboards = {d["id"] for d in api("dashboard/", q="(page_size:100)").json()["result"]}
        datasets = {d["id"] for d in api("dataset/", q="(page_size:100)").json()["result"]}
        return charts, dashboards, datasets

    before = objects()
    service.import_dashboards(marts)
    assert objects() == before  # the same objects, nothing added

    spec = yaml.safe_load(bundle.SPEC_FILE.read_text())
    spec["dashboards"]["catalogue"]["charts"]["rating_distribution"]["title"] = "Ratings by star (edited)"
    edited = tmp_path / "dashboards.yml"
    edited.write_text(yaml.safe_dump(spec, sort_keys=False))
    service.import_dashboards(marts, spec_file=edited)
    charts, dashboards, datasets = objects()
    assert (set(charts), dashboards, datasets) == (set(before[0]), before[1], before[2])
    assert "Ratings by star (edited)" in charts.values() and "Rating distribution" not in charts.values()
    service.import_dashboards(marts)  # back to the spec in the repository
    assert objects() == before


def test_dashboards_render_in_headless_chromium(marts, superset):
    if not service.CHROMIUM.exists():
        pytest.skip(f"{service.CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    report = service.check_dashboards(marts, ARTIFACTS)
    spec = bundle.load_spec()
    assert [d["slug"] for d in report.dashboards] == [s for _k, _t, s in bundle.spec_dashboards(spec)]
    for result, board in zip(report.dashboards, spec["dashboards"].values()):
        assert result["errors"] == [], result
        assert result["charts"] == len(board["charts"]), result
        assert result["rendered"] == result["charts"], result
        assert result["empty"] == [], result
        assert Path(result["screenshot"]).stat().st_size > 20_000


def test_dialect_inlines_quotes_as_spark_reads_them(superset):
    """Superset inlines filter values; the ANSI doubled quote is two concatenated literals to
    Spark, so the plugin's dialect escapes with backslashes (a title like 'Til There Was You)."""
    script = (
        "import sqlalchemy as sa\n"
        "from lakehouse_superset.dialect import SparkSqlDialect\n"
        "t = sa.table('movies', sa.column('title', sa.String()))\n"
        "q = sa.select(t.c.title).where(t.c.title.in_([\"'Til There Was You\", 'a\\\\b']))\n"
        "print(q.compile(dialect=SparkSqlDialect(), compile_kwargs={'literal_binds': True}))\n"
    )
    out = subprocess.run([str(service.venv_bin("python")), "-c", script], capture_output=True, text=True, check=True).stdout
    assert "IN ('\\'Til There Was You', 'a\\\\b')" in out, out
