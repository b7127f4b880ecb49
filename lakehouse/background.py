"""The services the CLI starts in the background (MLflow UI, Superset, the detached stream): each
has a pid file under <data dir>/run, a log under <data dir>/logs and a process group of its own,
so `down` stops it with everything it spawned."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from lakehouse.server import ServerError, _stop_group


@dataclass(frozen=True)
class Background:
    name: str  # for messages: "the MLflow UI", "Superset", "the stream"
    pid_file: Path
    log_file: Path
    marker: str  # a word of the process's command line: a recycled pid is not taken for ours

    @property
    def title(self) -> str:  # the name at the start of a sentence
        return self.name[:1].upper() + self.name[1:]

    def running_pid(self) -> int | None:
        """The pid if the process still runs (a zombie does not); a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE and self.marker in " ".join(process.cmdline()):
                return pid
        except psutil.Error:
            pass
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, command: Sequence[str], ready: Callable[[], bool], timeout: float, *,
              env: dict[str, str] | None = None, cwd: Path | None = None,
              error: type[Exception] = ServerError, poll: float = 0.5) -> int:
        """Start `command` in its own session and wait until `ready()`; its pid. A process that
        exits first, or is not ready in time (it is stopped then), raises `error` naming the log."""
        for folder in (self.pid_file.parent, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - the project's own commands
                list(command), cwd=cwd, env=env if env is not None else dict(os.environ), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return proc.pid
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise error(f"{self.title} exited during start-up; see {self.log_file}")
            time.sleep(poll)
        self.stop()
        raise error(f"{self.title} did not start within {timeout:.0f}s; see {self.log_file}")

    def stop(self, grace: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL what is left after `grace` s; False if nothing ran."""
        pid = self.running_pid()
        if pid is None:
            return False
        try:
            _stop_group(pid, grace=grace)
        except ProcessLookupError:  # the group ended between the check and the signal
            pass
        self.pid_file.unlink(missing_ok=True)
        return True
