"""Background services (lakehouse/background.py) with real processes: start, readiness, stop of
the whole process group, stale pid files, start-up failures."""
from __future__ import annotations

import os
import sys
import time

import psutil
import pytest

from lakehouse.background import Background
from lakehouse.server import ServerError

# A parent that spawns a child in its own group, then writes a ready file and sleeps.
SERVICE = (
    "import pathlib, subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    "pathlib.Path(sys.argv[1]).write_text('ready'); time.sleep(300)"
)


@pytest.fixture
def service(tmp_path) -> Background:
    return Background("the test service", tmp_path / "run" / "svc.pid", tmp_path / "logs" / "svc.log", "-c")


def test_start_waits_for_ready_and_stop_ends_the_whole_group(service, tmp_path):
    ready = tmp_path / "ready"
    pid = service.start([sys.executable, "-c", SERVICE, str(ready)], ready.exists, timeout=30)
    assert ready.exists() and service.running_pid() == pid
    group = [p for p in psutil.process_iter() if p.pid != os.getpid() and _pgid(p) == pid]
    assert len(group) == 2  # the service and its child
    assert service.stop(grace=5)
    gone, alive = psutil.wait_procs(group, timeout=10)
    assert not alive
    assert service.running_pid() is None and not service.pid_file.exists()
    assert not service.stop()  # nothing left to stop


def test_a_process_that_exits_during_start_up_names_its_log(service):
    with pytest.raises(ServerError, match=r"The test service exited during start-up; see .*svc\.log"):
        service.start([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], lambda: False, timeout=30)
    assert "boom" in service.log_file.read_text()
    assert not service.pid_file.exists()


def test_a_process_never_ready_is_stopped_and_reported(service):
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not start within 2s"):
        service.start([sys.executable, "-c", "import time; time.sleep(300)"], lambda: False, timeout=2,
                      error=RuntimeError, poll=0.2)
    assert time.monotonic() - started < 30
    assert service.running_pid() is None


def test_a_stale_or_foreign_pid_file_is_not_taken_for_the_service(service, tmp_path):
    service.pid_file.parent.mkdir(parents=True)
    service.pid_file.write_text("not a pid\n")
    assert service.running_pid() is None
    other = Background("other", service.pid_file, service.log_file, "no-such-marker-in-this-cmdline")
    service.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not the service
    assert other.running_pid() is None and not service.pid_file.exists()


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, psutil.Error):
        return None
