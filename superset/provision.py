"""Superset-side steps of `lakehouse superset up|import` (run with .venv-superset's python).

    python superset/provision.py admin --user admin        # password from $SUPERSET_ADMIN_PASSWORD
    python superset/provision.py import BUNDLE.zip --user admin --analyst analyst  # password from $SUPERSET_ANALYST_PASSWORD

`import` does not use `superset import-dashboards`: that command imports charts and datasets only
when they are new, so an edited chart would never be updated. Superset's assets import overwrites
every object the bundle names (matched by uuid) and nothing else. It prints one JSON line: what
Superset holds afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from zipfile import ZipFile


def ensure_admin(username: str) -> None:
    """Create the admin, or set its password to the one in .env (which may have been regenerated)."""
    from superset import db, security_manager

    password = os.environ["SUPERSET_ADMIN_PASSWORD"]
    user = security_manager.find_user(username=username)
    if user is None:
        role = security_manager.find_role("Admin")
        user = security_manager.add_user(username, "Lakehouse", "Admin", f"{username}@localhost.localdomain", role,
                                         password=password)
        if not user:
            raise RuntimeError(f"could not create the Superset user {username!r}")
    else:
        security_manager.reset_password(user.id, password)
    db.session.commit()


ANALYST_ROLE = "Analyst"
# The one schema analysts read: the marts. Never bronze (raw rows, quarantined lines), silver or
# governance (the erasure audit).
ANALYST_SCHEMAS = ("gold",)


def ensure_analyst(username: str) -> dict:
    """The role "Analyst" (Gamma's permissions plus access to each dataset in gold, and nothing
    of SQL Lab or of any database as a whole) and its user, password from the environment."""
    from superset import db, security_manager
    from superset.connectors.sqla.models import SqlaTable

    gamma = security_manager.find_role("Gamma")
    role = security_manager.find_role(ANALYST_ROLE) or security_manager.add_role(ANALYST_ROLE)
    permissions = list(gamma.permissions)
    granted = []
    for dataset in db.session.query(SqlaTable).order_by(SqlaTable.id):
        if dataset.schema in ANALYST_SCHEMAS:
            permissions.append(security_manager.add_permission_view_menu("datasource_access", dataset.get_perm()))
            granted.append(f"{dataset.schema}.{dataset.table_name}")
    role.permissions = permissions
    password = os.environ["SUPERSET_ANALYST_PASSWORD"]
    user = security_manager.find_user(username=username)
    if user is None:
        user = security_manager.add_user(username, "Lakehouse", "Analyst", f"{username}@localhost.localdomain", role,
                                         password=password)
        if not user:
            raise RuntimeError(f"could not create the Superset user {username!r}")
    else:
        user.roles = [role]
        security_manager.reset_password(user.id, password)
    db.session.commit()
    return {"role": ANALYST_ROLE, "user": username, "datasets": granted}


def scope_native_filters(dashboards) -> None:
    """Fill each native filter's chartsInScope with the imported charts' ids. The import maps
    the scope's excluded ids but leaves chartsInScope as the bundle has it, and the dashboard
    applies a filter only to the charts listed there."""
    for dashboard in dashboards:
        metadata = json.loads(dashboard.json_metadata or "{}")
        filters = metadata.get("native_filter_configuration") or []
        if not filters:
            continue
        position = json.loads(dashboard.position_json or "{}")
        chart_ids = [item["meta"]["chartId"] for item in position.values()
                     if isinstance(item, dict) and item.get("type") == "CHART"]
        for native in filters:
            excluded = set(native.get("scope", {}).get("excluded", []))
            native["chartsInScope"] = [chart_id for chart_id in chart_ids if chart_id not in excluded]
        dashboard.json_metadata = json.dumps(metadata)


def import_bundle(path: str, username: str) -> dict:
    from flask import g

    from superset import db, security_manager
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.commands.importers.v1.utils import get_contents_from_bundle
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.core import Database
    from superset.models.dashboard import Dashboard
    from superset.models.slice import Slice

    g.user = security_manager.find_user(username=username)
    if g.user is None:
        raise RuntimeError(f"no Superset user {username!r}: run `lakehouse superset up` first")
    with ZipFile(path) as bundle:
        contents = get_contents_from_bundle(bundle)
    ImportAssetsCommand(contents).run()
    scope_native_filters(db.session.query(Dashboard).all())
    db.session.commit()
    return {
        "databases": db.session.query(Database).count(),
        "datasets": db.session.query(SqlaTable).count(),
        "charts": db.session.query(Slice).count(),
        "dashboards": [
            {"id": d.id, "slug": d.slug, "title": d.dashboard_title, "uuid": str(d.uuid), "charts": len(d.slices)}
            for d in db.session.query(Dashboard).order_by(Dashboard.id)
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="step", required=True)
    admin = sub.add_parser("admin")
    admin.add_argument("--user", default="admin")
    bundle = sub.add_parser("import")
    bundle.add_argument("bundle")
    bundle.add_argument("--user", default="admin")
    bundle.add_argument("--analyst", default="", help="the analysts' user to create or update after the import")
    args = parser.parse_args()

    from superset.app import create_app

    with create_app().app_context():
        if args.step == "admin":
            ensure_admin(args.user)
        else:
            summary = import_bundle(args.bundle, args.user)
            if args.analyst:
                summary["analyst"] = ensure_analyst(args.analyst)
            print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
