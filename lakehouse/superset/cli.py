"""`lakehouse superset up|down|import|check|install`: flags and printed results (lakehouse/cli.py
registers the command)."""
from __future__ import annotations

import argparse
from pathlib import Path

from lakehouse.console import console, key_values, table
from lakehouse.settings import Settings
from lakehouse.superset import service


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "import", "check", "install"),
                        help="up: start and import the dashboards; down: stop; import: re-import the dashboards; "
                        "check: open every dashboard in headless Chromium, screenshot each; install: the venv only")
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/superset"),
                        help="check: folder for the screenshots (default test-artifacts/superset)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "down":
        console.print("Superset stopped." if service.down(settings) else "Superset was not running.")
        return 0
    if args.action == "install":
        seconds = service.ensure_venv(settings.logs_dir / "superset-install.log")
        console.print(f"Superset installed in {service.VENV} in {seconds:.0f}s" if seconds is not None
                      else f"Superset is installed in {service.VENV} (pins unchanged)")
        return 0
    if args.action == "check":
        report = service.check_dashboards(settings, args.out)
        print_check(report)
        return 0 if report.ok else 1
    if args.action == "up":
        print_provisioned(settings, service.provision(settings, say=console.print))
        return 0
    result = service.import_dashboards(settings)
    print_import(result)
    return 0


def print_import(result: service.ImportResult) -> None:
    console.print(table(
        f"Superset dashboards imported in {result.seconds:.0f}s ({result.charts} charts on {result.datasets} datasets; "
        f"bundle {result.bundle})", ["dashboard", "url"], result.dashboards,
    ))
    for reason in result.skipped:
        console.print(f"[yellow]left out:[/] {reason}")


def print_provisioned(settings: Settings, outcome: service.Provisioned) -> None:
    """The dashboards' URLs and where the credentials are; the password itself only when it was just made."""
    print_import(outcome.imported)
    creds = outcome.up.credentials
    rows = [
        ("Superset", f"{service.url(settings)}  ({'started' if outcome.up.started else 'already running'})"),
        ("user", service.ADMIN_USER),
        ("password", f"in {creds.path} ({service.PASSWORD_VAR})"),
        ("log", str(service.log_file(settings))),
    ]
    rows += [(f"{step} s", f"{seconds:.1f}") for step, seconds in outcome.up.timings.items()]
    console.print(key_values("Superset", rows))
    if creds.created:
        console.print(f"[bold]Superset admin password (shown once; kept in {creds.path}):[/] {creds.admin_password}")


def print_check(report: service.CheckReport) -> None:
    rows = [(d["title"], d["charts"], d["rendered"], len(d["errors"]), len(d["empty"]), d["screenshot"])
            for d in report.dashboards]
    console.print(table("Dashboards in headless Chromium", ["dashboard", "charts", "rendered", "errors", "empty",
                                                            "screenshot"], rows))
    for d in report.dashboards:
        for error in d["errors"]:
            console.print(f"[red]{d['title']}:[/] {error}")
