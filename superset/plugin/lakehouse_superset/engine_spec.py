"""Superset's engine spec for `sparksql://`: Spark's own time grains (date_trunc), whereas
`hive://` gets the Hive spec whose week grains are wrong on Spark, and view names read through the
dialect, whereas the Hive spec parses `SHOW VIEWS` itself the way PyHive parses `SHOW TABLES`."""
from __future__ import annotations

from superset.db_engine_specs.base import BaseEngineSpec
from superset.db_engine_specs.spark import SparkEngineSpec


class SparkSqlEngineSpec(SparkEngineSpec):
    engine = "sparksql"
    engine_name = "Spark SQL (lakehouse Thrift server)"
    default_driver = "pyhive"
    sqlalchemy_uri_placeholder = "sparksql://127.0.0.1:10000/gold"

    @classmethod
    def get_view_names(cls, database, inspector, schema):
        return BaseEngineSpec.get_view_names(database, inspector, schema)
