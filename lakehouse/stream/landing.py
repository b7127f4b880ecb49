"""The landing folder's contract: which files the stream reads, and when.

Spark's file source reads a file once, by name, as it is when it lists it. A file copied in with
`cp` or `scp` (written in place, not renamed in) would be read half-written and the rest never; a
name seen before would be skipped for good; a file whose mtime is old (`cp -p`, `rsync -a`, unzip)
would fall outside the source's `maxFileAge` and never be read. So the query never reads the
landing folder. It reads the stream's inbox, and files reach the inbox in one of two ways:

- `Gate`, which runs in the stream's process, moves a file from the landing folder into the inbox
  once it is whole. Names starting with '.' or ending in a partial-download suffix (`.tmp`,
  `.part`, ...) are still being written and are left alone. Any other file must have no process
  holding it open for writing (on Linux, a read lease cannot be taken then), and its size and
  mtime must have stayed the same for `settle` seconds.
- `land()` is the way in for programs (`lakehouse land`, `lakehouse replay`, the API). It runs the
  same checks and writes straight into the inbox, atomically: a dot-name first, then a rename.

Either way, the file is checked before the stream sees it. A file that is not readable text
(it holds a NUL byte, has a line over MAX_LINE_BYTES, or cannot be read) goes to the dead-letter
folder, with a row in bronze.quarantine that says why; bad lines in a readable file are the
parser's business, one reason per line. In the inbox, a file gets a name that is unique within
this stream. It is made of safe characters, and a name used before gets `~2`, `~3`, ... so it is
read again, as new data. Its mtime is set to the moment it was taken, so `landed_at` is when the
stream saw it, and the file source's `maxFileAge` never skips it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import delta, tables
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# A rating line is a few dozen bytes; a line of a megabyte is not a rating, and a file of one
# 200 MB line would have the file source hold it whole in the server's memory.
MAX_LINE_BYTES = 1 << 20
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".download", "~")
RAW_SAMPLE_CHARS = 200  # the quarantine row of a dead-lettered file shows how it starts
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # Hadoop paths choke on ':' and friends; keep names plain
_CHUNK = 1 << 22


class LandingError(RuntimeError):
    """A file `land()` refused; the message says which and why."""


def in_progress(name: str) -> bool:
    return name.startswith(".") or name.endswith(IN_PROGRESS_SUFFIXES)


def problem(path: Path) -> str | None:
    """Why the stream cannot read this file as text, or None. Reads it once, in chunks: linear
    time, memory bounded by the chunk size whatever the file's line lengths."""
    try:
        with open(path, "rb") as data:
            run = 0  # bytes since the last line terminator
            line = 1
            while chunk := data.read(_CHUNK):
                if (nul := chunk.find(b"\0")) >= 0:
                    at = line + chunk.count(b"\n", 0, nul)
                    return f"holds NUL bytes (line {at}): not a text file"
                pieces = chunk.replace(b"\r", b"\n").split(b"\n")
                longest = max(run + len(pieces[0]), max(map(len, pieces[1:]), default=0))
                if longest > MAX_LINE_BYTES:
                    return f"has a line over {MAX_LINE_BYTES:,} bytes (near line {line}): not a ratings file"
                run = run + len(pieces[0]) if len(pieces) == 1 else len(pieces[-1])
                line += chunk.count(b"\n")
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    return None


