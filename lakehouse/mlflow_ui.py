"""The MLflow UI as a service of the project: `lakehouse mlflow up|down` (and `make mlflow`).

It serves the local tracking store (SQLite + artifacts under LAKEHOUSE_MLFLOW_DIR) on
127.0.0.1:<LAKEHOUSE_MLFLOW_PORT>, logs to <data dir>/logs/mlflow.log, and runs without MLflow's
background job workers, which would otherwise outlive a SIGTERM.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from lakehouse.server import ServerError, _stop_group, port_open, port_owner
from lakehouse.settings import Settings


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "mlflow.pid"


def log_file(settings: Settings) -> Path:
    return settings.logs_dir / "mlflow.log"


def url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.mlflow_port}"


def running_pid(settings: Settings) -> int | None:
    try:
        pid = int(pid_file(settings).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        if "mlflow" in " ".join(psutil.Process(pid).cmdline()):
            return pid
    except psutil.Error:
        pass
    pid_file(settings).unlink(missing_ok=True)
    return None


def up(settings: Settings, timeout: float = 60.0) -> bool:
    """Start the UI unless it runs; True if this call started it."""
    if running_pid(settings) is not None:
        return False
    if port_open(settings.host, settings.mlflow_port):
        raise ServerError(
            f"Port {settings.mlflow_port} is taken by {port_owner(settings.mlflow_port)}; "
            "set LAKEHOUSE_MLFLOW_PORT to another port."
        )
    for folder in (settings.logs_dir, settings.run_dir, settings.artifacts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", settings.artifacts_dir.as_uri(),
        "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_file(settings), "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - mlflow's own CLI
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    pid_file(settings).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(settings.host, settings.mlflow_port):
            return True
        if proc.poll() is not None:
            pid_file(settings).unlink(missing_ok=True)
            raise ServerError(f"The MLflow UI exited during start-up; see {log_file(settings)}")
        time.sleep(0.5)
    down(settings)
    raise ServerError(f"The MLflow UI did not answer within {timeout:.0f}s; see {log_file(settings)}")


def down(settings: Settings) -> bool:
    pid = running_pid(settings)
    if pid is None:
        return False
    _stop_group(pid, grace=15)
    pid_file(settings).unlink(missing_ok=True)
    return True
