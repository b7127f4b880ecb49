"""`lakehouse api up|status|down` as a user runs it: uvicorn in the background, on 127.0.0.1,
logging under the data directory, ready once the tables load, waiting for them when they do not
exist yet, and stopped with every worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

import api_fixtures as fx
from bench.harness import free_port

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]

def cli(home: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_API_PORT": str(port), "LAKEHOUSE_API_WORKERS": "2",
           "LAKEHOUSE_STREAM_DIR": str(home / "landing"), "COLUMNS": "300"}
    return subprocess.run([*LAKEHOUSE, "api", *args], env=env, capture_output=True, text=True, timeout=180)

def get(port: int, path: str) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        return json.load(error)

def test_up_serves_the_tables_and_down_stops_every_worker(tmp_path):
    fx.build(tmp_path)
    port = free_port()
    up = cli(tmp_path, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"API started: http://127.0.0.1:{port}" in up.stdout and "serving model als-ranking v1" in up.stdout
        assert get(port, "/ready")["ready"] is True
        assert get(port, "/v1/movies/search?q=godfater")["results"][0]["title"] == "Godfather, The"
        pid = int((tmp_path / "run" / "api.pid").read_text())
        workers = psutil.Process(pid).children(recursive=True)
        assert len([w for w in workers if "multiprocessing" in " ".join(w.cmdline())]) >= 2
        listening = [c for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        again = cli(tmp_path, port, "up")
        assert "already running" in again.stdout
        assert "serving" in (tmp_path / "logs" / "api.log").read_text()  # each worker logs its snapshot
    finally:
        down = cli(tmp_path, port, "down")
    assert "The API stopped." in down.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers)
    assert cli(tmp_path, port, "status").returncode == 1


def test_up_before_the_tables_exist_says_what_it_waits_for(tmp_path):
    port = free_port()
    up = cli(tmp_path, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "not ready" in up.stdout and "gold.movies does not exist yet" in up.stdout
        assert get(port, "/ready")["ready"] is False
        fx.build(tmp_path)  # the tables appear: the running API picks them up at its next poll
        deadline = time.monotonic() + 60
        while get(port, "/ready")["ready"] is not True:
            assert time.monotonic() < deadline, get(port, "/ready")
            time.sleep(0.5)
    finally:
        cli(tmp_path, port, "down")
