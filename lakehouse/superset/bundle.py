"""superset/dashboards.yml -> a Superset import bundle (the YAML files Superset's own exports hold).

Pure: no Superset import (it lives in its own virtualenv), no network. The caller passes the
tables' columns, read from the server, so the datasets carry their real columns and types and a
chart naming a column that does not exist fails here, with its name, instead of in the browser.

Identity: every object's uuid is derived from its key in the spec, so importing again (with
overwrite) updates the same database, datasets, charts and dashboards instead of adding copies.
"""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path(__file__).resolve().parent.parent.parent / "superset" / "dashboards.yml"
# Fixed namespace: uuids depend only on the keys in the spec.
NAMESPACE = uuid.UUID("6f1f7d0e-3c55-4d8a-9a37-1f0c5e7a2b64")
VERSION = "1.0.0"
# Superset's ISO-8601 grain names. A mart's precomputed bucket with its own grain stays unchanged.
TIME_GRAINS = {
    "second": "PT1S", "minute": "PT1M", "hour": "PT1H", "day": "P1D", "week": "P1W", "month": "P1M", "year": "P1Y",
}
KINDS = {
    "big_number": ("big_number_total", {"metric"}),
    "bar": ("echarts_timeseries_bar", {"x", "metrics"}),
    "line": ("echarts_timeseries_line", {"x", "metrics"}),
    "pie": ("pie", {"group", "metric"}),
    "table": ("table", set()),
    "heatmap": ("heatmap_v2", {"x", "y", "metric"}),
}
TEMPORAL_TYPES = ("date", "timestamp")
ROW_HEIGHT = 50  # Superset grid units (8 px)


def stable_uuid(kind: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}/{key}"))


@dataclass
class Bundle:
    """The bundle's files (path -> parsed YAML), what was left out and why."""

    files: dict[str, dict[str, Any]]
    dashboards: list[tuple[str, str, str]]  # (key, title, slug)
    charts: dict[str, str] = field(default_factory=dict)  # chart key -> uuid
    skipped: list[str] = field(default_factory=list)

    def write(self, folder: Path) -> Path:
        """Write the YAML files under `folder/bundle/` (to read) and `folder/bundle.zip` (to import)."""
        root = folder / "bundle"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in sorted(self.files.items()):
                text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                archive.writestr(f"bundle/{name}", text)
        target = folder / "bundle.zip"
        target.write_bytes(buffer.getvalue())
        return target


def load_spec(path: Path = SPEC_FILE) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = validate_spec(spec)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return spec


def spec_tables(spec: dict[str, Any]) -> dict[str, str]:
    """Dataset key -> fully qualified table."""
    default_schema = spec["database"].get("schema", "gold")
    return {key: f"{ds.get('schema', default_schema)}.{ds.get('table', key)}" for key, ds in spec["datasets"].items()}


