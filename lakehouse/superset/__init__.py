"""Superset: the service (service.py) and the dashboards-as-code bundle (bundle.py)."""
