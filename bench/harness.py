"""What the benchmarks share: free ports, kill -9 of a process group, summary statistics, the machine and how busy it is (these
2-core machines are shared, so every result says how loaded it was), PyHive's errors made short,
and a reader that polls table counts over Thrift as a dashboard would (tests/integration/
test_readers.py asserts with the same reader)."""
from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil

POLL_SECONDS = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_group(pid: int | None) -> None:
    """kill -9 a process group (never the caller's own), and wait until every process of it is
    gone: a JVM child outliving its leader still holds the server's ports, and so does a JVM whose
    main thread is already a zombie while its other threads are still exiting."""
    import signal

    assert pid is not None and os.getpgid(pid) != os.getpgid(0), "not a child's own process group"
    group = os.getpgid(pid)
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group:
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            pass
    os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = [process for process in members if _still_running(process)]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {group} outlived SIGKILL for 30 s: {[p.pid for p in alive]}")


def _still_running(process: psutil.Process) -> bool:
    try:
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
        return len(os.listdir(f"/proc/{process.pid}/task")) > 1  # threads still exiting
    except (psutil.NoSuchProcess, FileNotFoundError):
        return False


def stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {"n": len(values), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---- the machine, and how busy it is --------------------------------------------------------


@dataclass
class LoadSampler:
    """1-minute load average and CPU use every 5 s."""

    load: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "LoadSampler":
        psutil.cpu_percent(None)
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.load.append(os.getloadavg()[0])
            self.cpu.append(psutil.cpu_percent(None))

    def stop(self) -> dict:
        self._stop.set()
        return {"load1_mean": round(statistics.fmean(self.load), 2) if self.load else None,
                "load1_max": round(max(self.load), 2) if self.load else None,
                "cpu_percent_mean": round(statistics.fmean(self.cpu), 1) if self.cpu else None}


def other_spark_jvms() -> int:
    """Spark drivers of other people on this machine (ours is not started yet when counted)."""
    count = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "java" and "org.apache.spark.deploy.SparkSubmit" in (proc.info["cmdline"] or []):
                count += 1
        except psutil.Error:
            continue
    return count


def machine_info() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "shared": True,  # other engineers' test servers may run beside the benchmark
        "other_spark_jvms_at_start": other_spark_jvms(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# ---- a Thrift client ------------------------------------------------------------------------


def short_error(error: Exception) -> str:
    """PyHive raises with the whole Thrift response: keep the server's error class and subject."""
    try:
        text = error.args[0].status.errorMessage
    except (AttributeError, IndexError):
        text = str(error) or repr(error)
    text = text.replace("Error running query: ", "")
    return re.sub(r"org\.apache\.\S+: ", "", (text.strip().splitlines() or [repr(error)])[0])[:300]


@dataclass
class Read:
    table: str
    at: float  # monotonic, when issued
    seconds: float
    rows: int | None  # the count read; None when the read failed
    error: str | None = None


class CountReader(threading.Thread):
    """One PyHive connection, as a dashboard keeps one, running `reads` (table -> a count query)
    every POLL_SECONDS. A failed read is recorded and the connection opened again."""

    def __init__(self, host: str, port: int, reads: dict[str, str], username: str = "reader") -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.queries, self.username = host, port, reads, username
        self.reads: list[Read] = []
        self._halt = threading.Event()

    def run(self) -> None:
        from pyhive import hive

        conn = None
        while not self._halt.is_set():
            started = time.monotonic()
            for name, sql in self.queries.items():
                issued = time.monotonic()
                try:
                    if conn is None:
                        conn = hive.connect(host=self.host, port=self.port, username=self.username)
                    cursor = conn.cursor()
                    cursor.execute(sql)
                    (rows,) = cursor.fetchone()
                    cursor.close()
                    self.reads.append(Read(name, issued, time.monotonic() - issued, int(rows)))
                except Exception as error:  # noqa: BLE001 - a failed read is the finding: record it, poll on
                    self.reads.append(Read(name, issued, time.monotonic() - issued, None, short_error(error)))
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001 - the connection is being dropped anyway
                        pass
                    conn = None
            self._halt.wait(max(POLL_SECONDS - (time.monotonic() - started), 0.0))
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=120)
        assert not self.is_alive(), "the reader hung on a Thrift call"
