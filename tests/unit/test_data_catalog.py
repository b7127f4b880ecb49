"""The data catalog (lakehouse/data_catalog.py): every dbt node and column described, owned and
classified, checked on the manifest `dbt parse` writes (no server needed); a doctored manifest
and catalog to show the check reports exactly what is missing; sources' owners and columns
against the table catalogue (lakehouse/tables.py); the API's exposure against what the API
serves; and the YAML against dbt's own schema."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lakehouse import data_catalog, tables
from lakehouse.data_catalog import Gap
from lakehouse.dbt_runner import PROJECT_DIR, run_dbt
from lakehouse.settings import Settings

PROJECT = "movielens_lakehouse"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("catalog-home")  # dbt's log goes under it, never the repository's
    target = home / "target"
    outcome = run_dbt(Settings(home=home), "parse", target_dir=target)
    assert outcome.ok, f"dbt parse failed; see {home / 'logs' / 'dbt'}"
    return data_catalog.load(target / "manifest.json")


def test_every_node_and_column_is_described_owned_and_classified(manifest):
    gaps = data_catalog.gaps(manifest)
    assert not gaps, f"{len(gaps)} gaps in the data catalog:\n" + "\n".join(map(str, gaps))
    kinds = {e["resource_type"] for e in data_catalog.catalogued(manifest)}
    assert kinds == {"model", "seed", "source", "exposure"}


def test_the_check_reports_exactly_the_gaps_planted(manifest):
    doctored = copy.deepcopy(manifest)
    nodes, sources = doctored["nodes"], doctored["sources"]
    rated_at = nodes[f"model.{PROJECT}.ratings"]["columns"]["rated_at"]
    for meta in (rated_at["meta"], rated_at["config"]["meta"]):
        meta.pop("personal_data")  # a column without a class
    nodes[f"model.{PROJECT}.genres"]["description"] = " "  # a model without a description
    genres_seed = nodes[f"seed.{PROJECT}.lookup_genres"]
    genres_seed["columns"]["genre"]["description"] = ""  # a seed column without a description
    ratings = sources[f"source.{PROJECT}.movielens.ratings"]
    for meta in (ratings["meta"], ratings["config"]["meta"]):
        meta.pop("owner")  # a source without an owner
    movies = nodes[f"model.{PROJECT}.movies"]
    for meta in (movies["columns"]["title"]["meta"], movies["columns"]["title"]["config"]["meta"]):
        meta["personal_data"] = "secret"  # not a class
    heatmap = nodes[f"model.{PROJECT}.user_similarity_heatmap"]
    for meta in (heatmap["meta"], heatmap["config"]["meta"]):
        meta["personal_data"] = "quasi"  # below its user-id columns' direct
    live = doctored["exposures"][f"exposure.{PROJECT}.live"]
    for meta in (live["meta"], live["config"]["meta"]):
        meta["personal_data"] = "none"  # reads latest_streamed_ratings, which is direct
    nodes[f"model.{PROJECT}.rating_distribution"]["columns"] = {}  # a model listing no column

    assert sorted(data_catalog.gaps(doctored), key=str) == sorted([
        Gap(f"model.{PROJECT}.ratings", "rated_at", "no personal_data class (config.meta.personal_data)"),
        Gap(f"model.{PROJECT}.genres", None, "no description"),
        Gap(f"seed.{PROJECT}.lookup_genres", "genre", "no description"),
        Gap(f"source.{PROJECT}.movielens.ratings", None, "no owner (config.meta.owner)"),
        Gap(f"model.{PROJECT}.movies", "title", "personal_data 'secret' is not one of direct, quasi, none"),
        Gap(f"model.{PROJECT}.user_similarity_heatmap", None,
            "personal_data is quasi but the highest class of its columns is direct"),
        Gap(f"exposure.{PROJECT}.live", None,
            "personal_data is none but the highest class of the nodes it reads is direct"),
        Gap(f"model.{PROJECT}.rating_distribution", None, "no columns listed"),
    ], key=str)


def test_a_column_the_database_has_and_the_yaml_lacks_is_reported(manifest):
    """What the integration test (tests/integration/test_dbt.py) runs on a real catalog.json."""
    def table(*columns: str) -> dict:
        return {"columns": {c.upper(): {"name": c.upper(), "type": "string"} for c in columns}}

    listed = lambda uid: list(manifest["nodes"].get(uid, manifest["sources"].get(uid, {})).get("columns", {}))  # noqa: E731
    users, quarantine = f"model.{PROJECT}.users", f"source.{PROJECT}.movielens.quarantine"
    catalog = {
        "nodes": {users: table(*listed(users), "zip_code"),  # selected, but not in the YAML
                  "model.other_package.x": table("anything")},  # not this project's: skipped
        "sources": {quarantine: table(*[c for c in listed(quarantine) if c != "reason"])},  # listed, not there
    }
    assert data_catalog.column_mismatches(manifest, catalog) == [
        Gap(users, "zip_code", "in the database but not in the YAML"),
        Gap(quarantine, "reason", "in the YAML but not in the database"),
    ]


def test_sources_agree_with_the_table_catalogue(manifest):
    """lakehouse/tables.py is the one source of truth for who writes a table and what it holds."""
    sources = {s["relation_name"]: s for s in manifest["sources"].values() if s["package_name"] == PROJECT}
    assert set(sources) <= set(tables.BY_NAME)  # a source is a table the Python jobs write...
    assert {t.name for t in tables.ALL if t.layer in ("bronze", "ml")} <= set(sources)  # ...and each bronze/ml one is
    for name, source in sources.items():
        table = tables.BY_NAME[name]
        assert source["config"]["meta"]["owner"] == table.owner, name
        if table.columns:
            assert list(source["columns"]) == list(table.columns), name


def test_the_api_exposure_names_the_tables_the_api_serves(manifest):
    from api.catalog import SERVED

    exposure = manifest["exposures"][f"exposure.{PROJECT}.rest_api"]
    relations = {**manifest["nodes"], **manifest["sources"]}
    assert {relations[uid]["relation_name"] for uid in exposure["depends_on"]["nodes"]} == {t.name for t in SERVED}
    assert exposure["config"]["meta"] == {"owner": "api", "personal_data": "direct"}


def _schema_errors(document: dict, schema: dict) -> list[str]:
    from dbt.jsonschemas.jsonschemas import CustomDraft7Validator

    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in CustomDraft7Validator(schema).iter_errors(document)]


def test_the_yaml_is_in_dbts_current_form():
    """dbt checks property files against its JSON schema, and warns of deprecated forms (a
    top-level `meta` instead of `config: {meta: ...}`), only for the adapters it lists, which
    dbt-spark is not: so the check is run here."""
    from dbt.jsonschemas.jsonschemas import project_schema, resources_schema

    files = sorted((PROJECT_DIR / "models").rglob("*.yml")) + sorted((PROJECT_DIR / "seeds").rglob("*.yml"))
    errors = {str(f.relative_to(PROJECT_DIR)): _schema_errors(yaml.safe_load(f.read_text()), resources_schema())
              for f in files}
    errors["dbt_project.yml"] = _schema_errors(yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text()),
                                               project_schema())
    assert not {f: e for f, e in errors.items() if e}
    # The check itself sees the deprecated form.
    old_form = {"version": 2, "models": [{"name": "m", "columns": [{"name": "c", "meta": {"personal_data": "none"}}]}]}
    assert _schema_errors(old_form, resources_schema()) == [
        "models.0.columns.0: Additional properties are not allowed ('meta' was unexpected)"]


def test_the_readme_names_every_class():
    readme = (Path(PROJECT_DIR) / "README.md").read_text()
    section = readme.split("### Data catalog", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{c}`" in section for c in data_catalog.CLASSES)
