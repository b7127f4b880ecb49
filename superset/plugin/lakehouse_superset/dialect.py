"""`sparksql://host:port/schema`: PyHive's Hive dialect, with Spark's catalog listings read right.

PyHive reads the first column of `SHOW TABLES`, which on Hive is the table name but on Spark is
the schema (Spark answers `namespace, tableName, isTemporary`; `SHOW VIEWS` likewise), so
Superset would list every table as "gold". Spark also lists views among tables, and has types
PyHive does not know (timestamp_ntz, ...), and string literals need backslash escapes.
"""
from __future__ import annotations

import re

from pyhive import sqlalchemy_hive
from sqlalchemy import text, types


def _names(rows) -> list[str]:
    """Names of non-temporary objects; Spark rows are (namespace, name, isTemporary)."""
    names = []
    for row in rows:
        if len(row) >= 3:
            if str(row[2]).lower() != "true":
                names.append(row[1])
        else:  # a Hive server: the name is the only column
            names.append(row[0])
    return names


_SPARK_TYPES = {
    **sqlalchemy_hive._type_map,  # noqa: SLF001 - extend PyHive's map, not copy it
    "integer": types.Integer,
    "long": types.BigInteger,
    "real": types.Float,
    "timestamp_ntz": sqlalchemy_hive.HiveTimestamp,
    "timestamp_ltz": sqlalchemy_hive.HiveTimestamp,
    "void": types.NullType,
}


class SparkString(types.String):
    """Strings inlined into SQL (Superset inlines filter values) with backslash escapes. The ANSI
    escape, a doubled quote, reads in Spark as two adjacent literals to concatenate: a filter on
    the title 'Til There Was You (leading apostrophe) would match nothing."""

    def literal_processor(self, dialect):
        def process(value: str) -> str:
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

        return process


class SparkSqlDialect(sqlalchemy_hive.HiveDialect):
    name = "sparksql"
    driver = "pyhive"
    supports_statement_cache = False
    colspecs = {**sqlalchemy_hive.HiveDialect.colspecs, types.String: SparkString}

    def _show(self, connection, statement: str, schema: str | None) -> list[str]:
        if schema:
            statement += " IN " + self.identifier_preparer.quote_identifier(schema)
        return _names(connection.execute(text(statement)).fetchall())

    def get_view_names(self, connection, schema=None, **kw):
        return self._show(connection, "SHOW VIEWS", schema)

    def get_table_names(self, connection, schema=None, **kw):
        # SQLAlchemy's contract: tables only; Spark's SHOW TABLES includes the views.
        views = set(self.get_view_names(connection, schema))
        return [name for name in self._show(connection, "SHOW TABLES", schema) if name not in views]

    def get_columns(self, connection, table_name, schema=None, **kw):
        rows = self._get_table_columns(connection, table_name, schema)
        columns = []
        for row in rows:
            name, type_name = (row[0] or "").strip(), (row[1] or "").strip()
            if name.startswith("#"):  # "# Partition Information": the rest repeats columns
                break
            if not name:
                continue
            base = re.match(r"\w+", type_name)
            columns.append({
                "name": name,
                "type": _SPARK_TYPES.get(base.group(0).lower() if base else "", types.NullType),
                "nullable": True,
                "default": None,
            })
        return columns
