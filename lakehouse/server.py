"""Lifecycle of the lakehouse server: `up`, `down` and the state that `status` reports."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from lakehouse.settings import Settings

SERVER_MODULE = "lakehouse.server_process"


class ServerError(RuntimeError):
    """Something stops the server from starting or stopping; the message says what to do."""


@dataclass(frozen=True)
class ServerState:
    """What the running server wrote about itself (see server_process.write_state)."""

    pid: int
    host: str
    thrift_port: int
    connect_port: int
    master: str
    spark_version: str
    delta_version: str
    delta_jars: list[str]
    ui_url: str | None
    started_at: str
    home: str

    @classmethod
    def read(cls, path: Path) -> ServerState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "server.pid"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """Best-effort description of the process listening on `port`."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    proc = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(proc.cmdline()[:3])[:80]})"
                return "another process"
    except (psutil.Error, OSError):
        pass
    return "another process"


def _is_server_process(pid: int) -> bool:
    try:
        return SERVER_MODULE in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def running_pid(settings: Settings) -> int | None:
    """The pid of this data directory's server if it runs; a stale pid file is removed, loudly."""
    path = pid_file(settings)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _is_server_process(pid):
        return pid
    print(f"Removing stale pid file {path} (pid {pid} is not a running lakehouse server).")
    path.unlink(missing_ok=True)
    settings.state_file.unlink(missing_ok=True)
    return None


def read_state(settings: Settings) -> ServerState | None:
    if running_pid(settings) is None:
        return None
    return ServerState.read(settings.state_file)


def _check_ports_free(settings: Settings) -> None:
    for name, port, var in (
        ("Thrift", settings.thrift_port, "LAKEHOUSE_THRIFT_PORT"),
        ("Spark Connect", settings.connect_port, "LAKEHOUSE_CONNECT_PORT"),
    ):
        if port_open(settings.host, port):
            raise ServerError(
                f"Port {settings.host}:{port} ({name}) is already in use by {port_owner(port)}. "
                f"Stop that process, or choose another port with {var}=<port>."
            )


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"


def up(settings: Settings, timeout: float = 180.0, quiet: bool = False) -> tuple[ServerState, bool]:
    """Start the server unless it runs; return its state and whether this call started it.

    Two `up`s at once on one data directory: the second waits for the first (a lock file) and
    then finds the server running, instead of starting a second driver on the same metastore."""
    from lakehouse import locks

    try:
        with locks.exclusive(settings, "up", wait=timeout + 120, what="`lakehouse up`"):
            return _up(settings, timeout, quiet)
    except locks.LockHeld as held:
        raise ServerError(str(held)) from None


def _up(settings: Settings, timeout: float, quiet: bool) -> tuple[ServerState, bool]:
    from lakehouse import delta_jars

    pid = running_pid(settings)
    if pid is not None:
        state = _wait_ready(settings, pid, timeout)
        return state, False
    _check_ports_free(settings)
    try:
        delta_jars.resolve(settings, say=(lambda _message: None) if quiet else print)
    except delta_jars.DeltaJarsError as error:
        raise ServerError(f"The lakehouse server needs Delta Lake's jars: {error}") from None
    for folder in (settings.logs_dir, settings.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    settings.state_file.unlink(missing_ok=True)
    # A process that opened a Spark Connect session carries these; the driver must not see them.
    client_only = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE")
    env = {k: v for k, v in os.environ.items() if k not in client_only}
    env.update(settings.as_env(), SPARK_LOCAL_IP="127.0.0.1")
    with open(settings.server_log, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", SERVER_MODULE],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.home,
            env=env,
            start_new_session=True,  # own process group: `down` stops the JVM with it
        )
    pid_file(settings).write_text(f"{proc.pid}\n")
    if not quiet:
        print(f"Starting the lakehouse server (pid {proc.pid}, log {settings.server_log}) ...")
    return _wait_ready(settings, proc.pid, timeout, proc), True


def _wait_ready(
    settings: Settings, pid: int, timeout: float, proc: subprocess.Popen | None = None
) -> ServerState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = ServerState.read(settings.state_file)
        if (
            state is not None
            and port_open(settings.host, settings.thrift_port)
            and port_open(settings.host, settings.connect_port)
        ):
            return state
        exited = proc.poll() is not None if proc else not psutil.pid_exists(pid)
        if exited:
            pid_file(settings).unlink(missing_ok=True)
            raise ServerError(
                f"The lakehouse server exited during start-up. Last lines of {settings.server_log}:\n"
                + _log_tail(settings.server_log)
            )
        time.sleep(0.5)
    _stop_group(pid, grace=10)
    pid_file(settings).unlink(missing_ok=True)
    raise ServerError(
        f"The lakehouse server did not answer on ports {settings.thrift_port} and "
        f"{settings.connect_port} within {timeout:.0f}s; see {settings.server_log}"
    )


def _stop_group(pid: int, grace: float) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after `grace` seconds."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    members = [p for p in psutil.process_iter() if _pgid(p) == pgid]
    os.killpg(pgid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, psutil.Error):
        return None


def down(settings: Settings, grace: float = 30.0) -> bool:
    """Stop the server and every process it started; False if it was not running."""
    pid = running_pid(settings)
    if pid is None:
        return False
    _stop_group(pid, grace)
    pid_file(settings).unlink(missing_ok=True)
    settings.state_file.unlink(missing_ok=True)
    return True


def server_rss_bytes(settings: Settings) -> int:
    """Resident memory of the server and its JVM (for status and the benchmark)."""
    pid = running_pid(settings)
    if pid is None:
        return 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs)
    except psutil.Error:
        return 0
