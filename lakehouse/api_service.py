"""The REST API as a service of the project: `lakehouse api up|down|status` (and `make run`).

uvicorn serves api.app on 127.0.0.1:<LAKEHOUSE_API_PORT> with LAKEHOUSE_API_WORKERS processes
(one per core by default: the request path is Python and NumPy, so a process per core is what
uses the machine) and logs to <data dir>/logs/api.log. It is up once /ready answers 200: a worker
accepts connections only after its first snapshot is loaded, so no request meets an empty one
(ml-100k loads in under a second; 25M ratings take about 90 s, hence the long timeout).
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

from lakehouse import secrets
from lakehouse.background import Background
from lakehouse.server import ServerError, port_open, port_owner
from lakehouse.settings import Settings


def service(settings: Settings) -> Background:
    return Background("the API", settings.run_dir / "api.pid", settings.logs_dir / "api.log", "api.app:create_app")


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.api_port}"


def readiness(settings: Settings, timeout: float = 2.0) -> dict | None:
    """GET /ready's body (ready or not), or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url(settings)}/ready", timeout=timeout) as response:  # noqa: S310 - loopback
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return json.load(error)
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def up(settings: Settings, timeout: float = 600.0) -> bool:
    """Start the API unless it runs; True if this call started it. Returns once it is ready."""
    api = service(settings)
    if api.running_pid() is not None:
        return False
    if port_open(settings.host, settings.api_port):
        raise ServerError(f"Port {settings.api_port} is taken by {port_owner(settings.api_port)}; "
                          "set LAKEHOUSE_API_PORT to another port.")
    command = [
        sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
        "--host", settings.host, "--port", str(settings.api_port), "--workers", str(settings.api_workers),
        "--loop", "uvloop", "--http", "httptools",  # the C event loop and parser, not the pure-Python ones
        "--no-access-log", "--timeout-graceful-shutdown", "5",
    ]
    secrets.admin_token(settings)  # generated here once, before the workers read it
    env = {**os.environ, **settings.as_env()}
    api.start(command, lambda: _settled(readiness(settings)), timeout, env=env)
    return True


def _settled(answer: dict | None) -> bool:
    """Ready, or up and waiting for tables that do not exist yet (it serves them once they do):
    either way there is no point in waiting longer."""
    return answer is not None and (answer.get("ready") is True or "does not exist yet" in answer.get("detail", ""))


def down(settings: Settings) -> bool:
    return service(settings).stop(grace=10)