def being_written(path: Path) -> bool:
    """Whether a process has the file open for writing. Linux refuses a read lease on such a file
    (fcntl F_SETLEASE); where leases are not available, only the settle time protects it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False  # gone or unreadable: the caller finds out
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as error:
        return error.errno in (errno.EAGAIN, errno.EBUSY)
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def safe_name(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip("._") or "file"
    return cleaned[:150]


class Names:
    """The names this stream has given to files in its inbox, in a file beside its checkpoint:
    shared by the gate and `lakehouse land` (another process), under a lock."""

    def __init__(self, record: Path) -> None:
        self.record = record

    def allocate(self, wanted: str, inbox: Path) -> str:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with open(self.record, "a+", encoding="utf-8") as log:
            fcntl.flock(log, fcntl.LOCK_EX)
            log.seek(0)
            used = set(log.read().split("\n"))
            base = safe_name(wanted)
            stem, dot, suffix = base.partition(".")
            name, n = base, 1
            while name in used or (inbox / name).exists():
                n += 1
                name = f"{stem}~{n}{dot}{suffix}"
            log.write(name + "\n")
            log.flush()
        return name


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


def _move(source: Path, target: Path) -> None:
    """Rename `source` to `target`; across file systems, copy to a dot-name beside the target and
    rename that, so the target appears whole."""
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.utime(tmp, ns=(time.time_ns(),) * 2)
        os.rename(tmp, target)
        source.unlink()
    fsync_dir(target.parent)


def _write_whole(target: Path, fill: Callable[[Path], object]) -> None:
    """`fill` a dot-name beside `target`, make it durable, then rename it: the file appears whole,
    with mtime = landing time (which the rename keeps)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fill(tmp)
        with open(tmp, "rb+") as out:
            os.fsync(out.fileno())
        os.utime(tmp, ns=(time.time_ns(),) * 2)
        os.rename(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def deposit(settings: Settings, name: str, data: bytes) -> Path:
    """Write `data` into the inbox as a new file named after `name` (made unique): the REST API's
    way in. The caller has checked the lines; the stream checks them again."""
    inbox = settings.stream_inbox_dir
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / Names(settings.stream_names_record).allocate(name, inbox)
    _write_whole(target, lambda tmp: tmp.write_bytes(data))
    return target


def admit(source: Path, settings: Settings, *, copy: bool = False) -> Path:
    """Put `source` into the inbox under a unique name, with mtime now; returns its new path.
    `copy` leaves `source` where it is (`lakehouse land`); otherwise it is moved."""
    inbox = settings.stream_inbox_dir
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / Names(settings.stream_names_record).allocate(source.name, inbox)
    if copy:
        _write_whole(target, lambda tmp: shutil.copyfile(source, tmp))
    else:
        os.utime(source, ns=(time.time_ns(),) * 2)  # before the move: the file source may list it at once
        _move(source, target)
    return target


def land(settings: Settings, paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """`lakehouse land`: check every file, then copy each into the inbox; (given, landed) pairs.
    Nothing is landed when one file is refused, and the error names each refused file and why."""
    paths = [Path(p) for p in paths]
    refused = []
    for path in paths:
        if not path.is_file():
            refused.append(f"{path}: not a file")
        elif (why := problem(path)) is not None:
            refused.append(f"{path}: {why}")
    if refused:
        raise LandingError("not landed (nothing was):\n  " + "\n  ".join(refused))
    return [(path, admit(path, settings, copy=True)) for path in paths]


def dead_letter_row(source_file: str, reason: str, sample: str, load_id: str) -> tuple:
    """A bronze.quarantine row for a file the stream could not read at all (line 0: the file)."""
    return (source_file, 0, sample, f"dead-lettered: the file {reason}", tables.RATING_EVENTS.name,
            delta.utc_now(), load_id)


def sample(path: Path) -> str:
    try:
        with open(path, "rb") as data:
            return data.read(RAW_SAMPLE_CHARS).decode("utf-8", errors="backslashreplace")
    except OSError:
        return ""


def move_to_dead_letter(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{stamp}-{safe_name(path.name)}"
    _move(path, target)
    return target


@dataclass
class Gate:
    """Moves whole files from the landing folder into the inbox; see the module docstring.
    `scan()` is one pass; the stream's process calls it every half second."""

    settings: Settings
    stream_id: str
    settle: float
    log: Callable[[str], None]
    _seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # name -> size, mtime, since
    _warned: set[str] = field(default_factory=set)
    admitted: int = 0
    dead_lettered: int = 0

    def waiting(self) -> int:
        return len(self._seen)

    def scan(self, spark: SparkSession | None) -> None:
        landing = self.settings.stream_dir
        landing.mkdir(parents=True, exist_ok=True)
        now = time.monotonic()
        present = set()
        for entry in os.scandir(landing):
            if in_progress(entry.name):
                continue
            present.add(entry.name)
            if not entry.is_file(follow_symlinks=False):
                if entry.name not in self._warned:
                    self._warned.add(entry.name)
                    self.log(f"landing: {entry.name} is not a regular file; only files directly in "
                             f"{landing} are read (it is left there)")
                continue
            stat = entry.stat(follow_symlinks=False)
            key = (stat.st_size, stat.st_mtime_ns)
            before = self._seen.get(entry.name)
            if before is None or before[:2] != key:
                self._seen[entry.name] = (*key, now)  # new, or changed since the last look
                continue
            if now - before[2] < self.settle or being_written(Path(entry.path)):
                continue
            self.take(Path(entry.path), spark)
        for gone in set(self._seen) - present:
            self._seen.pop(gone, None)

    def take(self, path: Path, spark: SparkSession | None) -> None:
        why = problem(path)
        if why is None:
            target = admit(path, self.settings)
            self._seen.pop(path.name, None)
            self.admitted += 1
            renamed = "" if target.name == path.name else f" as {target.name}"
            self.log(f"landing: took {path.name}{renamed} ({target.stat().st_size:,} bytes)")
            return
        if spark is None:
            return  # the quarantine row cannot be written now; the file waits for the next look
        self.reject(path, why, spark)

    def reject(self, path: Path, why: str, spark: SparkSession) -> None:
        """Quarantine row first, then the move: a crash between the two leaves the file in the
        landing folder, and the row (keyed by the file's name, size and mtime) is not written twice."""
        from pyspark.sql import functions as F

        stat = path.stat()
        load_id = f"dead-letter-{self.stream_id}-{safe_name(path.name)}-{stat.st_size}-{stat.st_mtime_ns}"
        quarantine = spark.table(tables.QUARANTINE.name)
        if not quarantine.where(F.col("load_id") == load_id).limit(1).count():
            row = dead_letter_row(path.name, why, sample(path), load_id)
            delta.append(spark.createDataFrame([row], tables.QUARANTINE.schema), tables.QUARANTINE)
        target = move_to_dead_letter(path, self.settings.stream_dead_letter_dir)
        self._seen.pop(path.name, None)
        self.dead_lettered += 1
        self.log(f"landing: {path.name} {why}; moved to {target} (bronze.quarantine has the reason)")
