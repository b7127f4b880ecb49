"""MovieLens recommendation lakehouse: Spark server, ingestion, dbt models and tooling."""

__version__ = "0.1.0"