def spec_dashboards(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, title, URL slug) of each dashboard; the slug defaults to the key with dashes."""
    return [(key, board["title"], board.get("slug", key.replace("_", "-"))) for key, board in spec["dashboards"].items()]


def all_charts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {key: chart for board in spec["dashboards"].values() for key, chart in board.get("charts", {}).items()}


def validate_spec(spec: dict[str, Any]) -> list[str]:
    """Everything that can be checked without the database: references, kinds, required fields."""
    problems = []
    datasets = spec.get("datasets") or {}
    seen: dict[str, str] = {}
    for board_key, board in (spec.get("dashboards") or {}).items():
        charts = board.get("charts") or {}
        placed = [key for row in board.get("rows", []) for key in row.get("charts", [])]
        for key in placed:
            if key not in charts:
                problems.append(f"dashboard {board_key}: row names unknown chart {key!r}")
        for key in set(charts) - set(placed):
            problems.append(f"dashboard {board_key}: chart {key!r} is in no row")
        for key, chart in charts.items():
            if key in seen:
                problems.append(f"chart key {key!r} is used in dashboards {seen[key]} and {board_key}")
            seen[key] = board_key
            kind = chart.get("kind")
            if kind not in KINDS:
                problems.append(f"chart {key}: kind {kind!r} is not one of {', '.join(KINDS)}")
                continue
            missing = KINDS[kind][1] - set(chart)
            if kind == "table" and not (chart.get("columns") or chart.get("metrics")):
                missing.add("columns or metrics")
            if missing:
                problems.append(f"chart {key}: missing {', '.join(sorted(missing))}")
            dataset = datasets.get(chart.get("dataset"))
            if dataset is None:
                problems.append(f"chart {key}: unknown dataset {chart.get('dataset')!r}")
                continue
            known = set((dataset.get("metrics") or {}))
            for metric in _chart_metrics(chart):
                if metric not in known:
                    problems.append(f"chart {key}: dataset {chart['dataset']} has no metric {metric!r}")
            if chart.get("time_grain") and chart["time_grain"] not in TIME_GRAINS:
                problems.append(f"chart {key}: time_grain {chart['time_grain']!r} is not one of {', '.join(TIME_GRAINS)}")
        for native in board.get("filters", []):
            if native.get("dataset") not in datasets:
                problems.append(f"dashboard {board_key}: filter {native.get('name')!r} has unknown dataset")
            for key in native.get("charts", []):
                if key not in charts:
                    problems.append(f"dashboard {board_key}: filter {native.get('name')!r} scopes unknown chart {key!r}")
    return problems


def _chart_metrics(chart: dict[str, Any]) -> list[str]:
    return list(chart.get("metrics") or []) + ([chart["metric"]] if chart.get("metric") else [])


def _chart_columns(chart: dict[str, Any]) -> list[str]:
    """Plain column names the chart reads (SQL expressions and filters are the database's to check)."""
    names = [chart.get(k) for k in ("x", "y", "group") if isinstance(chart.get(k), str)]
    names += list(chart.get("columns") or []) + [c.lstrip("-") for c in chart.get("order_by") or []]
    return names


def filter_defaults_needed(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(qualified table, column) of every native filter: its default is the column's first value."""
    tables = spec_tables(spec)
    return [(tables[f["dataset"]], f["column"]) for board in spec["dashboards"].values() for f in board.get("filters", [])]


def build_bundle(spec: dict[str, Any], sqlalchemy_uri: str, columns: dict[str, list[tuple[str, str]] | None],
                 filter_defaults: dict[tuple[str, str], Any] | None = None) -> Bundle:
    """The bundle for `spec`. `columns` maps each dataset's qualified table to its (name, type)
    columns, or None when the table does not exist: its datasets and charts are left out.
    `filter_defaults` gives a native filter on (table, column) its selected value on load."""
    tables = spec_tables(spec)
    database_uuid = stable_uuid("database", "lakehouse")
    files: dict[str, dict[str, Any]] = {
        "metadata.yaml": {"version": VERSION, "type": "assets", "timestamp": "1970-01-01T00:00:00+00:00"},
        "databases/lakehouse.yaml": {
            "database_name": spec["database"]["name"],
            "sqlalchemy_uri": sqlalchemy_uri,
            "cache_timeout": None,
            "expose_in_sqllab": True,
            "allow_run_async": False,
            "allow_ctas": False,
            "allow_cvas": False,
            "allow_dml": False,
            "allow_file_upload": False,
            "extra": {},
            "uuid": database_uuid,
            "version": VERSION,
        },
    }
    skipped = []
    present: dict[str, dict[str, str]] = {}  # dataset key -> {column: type}
    for key, dataset in spec["datasets"].items():
        table_columns = columns.get(tables[key])
        if table_columns is None:
            waiting = [c for c, chart in all_charts(spec).items() if chart["dataset"] == key]
            skipped.append(f"{tables[key]} does not exist yet: left out its dataset and charts {', '.join(waiting)}")
            continue
        present[key] = dict(table_columns)
        files[f"datasets/{key}.yaml"] = _dataset(key, dataset, tables[key], table_columns, database_uuid)

    chart_ids: dict[str, int] = {}
    chart_uuids: dict[str, str] = {}
    problems = []
    for key, chart in all_charts(spec).items():
        if chart["dataset"] not in present:
            continue
        unknown = [c for c in _chart_columns(chart) if c not in present[chart["dataset"]]]
        if unknown:
            problems.append(f"chart {key}: {tables[chart['dataset']]} has no column {', '.join(unknown)}")
            continue
        chart_ids[key] = len(chart_ids) + 1
        chart_uuids[key] = stable_uuid("chart", key)
        dataset = spec["datasets"][chart["dataset"]]
        files[f"charts/{key}.yaml"] = _chart(key, chart, dataset, present[chart["dataset"]])
    if problems:
        raise ValueError("; ".join(problems))

    dashboards = spec_dashboards(spec)
    for key, _title, slug in dashboards:
        board = spec["dashboards"][key]
        defaults = {f["column"]: (filter_defaults or {}).get((tables[f["dataset"]], f["column"]))
                    for f in board.get("filters", [])}
        files[f"dashboards/{key}.yaml"] = _dashboard(key, board, slug, chart_ids, present, defaults)
    return Bundle(files, dashboards, chart_uuids, skipped)


def _column_type(spark_type: str) -> str:
    return spark_type.strip().upper()


def _dataset(key: str, dataset: dict[str, Any], table: str, table_columns: list[tuple[str, str]],
             database_uuid: str) -> dict[str, Any]:
    schema, table_name = table.split(".", 1)
    return {
        "table_name": table_name,
        "main_dttm_col": dataset.get("time_column"),
        "description": dataset.get("description"),
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "schema": schema,
        "catalog": None,
        "sql": None,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": stable_uuid("dataset", key),
        "metrics": [
            {
                "metric_name": name,
                "verbose_name": metric.get("label"),
                "metric_type": None,
                "expression": metric["sql"],
                "description": metric.get("description"),
                "d3format": metric.get("format"),
                "extra": {},
                "warning_text": None,
            }
            for name, metric in (dataset.get("metrics") or {}).items()
        ],
        "columns": [
            {
                "column_name": name,
                "verbose_name": None,
                "is_dttm": spark_type.lower().startswith(TEMPORAL_TYPES),
                "is_active": True,
                "type": _column_type(spark_type),
                "advanced_data_type": None,
                "groupby": True,
                "filterable": True,
                "expression": None,
                "description": None,
                "python_date_format": None,
                "extra": {},
            }
            for name, spark_type in table_columns
        ],
        "version": VERSION,
        "database_uuid": database_uuid,
    }


def _sql_filters(chart: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "expressionType": "SQL",
            "sqlExpression": condition,
            "clause": "WHERE",
            "subject": None,
            "operator": None,
            "comparator": None,
            "isExtra": False,
            "isNew": False,
            "filterOptionName": f"filter_{index}",
        }
        for index, condition in enumerate(chart.get("filters") or [])
    ]


def _axis(chart: dict[str, Any], column_types: dict[str, str]) -> tuple[Any, str, str | None]:
    """(form-data x axis, its label, its time grain or None when categorical)."""
    x = chart["x"]
    if isinstance(x, dict):
        return {"expressionType": "SQL", "sqlExpression": x["sql"], "label": x["label"]}, x["label"], None
    temporal = column_types.get(x, "").lower().startswith(TEMPORAL_TYPES)
    grain = TIME_GRAINS[chart.get("time_grain", "day")] if temporal else None
    return x, x, grain


def _order_by(chart: dict[str, Any]) -> list[tuple[str, bool]]:
    """`-col` sorts descending."""
    return [(c.lstrip("-"), not c.startswith("-")) for c in chart.get("order_by") or []]


def _query(chart: dict[str, Any], columns: list[Any], metrics: list[str] | None, orderby: list[Any], row_limit: int,
           grain: str | None = None) -> dict[str, Any]:
    """The query object the chart's data endpoint runs (what Superset's frontend builds from the
    form data; kept without post-processing, which only reshapes rows). metrics=None is a raw
    query: rows as they are, where [] would group by every column."""
    where = " AND ".join(f"({condition})" for condition in chart.get("filters") or [])
    extras: dict[str, Any] = {"where": where, "having": ""}
    if grain:
        extras["time_grain_sqla"] = grain
    return {
        "columns": columns,
        "metrics": metrics,
        "orderby": [list(o) for o in orderby],
        "row_limit": row_limit,
        "series_limit": 0,
        "order_desc": True,
        "filters": [],
        "extras": extras,
        "applied_time_extras": {},
        "annotation_layers": [],
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
    }


def _chart(key: str, chart: dict[str, Any], dataset: dict[str, Any], column_types: dict[str, str]) -> dict[str, Any]:
    kind = chart["kind"]
    viz_type = KINDS[kind][0]
    metric_formats = {name: m.get("format") for name, m in (dataset.get("metrics") or {}).items()}
    limit = int(chart.get("limit", 10_000))
    params: dict[str, Any] = {
        "viz_type": viz_type,
        "datasource": "0__table",  # replaced by the dataset's id on import
        "adhoc_filters": _sql_filters(chart),
        "row_limit": limit,
        "extra_form_data": {},
        "dashboards": [],
    }
    if kind == "big_number":
        metric = chart["metric"]
        params.update({"metric": metric, "header_font_size": 0.4, "subheader_font_size": 0.15,
                       "y_axis_format": metric_formats.get(metric) or "SMART_NUMBER", "subheader": ""})
        query = _query(chart, [], [metric], [], 1)
    elif kind in ("bar", "line"):
        x, label, grain = _axis(chart, column_types)
        metrics = chart["metrics"]
        sort = chart.get("sort")
        params.update({
            "x_axis": x,
            "time_grain_sqla": grain,
            "xAxisForceCategorical": grain is None,
            "metrics": metrics,
            "groupby": [],
            "orientation": "horizontal" if chart.get("horizontal") else "vertical",
            "show_legend": len(metrics) > 1,
            "legendOrientation": "top",
            "rich_tooltip": True,
            "show_value": kind == "bar" and len(metrics) == 1 and chart.get("values", True),
            "markerEnabled": kind == "line",
            "markerSize": 4,
            "truncate_metric": True,
            "y_axis_format": metric_formats.get(metrics[0]) or "SMART_NUMBER",
            "x_axis_time_format": "smart_date",
            "truncateYAxis": False,
            "zoomable": False,
            "x_axis_title": "" if grain or chart.get("horizontal") else label,
            "x_axis_title_margin": 30,
        })
        if sort:
            ascending = sort in ("x", "metric_ascending")
            params["x_axis_sort"] = label if sort == "x" else metrics[0]
            # Horizontal bars are drawn bottom-up: flip the order so the first comes on top.
            params["x_axis_sort_asc"] = ascending != bool(chart.get("horizontal"))
        axis = {"columnType": "BASE_AXIS", "label": label, "expressionType": "SQL",
                "sqlExpression": x["sqlExpression"] if isinstance(x, dict) else x}
        if grain:
            axis["timeGrain"] = grain
        query = _query(chart, [axis], metrics, [[metrics[0], False]], limit, grain)
    elif kind == "pie":
        params.update({"groupby": [chart["group"]], "metric": chart["metric"], "sort_by_metric": True, "donut": True,
                       "show_labels": True, "label_type": "key_percent", "show_legend": True, "innerRadius": 40,
                       "outerRadius": 70, "number_format": "SMART_NUMBER"})
        query = _query(chart, [chart["group"]], [chart["metric"]], [[chart["metric"], False]], limit)
    elif kind == "table":
        order = _order_by(chart)
        common = {"include_search": bool(chart.get("search")), "page_length": int(chart.get("page_length", 10)),
                  "server_pagination": False, "table_timestamp_format": "smart_date", "show_cell_bars": False,
                  "align_pn": False, "color_pn": False, "allow_rearrange_columns": False,
                  "column_config": {column: {"d3NumberFormat": number_format}
                                    for column, number_format in (chart.get("formats") or {}).items()}}
        if chart.get("columns"):
            params.update({"query_mode": "raw", "all_columns": chart["columns"],
                           "order_by_cols": [json.dumps([c, asc]) for c, asc in order], **common})
            query = _query(chart, list(chart["columns"]), None, order, limit)
        else:
            params.update({"query_mode": "aggregate", "groupby": chart.get("group") or [], "metrics": chart["metrics"],
                           "order_desc": True, **common})
            query = _query(chart, list(chart.get("group") or []), chart["metrics"], [[chart["metrics"][0], False]], limit)
    else:  # heatmap
        params.update({"x_axis": chart["x"], "groupby": chart["y"], "metric": chart["metric"],
                       "sort_x_axis": "alpha_asc", "sort_y_axis": "alpha_asc", "normalize_across": "heatmap",
                       "linear_color_scheme": "superset_seq_1", "value_bounds": [None, None],
                       "y_axis_format": metric_formats.get(chart["metric"]) or "SMART_NUMBER",
                       "xscale_interval": -1, "yscale_interval": -1, "left_margin": "auto", "bottom_margin": "auto",
                       "show_legend": True, "show_percentage": False, "show_values": False})
        query = _query(chart, [chart["x"], chart["y"]], [chart["metric"]], [], limit)
    query_context = {
        "datasource": {"id": 0, "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }
    return {
        "slice_name": chart["title"],
        "description": chart.get("description"),
        "certified_by": None,
        "certification_details": None,
        "viz_type": viz_type,
        "params": params,
        "query_context": json.dumps(query_context),
        "cache_timeout": None,
        "uuid": stable_uuid("chart", key),
        "version": VERSION,
        "dataset_uuid": stable_uuid("dataset", chart["dataset"]),
    }


def _default_mask(column: str, value: Any) -> dict[str, Any]:
    """A native filter's value on load. A fixed value, not "first item": Superset shows the first
    item as selected but leaves it pending until Apply, so the charts would load unfiltered."""
    if value is None:
        return {"extraFormData": {}, "filterState": {}, "ownState": {}}
    return {"extraFormData": {"filters": [{"col": column, "op": "IN", "val": [value]}]},
            "filterState": {"value": [value], "label": str(value)}, "ownState": {}}


def _dashboard(key: str, board: dict[str, Any], slug: str, chart_ids: dict[str, int],
               present: dict[str, dict[str, str]], defaults: dict[str, Any]) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": board["title"]}},
    }
    charts = board.get("charts") or {}
    for index, row in enumerate(board.get("rows", []), start=1):
        keys = [k for k in row["charts"] if k in chart_ids]
        if not keys:
            continue
        row_id = f"ROW-{key}-{index}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        free = [k for k in keys if "width" not in charts[k]]
        fixed = sum(charts[k]["width"] for k in keys if "width" in charts[k])
        for chart_key in keys:
            width = charts[chart_key].get("width") or max(1, (12 - fixed) // max(1, len(free)))
            chart_id = f"CHART-{chart_key}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART", "id": chart_id, "children": [], "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {"width": width, "height": row.get("height", ROW_HEIGHT), "chartId": chart_ids[chart_key],
                         "uuid": stable_uuid("chart", chart_key), "sliceName": charts[chart_key]["title"]},
            }
    native_filters = []
    for native in board.get("filters", []):
        if native["dataset"] not in present:
            continue
        excluded = [chart_ids[k] for k in charts if k in chart_ids and k not in native.get("charts", charts)]
        native_filters.append({
            "id": f"NATIVE_FILTER-{key}-{native['column']}",
            "name": native["name"],
            "filterType": "filter_select",
            "targets": [{"datasetUuid": stable_uuid("dataset", native["dataset"]), "column": {"name": native["column"]}}],
            "defaultDataMask": _default_mask(native["column"], defaults.get(native["column"])),
            "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": excluded},
            "controlValues": {"enableEmptyFilter": True, "defaultToFirstItem": False, "multiSelect": False,
                              "searchAllOptions": False, "inverseSelection": False},
            "type": "NATIVE_FILTER",
            "description": native.get("description", ""),
            "chartsInScope": [],
            "tabsInScope": [],
        })
    return {
        "dashboard_title": board["title"],
        "description": board.get("description"),
        "css": "",
        "slug": slug,
        "uuid": stable_uuid("dashboard", key),
        "position": position,
        "metadata": {
            "refresh_frequency": int(board.get("refresh_seconds", 0)),
            "timed_refresh_immune_slices": [],
            "expanded_slices": {},
            "color_scheme": "supersetColors",
            "label_colors": {},
            "shared_label_colors": [],
            "color_scheme_domain": [],
            "cross_filters_enabled": False,
            "native_filter_configuration": native_filters,
            "chart_configuration": {},
            "global_chart_configuration": {"scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": []},
        },
        "version": VERSION,
        "published": True,
    }
