"""The data catalog: every dbt node and column described and classified, checked on dbt's artifacts.

Every source table, model, seed and exposure needs a description and, in `config.meta`, an
`owner` and a `personal_data` class; every column of a source, model or seed needs a description
and a `personal_data` class. The classes, least identifying first:

- none: movies, genres, lineage and ledgers, model metrics, aggregates over groups of users;
- quasi: singles a person out in combination: age, gender, occupation, zip code and, in rows
  keyed by a user, that user's rating values, rating times and the figures derived from them;
- direct: identifies a person on its own or keys a person's rows: user ids, raw source lines.

A node's class is the highest of its columns'; an exposure's, the highest of the nodes it reads.
`gaps(manifest)` lists what is missing or inconsistent in manifest.json (what `dbt parse` writes);
`column_mismatches(manifest, catalog)` compares the YAML's columns with the columns the database
has (catalog.json, what `dbt docs generate` reads from the server).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLASSES = ("none", "quasi", "direct")  # least to most identifying
NODE_TYPES = ("model", "seed")  # the manifest's `nodes` the catalog covers (with sources and exposures)


@dataclass(frozen=True)
class Gap:
    unique_id: str  # e.g. model.movielens_lakehouse.users, source.movielens_lakehouse.ml.recommendations
    column: str | None  # None for the node itself
    problem: str

    def __str__(self) -> str:
        return f"{self.unique_id}{f' column {self.column}' if self.column else ''}: {self.problem}"


def load(path: Path) -> dict:
    """manifest.json or catalog.json."""
    return json.loads(Path(path).read_text())


def _meta(entry: dict) -> dict:
    # dbt 1.11 copies config.meta to the top-level meta; read both so either form is seen.
    return {**(entry.get("meta") or {}), **((entry.get("config") or {}).get("meta") or {})}


def catalogued(manifest: dict) -> Iterator[dict]:
    """The project's models, seeds, sources and exposures (not tests, not other packages')."""
    project = manifest.get("metadata", {}).get("project_name")
    entries = [*manifest.get("nodes", {}).values(), *manifest.get("sources", {}).values(),
               *manifest.get("exposures", {}).values()]
    for entry in entries:
        if project and entry.get("package_name") != project:
            continue
        if entry.get("resource_type") in (*NODE_TYPES, "source", "exposure"):
            yield entry


def personal_data(entry: dict) -> str | None:
    """The entry's (node's or column's) class, None when missing or not one of CLASSES."""
    value = _meta(entry).get("personal_data")
    return value if value in CLASSES else None


def _class_problem(entry: dict) -> str | None:
    value = _meta(entry).get("personal_data")
    if value is None or value == "":
        return "no personal_data class (config.meta.personal_data)"
    if value not in CLASSES:
        return f"personal_data {value!r} is not one of {', '.join(reversed(CLASSES))}"
    return None


def _highest(classes: list[str]) -> str:
    return max(classes, key=CLASSES.index, default="none")


def gaps(manifest: dict) -> list[Gap]:
    """Every node or column without a description, an owner or a valid class, and every node whose
    class is not the highest of its columns' (an exposure: of the nodes it depends on)."""
    found: list[Gap] = []
    entries = {e["unique_id"]: e for e in catalogued(manifest)}
    for uid, entry in sorted(entries.items()):
        if not (entry.get("description") or "").strip():
            found.append(Gap(uid, None, "no description"))
        if not str(_meta(entry).get("owner") or "").strip():
            found.append(Gap(uid, None, "no owner (config.meta.owner)"))
        if problem := _class_problem(entry):
            found.append(Gap(uid, None, problem))
        if entry["resource_type"] == "exposure":
            inputs = [entries.get(parent) for parent in entry.get("depends_on", {}).get("nodes", [])]
            expected = [personal_data(e) for e in inputs if e is not None]
        else:
            columns = entry.get("columns") or {}
            if not columns:
                found.append(Gap(uid, None, "no columns listed"))
            for name, column in columns.items():
                if not (column.get("description") or "").strip():
                    found.append(Gap(uid, name, "no description"))
                if problem := _class_problem(column):
                    found.append(Gap(uid, name, problem))
            expected = [personal_data(c) for c in columns.values()]
        own = personal_data(entry)
        if own is not None and expected and None not in expected and own != _highest(expected):
            what = "the nodes it reads" if entry["resource_type"] == "exposure" else "its columns"
            found.append(Gap(uid, None, f"personal_data is {own} but the highest class of {what} is {_highest(expected)}"))
    return found


def column_mismatches(manifest: dict, catalog: dict) -> list[Gap]:
    """Columns the database has that the YAML does not list, and listed columns it does not have,
    for every model, seed and source that catalog.json found (a table not built yet is skipped)."""
    found: list[Gap] = []
    entries = {e["unique_id"]: e for e in catalogued(manifest) if e["resource_type"] != "exposure"}
    in_database = {**catalog.get("nodes", {}), **catalog.get("sources", {})}
    for uid, table in sorted(in_database.items()):
        if uid not in entries:
            continue
        real = {name.lower() for name in table.get("columns", {})}
        listed = {name.lower() for name in entries[uid].get("columns", {})}
        found += [Gap(uid, name, "in the database but not in the YAML") for name in sorted(real - listed)]
        found += [Gap(uid, name, "in the YAML but not in the database") for name in sorted(listed - real)]
    return found


def summary(manifest: dict) -> str:
    """'68 nodes (sources, models, seeds, exposures), 28 direct, 40 none; 521 columns, 60 direct, ...'."""
    entries = list(catalogued(manifest))
    columns = [c for e in entries if e["resource_type"] != "exposure" for c in (e.get("columns") or {}).values()]

    def by_class(items: list[dict]) -> str:
        return ", ".join(f"{sum(1 for i in items if personal_data(i) == c)} {c}" for c in reversed(CLASSES))

    return (f"{len(entries)} nodes (sources, models, seeds, exposures): {by_class(entries)}; "
            f"{len(columns)} columns: {by_class(columns)}")
