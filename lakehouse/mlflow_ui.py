"""The MLflow UI as a service of the project: `lakehouse mlflow up|down` (and `make mlflow`).

It serves the local tracking store (SQLite + artifacts under LAKEHOUSE_MLFLOW_DIR) on
127.0.0.1:<LAKEHOUSE_MLFLOW_PORT>, logs to <data dir>/logs/mlflow.log, and runs without MLflow's
background job workers, which would otherwise outlive a SIGTERM.
"""
from __future__ import annotations

import os
import sys

from lakehouse.background import Background
from lakehouse.server import ServerError, port_open, port_owner
from lakehouse.settings import Settings


def service(settings: Settings) -> Background:
    return Background("the MLflow UI", settings.run_dir / "mlflow.pid", settings.logs_dir / "mlflow.log", "mlflow")


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.mlflow_port}"


def running_pid(settings: Settings) -> int | None:
    return service(settings).running_pid()


def up(settings: Settings, timeout: float = 60.0) -> bool:
    """Start the UI unless it runs; True if this call started it."""
    ui = service(settings)
    if ui.running_pid() is not None:
        return False
    if port_open(settings.host, settings.mlflow_port):
        raise ServerError(
            f"Port {settings.mlflow_port} is taken by {port_owner(settings.mlflow_port)}; "
            "set LAKEHOUSE_MLFLOW_PORT to another port."
        )
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", settings.artifacts_dir.as_uri(),
        "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    ui.start(command, lambda: port_open(settings.host, settings.mlflow_port), timeout, env=env)
    return True


def down(settings: Settings) -> bool:
    return service(settings).stop(grace=15)
