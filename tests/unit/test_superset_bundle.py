"""The dashboards-as-code generator (superset/dashboards.yml -> Superset bundle) and Superset's
secrets, without Superset or Spark."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from lakehouse.superset import bundle

REPO = Path(__file__).resolve().parent.parent.parent
URI = "sparksql://127.0.0.1:10000/default"


def fake_columns(spec: dict) -> dict[str, list[tuple[str, str]]]:
    """Every column the spec's charts name, typed as the marts type them (time columns temporal)."""
    tables = bundle.spec_tables(spec)
    columns: dict[str, dict[str, str]] = {table: {} for table in tables.values()}
    for key, dataset in spec["datasets"].items():
        if dataset.get("time_column"):
            columns[tables[key]][dataset["time_column"]] = "timestamp"
    for chart in bundle.all_charts(spec).values():
        table = tables[chart["dataset"]]
        for name in bundle._chart_columns(chart):  # noqa: SLF001
            columns[table].setdefault(name, "timestamp" if chart.get("time_grain") and name == chart.get("x") else "string")
    for board in spec["dashboards"].values():
        for native in board.get("filters", []):
            columns[tables[native["dataset"]]].setdefault(native["column"], "int")
    return {table: list(cols.items()) for table, cols in columns.items()}


@pytest.fixture(scope="module")
def spec() -> dict:
    return bundle.load_spec()


def test_the_spec_is_valid_and_has_the_four_dashboards(spec):
    assert bundle.validate_spec(spec) == []
    titles = [board["title"] for board in spec["dashboards"].values()]
    assert titles == ["Catalogue & ratings", "Model quality", "Recommendations & similarity", "Live"]
    assert spec["dashboards"]["live"]["refresh_seconds"] > 0
    assert [f["column"] for f in spec["dashboards"]["recommendations"]["filters"]] == ["user_id", "title"]


def test_bundle_holds_every_object_with_stable_uuids(spec, tmp_path):
    built = bundle.build_bundle(spec, URI, fake_columns(spec))
    again = bundle.build_bundle(spec, URI, fake_columns(spec))
    assert built.files == again.files  # deterministic: re-importing it changes nothing
    assert built.skipped == []
    charts = bundle.all_charts(spec)
    assert {f for f in built.files if f.startswith("charts/")} == {f"charts/{k}.yaml" for k in charts}
    assert len({c["uuid"] for n, c in built.files.items() if n.startswith("charts/")}) == len(charts)
    assert built.files["databases/lakehouse.yaml"]["sqlalchemy_uri"] == URI
    assert built.files["databases/lakehouse.yaml"]["extra"] == {}
    archive = built.write(tmp_path)
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        assert "bundle/metadata.yaml" in names
        assert yaml.safe_load(zipped.read("bundle/metadata.yaml"))["type"] == "assets"
    assert (tmp_path / "bundle" / "dashboards" / "live.yaml").exists()


def test_dashboards_place_each_of_their_charts_once(spec):
    built = bundle.build_bundle(spec, URI, fake_columns(spec))
    for key, board in spec["dashboards"].items():
        position = built.files[f"dashboards/{key}.yaml"]["position"]
        placed = [item["meta"]["uuid"] for item in position.values() if isinstance(item, dict) and item.get("type") == "CHART"]
        assert sorted(placed) == sorted(bundle.stable_uuid("chart", c) for c in board["charts"])
        for item in position.values():
            if isinstance(item, dict) and item.get("type") == "ROW":
                assert sum(position[c]["meta"]["width"] for c in item["children"]) <= 12


def test_every_chart_has_a_query_context_for_its_data_endpoint(spec):
    built = bundle.build_bundle(spec, URI, fake_columns(spec))
    for name, chart in built.files.items():
        if name.startswith("charts/"):
            context = json.loads(chart["query_context"])
            query = context["queries"][0]
            assert context["form_data"]["viz_type"] == chart["viz_type"]
            assert query["columns"] or query["metrics"], name
            if chart["viz_type"] == "table" and chart["params"]["query_mode"] == "raw":
                assert query["metrics"] is None  # raw rows: [] would group by every column


def test_native_user_filter_targets_the_recommendations_only(spec):
    assert bundle.filter_defaults_needed(spec) == [("gold.recommendations_with_titles", "user_id"),
                                                   ("gold.similar_movies_with_titles", "title")]
    built = bundle.build_bundle(spec, URI, fake_columns(spec), {("gold.recommendations_with_titles", "user_id"): 7})
    board = built.files["dashboards/recommendations.yaml"]
    native, movie = board["metadata"]["native_filter_configuration"]
    assert movie["targets"][0]["column"] == {"name": "title"}
    assert movie["defaultDataMask"]["extraFormData"] == {}  # no default given: none set
    assert native["targets"] == [{"datasetUuid": bundle.stable_uuid("dataset", "recommendations_with_titles"),
                                  "column": {"name": "user_id"}}]
    chart_ids = {item["meta"]["uuid"]: item["meta"]["chartId"] for item in board["position"].values()
                 if isinstance(item, dict) and item.get("type") == "CHART"}
    in_scope = chart_ids[bundle.stable_uuid("chart", "recommendation_list")]
    assert in_scope not in native["scope"]["excluded"]
    assert len(native["scope"]["excluded"]) == len(chart_ids) - 1
    # Applied on load with the given first user (Superset leaves "first item" pending until Apply).
    assert native["defaultDataMask"]["extraFormData"]["filters"] == [{"col": "user_id", "op": "IN", "val": [7]}]
    assert native["controlValues"]["enableEmptyFilter"] and not native["controlValues"]["multiSelect"]


