"""`lakehouse docs up|status|down` as a user runs it, without a lakehouse server: the site built
from the project alone (`dbt parse`, `dbt docs generate --no-compile --empty-catalog`), served in
the background on 127.0.0.1, logging under the data directory, and stopped by `down`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil

from bench.harness import free_port

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]


def cli(home: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_DOCS_PORT": str(port),
           "LAKEHOUSE_THRIFT_PORT": str(free_port()),  # nothing listens there: no server
           "COLUMNS": "300"}
    env.pop("DBT_TARGET_PATH", None)  # the site goes to <home>/docs whatever the caller's target
    return subprocess.run([*LAKEHOUSE, "docs", *args], env=env, capture_output=True, text=True, timeout=300)


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read()


def test_up_serves_the_catalog_and_down_stops_it(tmp_path):
    port = free_port()
    up = cli(tmp_path, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"Docs site started: http://127.0.0.1:{port}" in up.stdout
        assert "from the project alone" in up.stdout and "gaps" not in up.stdout
        assert b"dbt" in get(port, "/index.html")
        manifest = json.loads(get(port, "/manifest.json"))
        users = manifest["nodes"]["model.movielens_lakehouse.users"]
        assert users["config"]["meta"] == {"owner": "analytics", "personal_data": "direct"}
        assert "exposure.movielens_lakehouse.rest_api" in manifest["exposures"]
        assert json.loads(get(port, "/catalog.json"))["nodes"] == {}  # no server: an empty catalog
        pid = int((tmp_path / "run" / "docs.pid").read_text())
        listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        assert "GET /manifest.json" in (tmp_path / "logs" / "docs.log").read_text()
        status = cli(tmp_path, port, "status")
        assert status.returncode == 0 and f"Docs: http://127.0.0.1:{port}" in status.stdout
        again = cli(tmp_path, port, "up")
        assert "already running, regenerated" in again.stdout, again.stdout + again.stderr
    finally:
        down = cli(tmp_path, port, "down")
    assert "The docs site stopped." in down.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert cli(tmp_path, port, "status").returncode == 1
