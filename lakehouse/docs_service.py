"""The data catalog's site as a service of the project: `lakehouse docs up|down|status` (and `make docs`).

`up` writes dbt's docs site (index.html, manifest.json, catalog.json) into <data dir>/docs, apart
from the project's target/ that `dbt build` rewrites, and serves that folder with Python's
http.server on 127.0.0.1:<LAKEHOUSE_DOCS_PORT>, logging to <data dir>/logs/docs.log. With the
lakehouse server up, `dbt docs generate` reads every table's columns and types from it; without
it, the site is built from the project alone (`dbt parse` for the manifest, then `dbt docs
generate --no-compile --empty-catalog`, neither of which connects): descriptions, owners, classes
and lineage, no column types. A second `up` regenerates the files under the running server.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from lakehouse import data_catalog
from lakehouse.background import Background
from lakehouse.dbt_runner import run_dbt
from lakehouse.server import ServerError, port_open, port_owner
from lakehouse.settings import Settings


@dataclass(frozen=True)
class Generated:
    with_server: bool  # the catalog has the server's column types
    gaps: list[data_catalog.Gap]  # what the catalog lacks (lakehouse/data_catalog.py)
    summary: str


def service(settings: Settings) -> Background:
    # The served folder is the marker: it is on the command line and names this data directory.
    return Background("the docs site", settings.run_dir / "docs.pid", settings.logs_dir / "docs.log",
                      str(settings.docs_dir))


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.docs_port}"


def running_pid(settings: Settings) -> int | None:
    return service(settings).running_pid()


def generate(settings: Settings) -> Generated:
    """dbt's docs site in settings.docs_dir, from the server when it answers, else from the project."""
    target = settings.docs_dir
    with_server = port_open(settings.host, settings.thrift_port)
    if with_server:
        steps = [("docs", "generate")]
    else:
        steps = [("parse",), ("docs", "generate", "--no-compile", "--empty-catalog")]
    for step in steps:
        if not run_dbt(settings, *step, target_dir=target).ok:
            raise ServerError(f"`dbt {' '.join(step)}` failed (its output is above; dbt's log in {settings.logs_dir / 'dbt'})")
    manifest = data_catalog.load(target / "manifest.json")
    return Generated(with_server, data_catalog.gaps(manifest), data_catalog.summary(manifest))


def up(settings: Settings, timeout: float = 30.0) -> tuple[bool, Generated]:
    """Generate the site, then serve it unless it is served already; True if this call started it."""
    site = service(settings)
    if site.running_pid() is None and port_open(settings.host, settings.docs_port):
        raise ServerError(f"Port {settings.docs_port} is taken by {port_owner(settings.docs_port)}; "
                          "set LAKEHOUSE_DOCS_PORT to another port.")
    generated = generate(settings)
    if site.running_pid() is not None:
        return False, generated
    command = [sys.executable, "-m", "http.server", str(settings.docs_port), "--bind", settings.host,
               "--directory", str(settings.docs_dir)]
    site.start(command, lambda: port_open(settings.host, settings.docs_port), timeout)
    return True, generated


def down(settings: Settings) -> bool:
    return service(settings).stop(grace=5)
