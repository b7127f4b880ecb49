"""Superset plugin of the lakehouse: the `sparksql://` dialect and its engine spec."""