def test_missing_marts_leave_their_charts_out(spec):
    columns = fake_columns(spec)
    columns["gold.model_runs_over_time"] = None
    built = bundle.build_bundle(spec, URI, columns)
    assert "datasets/model_runs_over_time.yaml" not in built.files
    assert "charts/rmse_over_time.yaml" not in built.files
    assert any("gold.model_runs_over_time" in reason for reason in built.skipped)
    positions = built.files["dashboards/model_quality.yaml"]["position"]
    assert "CHART-rmse_over_time" not in positions and "CHART-champion_parameters" in positions


def test_a_chart_naming_a_missing_column_fails_with_its_name(spec):
    columns = fake_columns(spec)
    columns["gold.movies"] = [(n, t) for n, t in columns["gold.movies"] if n != "bayesian_rating"]
    with pytest.raises(ValueError, match="movie_ratings: gold.movies has no column bayesian_rating"):
        bundle.build_bundle(spec, URI, columns)


def test_spec_errors_are_reported_by_name(spec):
    broken = yaml.safe_load(yaml.safe_dump(spec))
    broken["dashboards"]["catalogue"]["charts"]["ratings_total"]["metric"] = "nope"
    broken["dashboards"]["live"]["rows"][0]["charts"].append("ghost")
    problems = bundle.validate_spec(broken)
    assert "chart ratings_total: dataset ratings has no metric 'nope'" in problems
    assert "dashboard live: row names unknown chart 'ghost'" in problems


def test_every_sql_expression_is_whole(spec):
    """An unquoted comma in a YAML flow mapping ({sql: f(a, b)}) cuts the expression short."""
    expressions = {f"metric {d}.{m}": metric["sql"] for d, ds in spec["datasets"].items()
                   for m, metric in (ds.get("metrics") or {}).items()}
    expressions |= {f"chart {k} x": c["x"]["sql"] for k, c in bundle.all_charts(spec).items() if isinstance(c.get("x"), dict)}
    for name, sql in expressions.items():
        assert isinstance(sql, str) and sql.count("(") == sql.count(")"), (name, sql)
    for key, dataset in spec["datasets"].items():
        for metric_key, metric in (dataset.get("metrics") or {}).items():
            assert set(metric) <= {"sql", "label", "format"}, (key, metric_key, metric)


def test_dbt_exposures_depend_on_exactly_the_marts_each_dashboard_reads(spec):
    exposures = yaml.safe_load((REPO / "models" / "exposures" / "_superset__exposures.yml").read_text())["exposures"]
    by_url = {e["url"].rstrip("/").rsplit("/", 1)[1]: e for e in exposures}
    for key, board in spec["dashboards"].items():
        slug = board.get("slug", key.replace("_", "-"))
        tables = {spec["datasets"][c["dataset"]].get("table", c["dataset"]) for c in board["charts"].values()}
        tables |= {spec["datasets"][f["dataset"]].get("table", f["dataset"]) for f in board.get("filters", [])}
        assert by_url[slug]["type"] == "dashboard"
        assert {d.removeprefix("ref('").removesuffix("')") for d in by_url[slug]["depends_on"]} == tables, slug


def test_credentials_are_generated_once_and_kept(tmp_path, monkeypatch):
    from lakehouse.settings import load_settings
    from lakehouse.superset import service

    env_file = tmp_path / ".env"
    env_file.write_text("OTHER=1\n")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAKEHOUSE_SUPERSET_ENV", str(env_file))
    settings = load_settings()
    first = service.credentials(settings)
    assert first.created and len(first.secret_key) >= 32 and first.admin_password not in ("admin", "")
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert env_file.read_text().startswith("OTHER=1\n")  # what was there stays
    second = service.credentials(settings)
    assert not second.created
    assert (second.secret_key, second.admin_password) == (first.secret_key, first.admin_password)


def test_status_hides_the_password_unless_asked_and_never_generates_one(tmp_path, monkeypatch):
    from lakehouse.settings import load_settings
    from lakehouse.superset import service

    env_file = tmp_path / ".env"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAKEHOUSE_SUPERSET_ENV", str(env_file))
    settings = load_settings()
    assert "no password yet" in service.status_line(settings)
    assert not env_file.exists()  # status only reads
    password = service.credentials(settings).admin_password
    line = service.status_line(settings)
    assert "not running" in line and password not in line and str(env_file) in line and "--show-secrets" in line
    assert password in service.status_line(settings, show_password=True)
