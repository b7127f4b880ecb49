"""The lakehouse server: one driver, Thrift and Spark Connect on one catalog, clean lifecycle."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from pyhive import hive

from lakehouse import server
from lakehouse.settings import Settings
from tests.conftest import free_port


def test_up_serves_thrift_and_connect_on_one_catalog(spark, lakehouse_server):
    state = server.read_state(lakehouse_server)
    assert state is not None
    assert (state.thrift_port, state.connect_port) == (lakehouse_server.thrift_port, lakehouse_server.connect_port)
    assert state.host == "127.0.0.1"
    assert state.delta_version == "4.1.0" and all(Path(jar).is_file() for jar in state.delta_jars)
    spark.sql("create database if not exists scratch")
    spark.sql("create table scratch.handshake as select 42 as answer")  # no USING: Delta is the default
    # The table written over Spark Connect is visible over Thrift: one catalog, one driver.
    with hive.connect(host="127.0.0.1", port=lakehouse_server.thrift_port, username="test") as conn:
        cursor = conn.cursor()
        cursor.execute("select answer from scratch.handshake")
        assert cursor.fetchall() == [(42,)]
        cursor.execute("describe detail scratch.handshake")
        columns = [d[0] for d in cursor.description]
        assert cursor.fetchall()[0][columns.index("format")] == "delta"
    spark.sql("drop database scratch cascade")


def test_ports_bind_to_loopback_only(lakehouse_server):
    pid = server.running_pid(lakehouse_server)
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    listening = {
        (c.laddr.ip, c.laddr.port)
        for p in procs
        for c in p.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }
    ours = {ip for ip, port in listening if port in (lakehouse_server.thrift_port, lakehouse_server.connect_port)}
    assert ours and all(ip.endswith("127.0.0.1") for ip in ours), listening


def test_second_up_says_already_running(lakehouse_server):
    pid = server.running_pid(lakehouse_server)
    result = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "up"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"already running (pid {pid})" in result.stdout
    assert server.running_pid(lakehouse_server) == pid


def test_status_lists_ports_format_and_tables(lakehouse_server, spark):
    spark.sql("create database if not exists gold")
    spark.sql("drop table if exists gold.status_probe")
    spark.sql("create table gold.status_probe as select id from range(3)")
    result = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "status"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    spark.sql("drop table gold.status_probe")
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(lakehouse_server.thrift_port) in result.stdout
    assert str(lakehouse_server.connect_port) in result.stdout
    assert "Delta Lake" in result.stdout
    # the row count, the Delta version (0: one commit) and the last operation
    probe = next(line for line in result.stdout.splitlines() if "status_probe" in line)
    cells = [cell.strip() for cell in probe.strip(" │").split("│")]
    assert cells[2:4] == ["3", "0"] and cells[4].startswith("CREATE"), cells


def test_busy_port_gives_a_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings(home=tmp_path, thrift_port=port, connect_port=free_port())
        with pytest.raises(server.ServerError, match=rf"{port} \(Thrift\) is already in use"):
            server.up(settings, timeout=30)
    assert not (tmp_path / "run" / "server.pid").exists()


def test_stale_pid_file_is_removed_with_a_message(tmp_path, capsys):
    settings = Settings(home=tmp_path)
    settings.run_dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    server.pid_file(settings).write_text(f"{dead.pid}\n")
    assert server.running_pid(settings) is None
    assert "stale pid file" in capsys.readouterr().out.lower()
    assert not server.pid_file(settings).exists()


def _second_server(tmp_path, **changes) -> Settings:
    return Settings(
        home=tmp_path, thrift_port=free_port(), connect_port=free_port(), driver_memory="1g", **changes
    )


def thrift_answers(settings, conn=None) -> bool:
    cursor = (conn or hive.connect(host="127.0.0.1", port=settings.thrift_port, username="test")).cursor()
    cursor.execute("select 1 + 1")
    return cursor.fetchall() == [(2,)]


def test_down_stops_the_server_and_every_child(tmp_path, lakehouse_server):
    settings = _second_server(tmp_path, master="local[1]")
    session_conn = hive.connect(host="127.0.0.1", port=lakehouse_server.thrift_port, username="test")
    assert thrift_answers(lakehouse_server, session_conn)
    state, started = server.up(settings, timeout=240)
    assert started
    # Hive's working folders are the server's own, under its data directory.
    own_conn = hive.connect(host="127.0.0.1", port=settings.thrift_port, username="test")
    assert thrift_answers(settings, own_conn)
    assert any((settings.run_dir / "hive" / "operation_logs").iterdir())  # the open session's folder
    own_conn.close()
    assert state.master == "local[1]"  # --master / LAKEHOUSE_MASTER reaches the driver
    assert (settings.logs_dir / "server.log").stat().st_size > 0
    root = psutil.Process(state.pid)
    family = [root, *root.children(recursive=True)]
    assert any("java" in p.name() for p in family), "the JVM runs as a child of the server"
    assert server.down(settings)
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive
    assert not server.port_open("127.0.0.1", settings.thrift_port)
    assert not (settings.run_dir / "server.pid").exists()
    assert server.down(settings) is False
    # Stopping one server leaves the other's Thrift sessions working: the one opened before and
    # a new one (by default both servers' operation logs were in /tmp/<user>/operation_logs, which
    # a stopping server deletes).
    assert thrift_answers(lakehouse_server, session_conn)
    assert thrift_answers(lakehouse_server)
    session_conn.close()


def test_up_fails_fast_without_the_delta_jars(tmp_path):
    """No Delta, no server: `up` names the missing jar and the way in, and leaves nothing running."""
    empty = tmp_path / "no-jars"
    empty.mkdir()
    settings = _second_server(tmp_path, delta_jars=empty)
    started = time.monotonic()
    with pytest.raises(server.ServerError, match=r"delta-spark_4\.1_2\.13-4\.1\.0\.jar.*") as raised:
        server.up(settings, timeout=240)
    assert "LAKEHOUSE_DELTA_JARS" in str(raised.value)
    assert time.monotonic() - started < 10
    assert server.running_pid(settings) is None and not server.port_open("127.0.0.1", settings.thrift_port)
