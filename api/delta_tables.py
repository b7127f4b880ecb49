"""Read the lakehouse's Delta tables straight from their transaction logs, with delta-rs.

No JVM and no server round trip: the API reads the files the Spark server committed. Reads go
through delta-rs' DataFusion engine (`QueryBuilder`), which applies deletion vectors, the table
feature Delta 4.1 writes for DELETE/MERGE when it is enabled; `DeltaTable.to_pyarrow_table`
refuses such tables. Each read is pinned to one table version, so a refresh never mixes two.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d+\.\d+)?\.parquet$")


@dataclass(frozen=True)
class TableRead:
    name: str
    version: int
    data: pa.Table


def table_path(warehouse: Path, name: str) -> Path:
    """Where Spark's catalog keeps a managed table: <warehouse>/<schema>.db/<table>."""
    schema, table = name.split(".", 1)
    return warehouse / f"{schema}.db" / table


def latest_version(path: Path) -> int | None:
    """The table's newest committed version, from a listing of its log (no file is read): the
    cheap check a refresh polls. None when there is no Delta table there (yet)."""
    try:
        names = [entry.name for entry in (path / "_delta_log").iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return None
    versions = [int(m.group(1)) for n in names if (m := _COMMIT.match(n) or _CHECKPOINT.match(n))]
    return max(versions, default=None)


def read(warehouse: Path, name: str, columns: tuple[str, ...], where: str = "") -> TableRead | None:
    """The given columns of the table at its newest version (None when the table does not exist).
    `columns` and `where` come from this package's code, never from a request."""
    path = table_path(warehouse, name)
    if latest_version(path) is None:
        return None
    table = DeltaTable(str(path))
    sql = f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM t" + (f" WHERE {where}" if where else "")
    batches = QueryBuilder().register("t", table).execute(sql)
    data = pa.table(batches)  # arro3 -> pyarrow through the Arrow C stream interface, no copy
    return TableRead(name, table.version(), data.cast(pa.schema([_plain(f) for f in data.schema])))


def _plain(field: pa.Field) -> pa.Field:
    """DataFusion hands out string_view columns, which many pyarrow kernels (take, sort) lack."""
    kind = field.type
    if pa.types.is_string_view(kind):
        return field.with_type(pa.string())
    if pa.types.is_list(kind) and pa.types.is_string_view(kind.value_type):
        return field.with_type(pa.list_(pa.string()))
    return field
