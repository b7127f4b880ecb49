"""Lock files for the operations that must not run twice at once on one data directory.

An advisory `flock` on `<data dir>/run/locks/<name>.lock`: the kernel drops it when its process
dies (kill -9 included), so a crash never leaves a stale lock. The holder writes who it is into
the file, and a refused caller is told (pid, command, since when).
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from lakehouse.settings import Settings


# Shared by the writers that run beside each other (each stream micro-batch, `lakehouse train`,
# housekeeping), exclusive for an erasure while it deletes and purges: its VACUUM RETAIN 0 HOURS
# would delete the new files of a commit in flight.
TABLES = "tables"
TABLES_WAIT_SECONDS = 1800.0  # a batch waits out an erasure rather than failing the stream


class LockHeld(RuntimeError):
    """Another process holds the lock; the message says which and what to do."""


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} (`{info.get('command')}`, since {info.get('since')})"


def _acquire(fd: int, mode: int, wait: float, refused) -> None:
    """flock `fd` in `mode`, polling for up to `wait` seconds; then raise `refused()`."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise refused() from None
            time.sleep(0.2)


@contextmanager
def exclusive(settings: Settings, name: str, *, wait: float = 0.0, what: str = "") -> Iterator[None]:
    """Hold lock `name` for the block. Waits up to `wait` seconds for a holder to finish, then
    raises LockHeld naming the holder."""
    with exclusive_in(settings.locks_dir, name, wait=wait, what=what, where=str(settings.home)):
        yield


@contextmanager
def exclusive_in(folder: Path, name: str, *, wait: float = 0.0, what: str = "", where: str = "") -> Iterator[None]:
    """`exclusive` with the locks folder given (code that has no Settings: the stream's batches)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, fcntl.LOCK_EX, wait, lambda: LockHeld(
            f"{what or name} is already running in this data directory ({where or folder}): held by "
            f"{_holder(fd)}; lock file {path}. Wait for it to finish, or stop that process."))
        info = {"pid": os.getpid(), "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:200],
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def shared_in(folder: Path, name: str, *, wait: float = 0.0, what: str = "") -> Iterator[None]:
    """Hold lock `name` shared with other shared holders, never beside an exclusive one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, fcntl.LOCK_SH, wait, lambda: LockHeld(
            f"{what or name} holds {path} exclusively ({_holder(fd)}); it did not finish within {wait:.0f}s"))
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def shared(settings: Settings, name: str, *, wait: float = 0.0, what: str = "") -> Iterator[None]:
    with shared_in(settings.locks_dir, name, wait=wait, what=what):
        yield
