"""What several integration tests do: wait for a condition, land a file as the simulator does,
follow a log, start a fresh stream, kill a process group, run the `lakehouse` CLI."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import kill_group  # noqa: F401 - the tests import it from here
from lakehouse.stream import job

REPO = Path(__file__).resolve().parent.parent.parent


def wait_for(predicate, timeout: float, what: str, step: float = 1.0):
    """`predicate()`'s first truthy value, polled every `step` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def land(folder: Path, name: str, data: bytes | str) -> Path:
    """Write as the simulator does: a dot-name first, then an atomic rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    final = folder / name
    os.rename(tmp, final)
    return final


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_since(path: Path, offset: int) -> str:
    """What `path` (a log file) gained since it was `offset` bytes long."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", errors="replace")


def fresh_stream(base, landing: Path, **overrides):
    """`base` with its own landing folder and a 1 s trigger, and no checkpoint for that folder:
    the next stream started on it begins from nothing."""
    settings = dataclasses.replace(base, **{"stream_dir": landing, "stream_trigger_seconds": 1.0, **overrides})
    job.stop(settings)  # none must be running on the checkpoint removed here
    shutil.rmtree(settings.stream_checkpoint, ignore_errors=True)
    return settings


def lakehouse_cli(settings, *args: str, timeout: float = 900) -> str:
    """`lakehouse ARGS` as a user runs it, against `settings`' server; it must succeed and return
    (the CLI releases its Spark Connect sessions before exit). One that hangs gets SIGABRT, and its
    threads' Python stacks (faulthandler) are in the failure. Returns its standard output."""
    proc = lakehouse_cli_run(settings, *args, timeout=timeout)
    assert proc.returncode == 0, f"lakehouse {' '.join(args)} exited {proc.returncode}:\n" + \
        "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    return proc.stdout


def lakehouse_cli_run(settings, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`lakehouse ARGS` as lakehouse_cli runs it (it must return; one that hangs fails the same
    way), whatever its exit code: the code, standard output and error are the caller's to check."""
    proc = subprocess.Popen([sys.executable, "-m", "lakehouse.cli", *args], cwd=REPO, text=True,
                            env={**os.environ, **settings.as_env(), "PYTHONFAULTHANDLER": "1", "COLUMNS": "200"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        stdout, stderr = proc.communicate(timeout=60)
        raise AssertionError(f"lakehouse {' '.join(args)} did not return within {timeout:.0f}s; its output ended "
                             "with:\n" + "\n".join(stdout.splitlines()[-15:]) + "\nstacks:\n"
                             + "\n".join(stderr.splitlines()[-80:])) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
