"""Benchmark of the REST API (api/): latency under open-loop load, throughput, search, the
rating -> recommendation round trip, and memory, on the lakehouse the environment names.

The API is started the way a user starts it, `lakehouse api up` (LAKEHOUSE_API_WORKERS uvicorn
workers, LAKEHOUSE_API_PORT; `--port` picks a free one by default) and stopped at the end if this
run started it. When an API already runs for that data directory (its pid file is taken, e.g. by
another engineer), the bench serves the same tables from a shadow data directory of its own
(symlinks to the home's warehouse, stream inbox and checkpoints), so it never touches theirs.

Load comes from a separate process (multiprocessing, spawn): asyncio with raw keep-alive
HTTP/1.1 connections, reading only the status line, Content-Length and the body. It is open
loop: request i is due at t0 + i/rate whatever happened before, and its latency is measured from
that due time (a request waiting for a free connection is late, and that counts: no coordinated
omission). Any non-2xx answer, reset or timeout is an error. The generator reports its own CPU
use and how late it got requests onto the wire, so a saturated client shows.

1. GET /v1/users/{id}/recommendations?k=10 for random users that have a list, `--rate` (500/s)
   for `--seconds` (60): p50/p95/p99/max, achieved rate, errors. Target p99 <= 20 ms.
2. Throughput: the same request at stepped rates (`--steps`, `--step-seconds` each) until p99 >
   50 ms, an error, or the achieved rate falls behind; the highest rate that held.
3. GET /v1/movies/search?q=...&limit=10 over a mix of real queries (typos, years, single words,
   catalogue titles with a typo) at `--search-rate` (200/s) for `--seconds`. Target p99 <= 50 ms.
4. Floors, in the same run: GET /health at each of those rates (HTTP + uvicorn + FastAPI); the
   app called in-process over ASGI (FastAPI without HTTP); and the work alone on an
   api.catalog.load()ed Catalog (recommend.for_user, TitleIndex.search): medians per call.
5. POST /v1/ratings -> that user's list changes: with the stream running on the lakehouse
   (started detached if it is not, and stopped at the end only then), `--feedback-users` users
   each post 3 ratings of movies they have neither rated nor been recommended, staggered by
   `--feedback-interval` s; GET their recommendations every 100 ms until updated_at or the list
   changes. p50/p95 of the round trip, `--feedback-rounds` rounds. Target p95 <= 10 s.
6. Memory: RSS (and USS, which does not double-count shared pages) of the API's process tree,
   idle and at its peak under load; with `--scale-25m`, the same on synthetic Delta tables of
   ml-25m's shape (162,541 users, 62,423 movies, 25M ratings) written with deltalake into a
   scratch data directory: RSS, peak RSS while loading, and /ready's load_seconds.

The 60 s runs are run `--runs` times (default 1: they are the expensive part); the floors, the
in-process timings and the step test `--repeats` times (default 3); medians are reported.
Prints the tables and writes bench/results/api.json (machine, load average: the 2-core machine
is shared).

    .venv/bin/python -m bench.api [--home DIR] [--seconds 60] [--runs 1] [--scale-25m]
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import LoadSampler, fmt, free_port, machine_info, stats  # noqa: E402
from bench.prepared import lakehouse_cli  # noqa: E402

RECS_TARGET_P99_MS = 20.0
SEARCH_TARGET_P99_MS = 50.0
THROUGHPUT_P99_MS = 50.0
FEEDBACK_TARGET_P95_S = 10.0
K = 10
# Real queries as people type them: typos, a year, an article, single words, a prefix.
FIXED_QUERIES = ["toy stroy", "godfater", "star wars 1977", "the matrix", "star", "love", "night", "american",
                 "batman", "jurasic park", "pulp fiction", "shawshank", "terminator 2", "casablanca", "alien",
                 "the lion king", "indiana jones", "fargo", "silence of the lambs", "back to the futur",
                 "empire strikes back", "twelve monkeys", "braveheart", "forrest gump", "sleepless in seattle"]


def summary(values_ms: list[float]) -> dict:
    """harness.stats plus the p99 the targets are written in."""
    out = stats(values_ms)
    out["p99"] = float(np.percentile(values_ms, 99)) if values_ms else None
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---- the load generator (its own process) ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    paths: tuple[str, ...]  # cycled, in this order (the caller shuffles)
    rate: float  # requests/s, open loop
    seconds: float
    connections: int = 64
    warmup_seconds: float = 2.0  # at the same rate, before t0, not recorded
    drain_seconds: float = 10.0  # after the last due time, outstanding requests count as timeouts


def run_load(spec: LoadSpec) -> dict:
    """Entry point of the load process: runs one open-loop scenario, returns its figures."""
    return asyncio.run(_load(spec))


async def _connect(spec: LoadSpec):
    return await asyncio.open_connection(spec.host, spec.port)


async def _load(spec: LoadSpec) -> dict:
    requests = [f"GET {p} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n\r\n".encode() for p in spec.paths]
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []  # seconds from due time to the last body byte, measured requests only
    send_lag: list[float] = []  # seconds from due time to the write, measured requests only
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    done_at: list[float] = []

    async def worker() -> None:
        reader = writer = None
        while True:
            item = await queue.get()
            if item is None:
                break
            index, due, measured = item
            try:
                if writer is None:
                    reader, writer = await _connect(spec)
                sent = time.monotonic()
                writer.write(requests[index % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                        break
                if length:
                    await reader.readexactly(length)
                finished = time.monotonic()
                if b"connection: close" in head.lower():
                    writer.close()
                    reader = writer = None
                if measured:
                    latencies.append(finished - due)
                    send_lag.append(sent - due)
                    statuses[status] = statuses.get(status, 0) + 1
                    done_at.append(finished)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
                if measured:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(spec.connections)]
    # Open the pool before the clock starts: connection set-up is not what is measured.
    warm = max(int(spec.rate * spec.warmup_seconds), spec.connections)
    cpu0, wall0 = time.process_time(), time.monotonic()
    start = time.monotonic() + 0.05
    total = warm + int(spec.rate * spec.seconds)
    t0 = start + warm / spec.rate  # the measured window's first due time
    index = 0
    while index < total:
        now = time.monotonic()
        while index < total and start + index / spec.rate <= now:
            queue.put_nowait((index, start + index / spec.rate, index >= warm))
            index += 1
        if index < total:
            await asyncio.sleep(max(start + index / spec.rate - time.monotonic(), 0))
    last_due = start + (total - 1) / spec.rate
    for _ in workers:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(workers, timeout=max(last_due + spec.drain_seconds - time.monotonic(), 0.1))
    for task in pending:
        task.cancel()
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    measured = total - warm
    answered = sum(statuses.values())
    lost = measured - answered - sum(errors.values())
    if lost > 0:
        errors["timeout"] = errors.get("timeout", 0) + lost
    window = (max(done_at) - t0) if done_at else spec.seconds
    non_2xx = sum(n for s, n in statuses.items() if not 200 <= s < 300)
    return {
        "rate_offered": spec.rate, "seconds": spec.seconds, "connections": spec.connections,
        "requests": measured, "answered": answered,
        "rate_achieved": answered / max(window, spec.seconds) if answered else 0.0,
        "latency_ms": summary([x * 1000 for x in latencies]),
        "send_lag_ms": summary([x * 1000 for x in send_lag]),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "errors": non_2xx + sum(errors.values()), "transport_errors": errors,
        "client_cpu_percent": round(100 * cpu / wall, 1),
    }


class LoadProcess:
    """One spawned process that runs the load scenarios, one after another."""

    def __init__(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def run(self, spec: LoadSpec) -> dict:
        return self.pool.submit(run_load, spec).result(timeout=spec.warmup_seconds + spec.seconds + spec.drain_seconds + 60)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ---- the API under test ----------------------------------------------------------------------


class Api:
    """`lakehouse api up` on a data directory (a shadow one when the home's API slot is taken),
    and its process tree's memory."""

    def __init__(self, settings, note: str = "") -> None:
        self.settings = settings
        self.note = note
        self.started = False
        self._peak_rss = 0
        self._peak_uss = 0
        self._sampling = threading.Event()

    @property
    def base(self) -> str:
        return f"http://{self.settings.host}:{self.settings.api_port}"

    def up(self, timeout_note: str = "") -> dict:
        started = time.monotonic()
        self._sampling.set()
        sampler = threading.Thread(target=self._sample_until_ready, daemon=True)
        sampler.start()
        ok, tail = lakehouse_cli(self.settings, "api", "up", timeout=1800)
        self._sampling.clear()
        sampler.join(timeout=5)
        if not ok:
            raise SystemExit(f"`lakehouse api up` failed{timeout_note}:\n{tail}")
        self.started = "already running" not in tail
        ready = self.wait_all_workers_loaded()
        return {"wall_seconds_to_ready": round(time.monotonic() - started, 2), "ready": ready,
                "peak_rss_mib_while_loading": round(self._peak_rss / 2**20, 1),
                "peak_uss_mib_while_loading": round(self._peak_uss / 2**20, 1), "cli": tail.splitlines()[-1:]}

    def wait_all_workers_loaded(self, timeout: float = 1800) -> dict:
        """/ready answers 200 once one worker is loaded: wait until every worker's log line says
        it serves a snapshot (or every worker answered /ready), then return /ready's body."""
        deadline = time.monotonic() + timeout
        body = {}
        while time.monotonic() < deadline:
            body = self.get_json("/ready")[1] or {}
            pids = {c.pid for c in self.workers()}
            if body.get("ready") and pids and pids <= self._serving_pids():
                return body
            time.sleep(0.5)
        return body

    def _serving_pids(self) -> set[int]:
        import re

        try:
            text = self.settings.logs_dir.joinpath("api.log").read_text(errors="replace")[-200_000:]
        except FileNotFoundError:
            return set()
        return {int(m) for m in re.findall(r"lakehouse\.api \[pid (\d+)\]: serving", text)}

    def down(self) -> None:
        if self.started:
            lakehouse_cli(self.settings, "api", "down", timeout=120)
            self.started = False

    def master(self) -> psutil.Process | None:
        from lakehouse import api_service

        pid = api_service.service(self.settings).running_pid()
        return psutil.Process(pid) if pid else None

    def workers(self) -> list[psutil.Process]:
        master = self.master()
        if master is None:
            return []
        # uvicorn's workers; multiprocessing's resource tracker is a child too, and counts in the tree.
        return [c for c in master.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]

    def memory(self) -> dict:
        master = self.master()
        if master is None:
            return {}
        procs = [master, *master.children(recursive=True)]
        rss = uss = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()
                rss, uss = rss + info.rss, uss + info.uss
            except psutil.Error:
                pass
        self._peak_rss, self._peak_uss = max(self._peak_rss, rss), max(self._peak_uss, uss)
        return {"processes": len(procs), "rss_mib": round(rss / 2**20, 1), "uss_mib": round(uss / 2**20, 1)}

    def reset_peak(self) -> None:
        self._peak_rss = self._peak_uss = 0

    def peak(self) -> dict:
        return {"rss_mib": round(self._peak_rss / 2**20, 1), "uss_mib": round(self._peak_uss / 2**20, 1)}

    def _sample_until_ready(self) -> None:
        while self._sampling.is_set():
            self.memory()
            time.sleep(0.25)

    def sample_during(self, stop: threading.Event) -> threading.Thread:
        def run() -> None:
            while not stop.wait(1.0):
                self.memory()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def get_json(self, path: str, timeout: float = 10.0, conn: http.client.HTTPConnection | None = None):
        own = conn is None
        conn = conn or http.client.HTTPConnection(self.settings.host, self.settings.api_port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        except (OSError, http.client.HTTPException, ValueError):
            return None, None
        finally:
            if own:
                conn.close()

    def post_json(self, path: str, body: dict) -> tuple[int | None, dict | None]:
        conn = http.client.HTTPConnection(self.settings.host, self.settings.api_port, timeout=10)
        try:
            data = json.dumps(body).encode()
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json",
                                                            "Content-Length": str(len(data))})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()


def api_settings(home: Path, port: int, workers: int | None):
    from lakehouse.settings import load_settings

    base = load_settings()
    return dataclasses.replace(base, home=home, api_port=port,
                               api_workers=workers if workers else base.api_workers)


def shadow_home(home: Path) -> Path:
    """A data directory of the bench's own whose tables, stream inbox and checkpoints are the
    home's (symlinks): its own run/ (pid file) and logs/, so an API here is the bench's alone."""
    shadow = Path(tempfile.mkdtemp(prefix="lakehouse-bench-api-shadow-"))
    for name in ("warehouse", "stream-inbox", "checkpoints"):
        (home / name).mkdir(parents=True, exist_ok=True)
        (shadow / name).symlink_to(home / name)
    return shadow


# ---- what the requests ask for ---------------------------------------------------------------


def typo(word: str, rng: random.Random) -> str:
    """One adjacent transposition, deletion or doubled letter in a word of 5+ letters."""
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def search_queries(catalog, rng: random.Random, count: int = 200) -> list[str]:
    """The fixed queries, plus catalogue titles (display form, year dropped) with one typo, plus
    single title words."""
    from api.search import display_title

    titles = catalog.movies.titles
    queries = list(FIXED_QUERIES)
    while len(queries) < count:
        title = display_title(titles[rng.randrange(len(titles))])
        bare = title.rsplit(" (", 1)[0] if title.endswith(")") else title
        words = bare.split()
        if not words:
            continue
        if rng.random() < 0.25:  # a single word, as typed into a search box
            queries.append(max(words, key=len).lower())
        else:
            long_words = [i for i, w in enumerate(words) if len(w) >= 5]
            if long_words:
                i = rng.choice(long_words)
                words[i] = typo(words[i], rng)
            queries.append(" ".join(words).lower())
    return queries


def recs_paths(users: np.ndarray, rng: random.Random, count: int = 5000) -> tuple[str, ...]:
    return tuple(f"/v1/users/{int(users[rng.randrange(len(users))])}/recommendations?k={K}" for _ in range(count))


def search_paths(queries: list[str], rng: random.Random, count: int = 5000) -> tuple[str, ...]:
    return tuple(f"/v1/movies/search?q={quote(rng.choice(queries))}&limit=10" for _ in range(count))


# ---- in-process floors -----------------------------------------------------------------------


def time_calls(call, items, repeats: int) -> dict:
    """Median µs per call over `items`, `repeats` passes (after one warm pass); median of passes."""
    for item in items[: min(len(items), 200)]:
        call(item)
    per_pass = []
    for _ in range(repeats):
        samples = []
        for item in items:
            started = time.perf_counter()
            call(item)
            samples.append(time.perf_counter() - started)
        per_pass.append({"p50_us": float(np.percentile(samples, 50)) * 1e6,
                         "p99_us": float(np.percentile(samples, 99)) * 1e6})
    return {"p50_us": med([p["p50_us"] for p in per_pass]), "p99_us": med([p["p99_us"] for p in per_pass]),
            "p50_us_per_pass": [round(p["p50_us"], 1) for p in per_pass], "calls_per_pass": len(items)}


def asgi_timer(app):
    """Time calls of the FastAPI app over ASGI in this process (no socket, no HTTP parsing): what
    the framework adds (middleware, routing, validation, the thread hop of sync endpoints, JSON)
    to the work. Every pass runs inside one long-lived task, as under uvicorn: anyio keeps its
    worker threads for the loop's root task, and a root task per call would start a thread per
    call."""

    async def call(path: str) -> int:
        raw, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": raw, "raw_path": raw.encode(), "query_string": query.encode(),
                 "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                 "root_path": ""}
        status = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        assert status == [200], (path, status)
        return status[0]

    async def passes(paths: list[str], repeats: int) -> list[list[float]]:
        for path in paths[: min(len(paths), 200)]:
            await call(path)
        out = []
        for _ in range(repeats):
            samples = []
            for path in paths:
                started = time.perf_counter()
                await call(path)
                samples.append(time.perf_counter() - started)
            out.append(samples)
        return out

    def timed(paths: list[str], repeats: int) -> dict:
        per_pass = asyncio.run(passes(paths, repeats))
        p50 = [float(np.percentile(x, 50)) * 1e6 for x in per_pass]
        p99 = [float(np.percentile(x, 99)) * 1e6 for x in per_pass]
        return {"p50_us": med(p50), "p99_us": med(p99), "p50_us_per_pass": [round(x, 1) for x in p50],
                "calls_per_pass": len(paths)}

    return timed


def in_process(settings, catalog, users: np.ndarray, queries: list[str], repeats: int, rng: random.Random) -> dict:
    from api import recommend
    from api.app import create_app
    from api.refresh import Live

    picked = [int(users[rng.randrange(len(users))]) for _ in range(2000)]
    asked = [rng.choice(queries) for _ in range(1000)]
    out = {
        "catalog_nbytes_mib": round(catalog.nbytes / 2**20, 1),
        "recommend.for_user": time_calls(lambda u: recommend.for_user(catalog, u, K), picked, repeats),
        "TitleIndex.search": time_calls(lambda q: catalog.index.search(q), asked, repeats),
    }
    live = Live(settings.warehouse_dir)
    live.catalog = catalog
    app = create_app(settings, live=live)
    timed = asgi_timer(app)
    out["asgi /health"] = timed(["/health"] * 2000, repeats)
    out["asgi recommendations"] = timed([f"/v1/users/{u}/recommendations?k={K}" for u in picked], repeats)
    out["asgi search"] = timed([f"/v1/movies/search?q={quote(q)}&limit=10" for q in asked], repeats)
    return out


# ---- scenarios -------------------------------------------------------------------------------


def open_loop(load: LoadProcess, api: Api, paths, rate: float, seconds: float, runs: int, label: str) -> dict:
    results = []
    api.reset_peak()
    stop = threading.Event()
    sampler = api.sample_during(stop)
    try:
        for index in range(runs):
            result = load.run(LoadSpec(api.settings.host, api.settings.api_port, paths, rate, seconds))
            results.append(result)
            lat = result["latency_ms"]
            from lakehouse.console import console

            console.print(f"  {label} run {index + 1}/{runs}: {result['rate_achieved']:.0f}/s achieved, p50 "
                          f"{fmt(lat['p50'], 2)} p95 {fmt(lat['p95'], 2)} p99 {fmt(lat['p99'], 2)} max "
                          f"{fmt(lat['max'], 1)} ms, {result['errors']} errors, client CPU "
                          f"{result['client_cpu_percent']}%, send lag p99 {fmt(result['send_lag_ms']['p99'], 2)} ms")
    finally:
        stop.set()
        sampler.join(timeout=5)
    return {**combine(results), "server_memory_peak": api.peak()}


def combine(results: list[dict]) -> dict:
    """Medians over runs of each figure; the runs themselves kept."""
    keys = ("p50", "p95", "p99", "max")
    return {
        "rate_offered": results[0]["rate_offered"], "seconds": results[0]["seconds"], "runs": len(results),
        "rate_achieved": med([r["rate_achieved"] for r in results]),
        "latency_ms": {k: med([r["latency_ms"][k] for r in results]) for k in keys},
        "p99_per_run": [round(r["latency_ms"]["p99"], 2) if r["latency_ms"]["p99"] is not None else None for r in results],
        "errors": sum(r["errors"] for r in results), "requests": sum(r["requests"] for r in results),
        "client_cpu_percent": med([r["client_cpu_percent"] for r in results]),
        "send_lag_ms_p99": med([r["send_lag_ms"]["p99"] for r in results]),
        "per_run": results,
    }


def held(result: dict, limit_ms: float) -> bool:
    p99 = result["latency_ms"]["p99"]
    return (result["errors"] == 0 and p99 is not None and p99 <= limit_ms
            and result["rate_achieved"] >= 0.97 * result["rate_offered"])


def throughput(load: LoadProcess, api: Api, paths, steps: list[float], seconds: float, repeats: int) -> dict:
    from lakehouse.console import console

    passes = []
    for index in range(repeats):
        tried, best = [], None
        for rate in steps:
            result = load.run(LoadSpec(api.settings.host, api.settings.api_port, paths, rate, seconds,
                                       connections=128))
            ok = held(result, THROUGHPUT_P99_MS)
            tried.append({"rate": rate, "held": ok, "rate_achieved": result["rate_achieved"],
                          "p50_ms": result["latency_ms"]["p50"], "p99_ms": result["latency_ms"]["p99"],
                          "errors": result["errors"], "client_cpu_percent": result["client_cpu_percent"],
                          "send_lag_ms_p99": result["send_lag_ms"]["p99"]})
            console.print(f"  pass {index + 1}/{repeats}, {rate:g}/s: {result['rate_achieved']:.0f}/s achieved, p99 "
                          f"{fmt(result['latency_ms']['p99'], 1)} ms, {result['errors']} errors, client CPU "
                          f"{result['client_cpu_percent']}% -> {'held' if ok else 'NOT held'}")
            if not ok:
                break
            best = rate
            time.sleep(1.0)
        passes.append({"max_rate_held": best, "steps": tried})
    return {"p99_limit_ms": THROUGHPUT_P99_MS, "step_seconds": seconds,
            "max_rate_held": med([p["max_rate_held"] for p in passes]),
            "per_pass": [p["max_rate_held"] for p in passes], "passes": passes}


def feedback(api: Api, catalog, scale, users: np.ndarray, n_users: int, interval: float, rounds: int,
             rng: random.Random, timeout: float = 90.0) -> dict:
    """POST ratings -> GET the user's recommendations every 100 ms until updated_at or the list
    changes; seconds from the POST's send to the first changed answer."""
    from lakehouse.console import console

    known = set(int(m) for m in catalog.known_movies) & set(int(m) for m in catalog.movies.ids)
    popular = [int(m) for m in catalog.movies.ids[np.argsort(-catalog.movies.rating_count)] if int(m) in known][:400]
    high = [v for v in scale.values() if v >= scale.maximum - 1.0]
    pool = [int(u) for u in users]
    rng.shuffle(pool)
    all_rounds = []
    for round_index in range(rounds):
        chosen = pool[round_index * n_users:(round_index + 1) * n_users]
        results: list[dict] = []
        lock = threading.Lock()

        def one(user: int, delay: float) -> None:
            time.sleep(delay)
            status, before = api.get_json(f"/v1/users/{user}/recommendations?k=100")
            if status != 200:
                with lock:
                    results.append({"user_id": user, "error": f"GET before: {status}"})
                return
            listed = {r["movie"]["movie_id"] for r in before["recommendations"]}
            seen = set(int(m) for m in catalog.ratings.get(user, "movie_id"))
            candidates = [m for m in popular if m not in seen and m not in listed]
            movies = rng.sample(candidates[:200], 3)
            body = {"ratings": [{"user_id": user, "movie_id": m, "rating": rng.choice(high)} for m in movies]}
            before_key = (before["updated_at"], [r["movie"]["movie_id"] for r in before["recommendations"][:K]])
            conn = http.client.HTTPConnection(api.settings.host, api.settings.api_port, timeout=10)
            posted, posted_wall = time.monotonic(), time.time()
            status, answer = api.post_json("/v1/ratings", body)
            if status != 202:
                with lock:
                    results.append({"user_id": user, "error": f"POST: {status} {answer}"})
                return
            accepted = time.monotonic() - posted
            polls = 0
            while time.monotonic() - posted < timeout:
                time.sleep(0.1)
                polls += 1
                status, now = api.get_json(f"/v1/users/{user}/recommendations?k=100", conn=conn)
                if status is None:
                    conn.close()
                    conn = http.client.HTTPConnection(api.settings.host, api.settings.api_port, timeout=10)
                    continue
                if status == 200:
                    key = (now["updated_at"], [r["movie"]["movie_id"] for r in now["recommendations"][:K]])
                    if key != before_key:
                        with lock:
                            results.append({"user_id": user, "seconds": time.monotonic() - posted,
                                            "posted_epoch": posted_wall, "served_epoch": time.time(),
                                            "post_ms": accepted * 1000, "polls": polls,
                                            "updated_at_changed": key[0] != before_key[0],
                                            "list_changed": key[1] != before_key[1], "file": answer["file"]})
                        conn.close()
                        return
            conn.close()
            with lock:
                results.append({"user_id": user, "error": f"no change within {timeout:g}s", "file": answer["file"]})

        threads = [threading.Thread(target=one, args=(u, i * interval), daemon=True) for i, u in enumerate(chosen)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=timeout + interval * n_users + 30)
        seconds = [r["seconds"] for r in results if "seconds" in r]
        failed = [r for r in results if "error" in r]
        s = stats(seconds)
        console.print(f"  round {round_index + 1}/{rounds}: {len(seconds)}/{len(chosen)} users saw a new list, "
                      f"p50 {fmt(s['p50'])} s, p95 {fmt(s['p95'])} s, max {fmt(s['max'])} s"
                      + (f"; {len(failed)} failed: {failed[0]['error']}" if failed else ""))
        all_rounds.append({"users": len(chosen), "round_trip_s": s, "failed": len(failed), "results": results})
    every = [r["seconds"] for rnd in all_rounds for r in rnd["results"] if "seconds" in r]
    breakdown = ledger_breakdown(api.settings.warehouse_dir, [r for rnd in all_rounds for r in rnd["results"] if "seconds" in r])
    return {"breakdown_s": breakdown,"users_per_round": n_users, "rounds": rounds, "interval_s": interval, "ratings_per_user": 3,
            "round_trip_s": stats(every), "p95_per_round": [r["round_trip_s"]["p95"] for r in all_rounds],
            "failed": sum(r["failed"] for r in all_rounds), "per_round": all_rounds}


def ledger_breakdown(warehouse: Path, results: list[dict]) -> dict:
    """Where the round trip went, from the stream's ledger (bronze.stream_files, stream_batches):
    POST -> the stream took the file (landed_at), -> bronze commit, -> fold-in finished, -> the
    API served the new list (its refresh poll and Catalog rebuild)."""
    from api import delta_tables

    files = delta_tables.read(warehouse, "bronze.stream_files", ("source_file", "landed_at", "load_id"))
    batches = delta_tables.read(warehouse, "bronze.stream_batches", ("load_id", "started_at", "committed_at", "finished_at"))
    if files is None or batches is None:
        return {}
    by_file = {r["source_file"]: r for r in files.data.to_pylist()}
    by_load = {r["load_id"]: r for r in batches.data.to_pylist()}
    parts: dict[str, list[float]] = {"post_to_landed": [], "landed_to_batch_start": [], "batch_start_to_bronze_commit": [],
                                     "bronze_commit_to_fold_in_done": [], "fold_in_done_to_api_served": []}
    for r in results:
        f = by_file.get(r.get("file"))
        b = by_load.get(f["load_id"]) if f else None
        if not b:
            continue
        landed, start, commit, done = (x.timestamp() for x in (f["landed_at"], b["started_at"], b["committed_at"], b["finished_at"]))
        for key, value in zip(parts, (landed - r["posted_epoch"], start - landed, commit - start, done - commit,
                                      r["served_epoch"] - done)):
            parts[key].append(value)
    return {key: {"p50": med(v), "max": max(v) if v else None, "n": len(v)} for key, v in parts.items()}


# ---- synthetic ml-25m-shaped tables ----------------------------------------------------------

SYLLABLES = ("ka", "lo", "mi", "ra", "ne", "to", "sa", "ve", "di", "mor", "tan", "el", "bra", "quin", "zu", "pe",
             "hal", "gor", "wen", "ri", "sto", "nik", "fa", "ul", "dre", "os", "lin", "mar", "che", "vo")
GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")


def write_synthetic_25m(home: Path, users: int = 162_541, movies: int = 62_423, ratings: int = 25_000_095,
                        rank: int = 32, events: int = 1000, seed: int = 25) -> dict:
    """The tables api/catalog.py reads, with the lakehouse's column types, at ml-25m's shape:
    per-user counts from 20 up (long tail), Zipf-like movie popularity, half-star ratings,
    10 recommendations / similar movies / neighbours each."""
    import pyarrow as pa
    from deltalake import write_deltalake

    rng = np.random.default_rng(seed)
    started = time.monotonic()
    warehouse = home / "warehouse"
    utc = pa.timestamp("us", tz="UTC")
    now_us = int(time.time() * 1e6)

    def write(name: str, data: pa.Table) -> None:
        schema, table = name.split(".")
        write_deltalake(str(warehouse / f"{schema}.db" / table), data, mode="overwrite")

    movie_ids = np.sort(rng.choice(np.arange(1, 209_172), movies, replace=False)).astype(np.int32)
    # ratings: user counts 20 + a long tail, scaled to the total; movies by Zipf-like popularity.
    extra = rng.lognormal(3.6, 1.3, users)
    counts = 20 + np.floor(extra / extra.sum() * (ratings * 1.12 - 20 * users)).astype(np.int64)
    popularity = 1.0 / (np.arange(movies) + 50.0)  # the top movie ~0.3% of ratings, as in ml-25m
    order = rng.permutation(movies)  # which movie is how popular
    cdf = np.cumsum(popularity[order])
    cdf /= cdf[-1]
    user_col = np.repeat(np.arange(1, users + 1, dtype=np.int64), counts)
    movie_row = np.searchsorted(cdf, rng.random(len(user_col)))
    pair = np.unique(user_col * (1 << 20) + movie_row)  # one rating per (user, movie)
    if len(pair) > ratings:
        pair = np.sort(rng.choice(pair, ratings, replace=False))
    user_col = (pair >> 20).astype(np.int32)
    movie_col = movie_ids[(pair & ((1 << 20) - 1))]
    del pair
    stars = rng.choice(np.arange(1, 11) / 2.0, len(user_col),
                       p=np.array([1.6, 3.2, 2.0, 7.0, 4.9, 19.6, 12.6, 26.6, 8.6, 13.9]) / 100.0)
    start_us, end_us = 789_652_009 * 10**6, 1_574_327_703 * 10**6
    rated = rng.integers(start_us, end_us, len(user_col))
    write("gold.ratings", pa.table({"user_id": user_col, "movie_id": movie_col, "rating": stars,
                                    "rated_at": pa.array(rated, utc)}))
    del rated

    # gold.movies with stats from those ratings; titles of made-up words (the search index's size
    # depends on the word count, not on the words), years, 1-3 genres.
    at = np.searchsorted(movie_ids, movie_col)
    n = np.bincount(at, minlength=movies)
    total = np.bincount(at, weights=stars, minlength=movies)
    del at, stars, movie_col
    mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    prior, c = float(np.nansum(total) / n.sum()), float(np.mean(n))
    bayes = np.where(n > 0, (c * prior + total) / (c + n), np.nan)
    syllables = np.array(SYLLABLES)
    word_pool = ["".join(syllables[rng.integers(0, len(syllables), rng.integers(2, 4))]).capitalize() for _ in range(20_000)]
    years = rng.integers(1902, 2020, movies).astype(np.int32)
    lengths = rng.integers(1, 6, movies)
    picks = rng.integers(0, len(word_pool), int(lengths.sum()))
    ends = np.cumsum(lengths)
    titles = [" ".join(word_pool[j] for j in picks[e - n:e]) + f" ({y})" for n, e, y in zip(lengths, ends, years)]
    genre_picks = rng.random((movies, len(GENRES))).argsort(axis=1)[:, :3]
    genres = [[GENRES[j] for j in row[:n]] for row, n in zip(genre_picks, rng.integers(1, 4, movies))]
    write("gold.movies", pa.table({
        "movie_id": movie_ids, "title": titles, "release_year": years,
        "genres": pa.array(genres, pa.list_(pa.string())), "rating_count": n.astype(np.int64),
        "rating_mean": mean, "bayesian_rating": bayes}))
    write("bronze.movies", pa.table({"movie_id": movie_ids, "title": titles,
                                     "genres": ["|".join(g) for g in genres]}))

    # the stream's newer events (the catalog then de-duplicates gold + events: the real path)
    write("bronze.rating_events", pa.table({
        "user_id": rng.integers(1, users + 1, events).astype(np.int32),
        "movie_id": rng.choice(movie_ids, events), "rating": rng.choice(np.arange(1, 11) / 2.0, events),
        "rated_at": pa.array(np.full(events, now_us), utc)}))

    user_ids = np.arange(1, users + 1, dtype=np.int32)
    top = movie_ids[order[:2000]]  # recommendations drawn from the popular end
    rec_movies = rng.choice(top, (users, 10)).ravel()
    stamp = pa.array(np.full(users * 10, now_us), utc)
    write("ml.recommendations", pa.table({
        "user_id": np.repeat(user_ids, 10), "movie_id": rec_movies,
        "rank": np.tile(np.arange(1, 11, dtype=np.int32), users),
        "score": np.sort(rng.random((users, 10)), axis=1)[:, ::-1].ravel(),
        "model_name": pa.array(["als-ranking"] * (users * 10)).dictionary_encode().cast(pa.string()),
        "model_version": ["1"] * (users * 10), "run_id": ["synthetic"] * (users * 10),
        "generated_at": stamp, "updated_at": stamp}))
    features = rng.standard_normal((movies, rank)).astype(np.float32)
    write("ml.item_factors", pa.table({
        "model_name": ["als-ranking"] * movies, "model_version": ["1"] * movies, "run_id": ["synthetic"] * movies,
        "movie_id": movie_ids, "bias": np.zeros(movies),
        "features": pa.FixedSizeListArray.from_arrays(features.ravel(), rank).cast(pa.list_(pa.float32()))}))
    write("ml.similar_movies", pa.table({
        "movie_id": np.repeat(movie_ids, 10), "similar_movie_id": rng.choice(movie_ids, movies * 10),
        "rank": np.tile(np.arange(1, 11, dtype=np.int32), movies),
        "similarity": np.sort(rng.random((movies, 10)), axis=1)[:, ::-1].ravel(),
        "model_name": ["als-ranking"] * (movies * 10), "model_version": ["1"] * (movies * 10)}))
    write("ml.user_similarity", pa.table({
        "user_id": np.repeat(user_ids, 10), "neighbour_id": rng.integers(1, users + 1, users * 10).astype(np.int32),
        "rank": np.tile(np.arange(1, 11, dtype=np.int32), users),
        "similarity": np.sort(rng.random((users, 10)), axis=1)[:, ::-1].ravel(),
        "co_rated": rng.integers(5, 200, users * 10), "vectors": ["als factors"] * (users * 10),
        "run_id": ["synthetic"] * (users * 10)}))
    write("bronze.ingest_log", pa.table({
        "dataset": ["ml-25m"] * 3, "source_file": ["ratings.csv", "movies.csv", "tags.csv"],
        "target_table": ["bronze.ratings", "bronze.movies", "bronze.tags"],
        "rows_loaded": np.array([len(user_col), movies, 0], dtype=np.int64),
        "finished_at": pa.array([now_us] * 3, utc)}))
    return {"users": users, "movies": movies, "ratings": int(len(user_col)), "factor_rank": rank,
            "rating_events": events, "write_seconds": round(time.monotonic() - started, 1),
            "disk_mib": round(sum(f.stat().st_size for f in warehouse.rglob("*") if f.is_file()) / 2**20, 1)}


def scale_25m(args, port: int, workers: int | None, load: LoadProcess) -> dict:
    from lakehouse.console import console

    if args.scratch_dir is not None:
        args.scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="lakehouse-bench-api-25m-", dir=args.scratch_dir))
    api = None
    try:
        console.print(f"  writing synthetic ml-25m-shaped tables into {scratch}")
        written = write_synthetic_25m(scratch)
        console.print(f"  {written['ratings']:,} ratings, {written['users']:,} users, {written['movies']:,} movies "
                      f"in {written['write_seconds']} s ({written['disk_mib']} MiB on disk)")
        api = Api(api_settings(scratch, port, workers))
        started = api.up()
        ready = started["ready"]
        idle = api.memory()
        console.print(f"  ready: load_seconds {ready.get('load_seconds')}, {ready.get('ratings'):,} ratings; RSS "
                      f"{idle['rss_mib']} MiB (USS {idle['uss_mib']}), peak while loading {started['peak_rss_mib_while_loading']} MiB")
        out = {"tables": written, "start": started, "load_seconds": ready.get("load_seconds"),
               "served": {k: ready.get(k) for k in ("users", "movies", "ratings")}, "memory_idle": idle}
        if args.scale_25m_seconds > 0:  # a short look at the latency there, not the targets' run
            rng = random.Random(7)
            users = np.arange(1, written["users"] + 1)
            out["recommendations"] = open_loop(load, api, recs_paths(users, rng), args.rate, args.scale_25m_seconds,
                                               1, "25M recommendations")
            out["search"] = open_loop(load, api, search_paths(list(FIXED_QUERIES), rng), args.search_rate, args.scale_25m_seconds,
                                      1, "25M search")
            out["memory_after_load"] = api.memory()
        return out
    finally:
        if api is not None:
            api.down()
        shutil.rmtree(scratch, ignore_errors=True)


# ---- output ----------------------------------------------------------------------------------


def verdict(value, target) -> str:
    return "-" if value is None or target is None else ("met" if value <= target else "MISSED")


def latency_rows(result: dict) -> list[tuple]:
    rows = []
    for label, key, target in (("GET /v1/users/{id}/recommendations?k=10", "recommendations", RECS_TARGET_P99_MS),
                               ("  floor: GET /health, same rate", "recommendations_floor", None),
                               ("GET /v1/movies/search (query mix)", "search", SEARCH_TARGET_P99_MS),
                               ("  floor: GET /health, same rate", "search_floor", None)):
        r = result.get(key)
        if not r:
            continue
        lat = r["latency_ms"]
        rows.append((label, f"{r['rate_offered']:g} x {r['seconds']:g}s x{r['runs']}", f"{r['rate_achieved']:.0f}",
                     fmt(lat["p50"], 2), fmt(lat["p95"], 2), fmt(lat["p99"], 2), fmt(lat["max"], 1), r["errors"],
                     f"{r['client_cpu_percent']:.0f}%", f"<= {target:g}" if target else "-", verdict(lat["p99"], target)))
    return rows


def print_report(result: dict) -> None:
    from lakehouse.console import console, table

    m = result["machine"]
    console.print(table(
        f"API latency, open loop (ms from each request's due time); {m['cpus']} cores, {m['memory_gib']} GiB, shared "
        f"(load {m['load']['load1_mean']} mean); {result['api']['workers']} uvicorn workers",
        ["request", "rate/s x time x runs", "achieved/s", "p50", "p95", "p99", "max", "errors", "client CPU",
         "target p99", "verdict"], latency_rows(result)))
    t = result.get("throughput")
    if t:
        steps = "; ".join(" ".join(f"{s['rate']:g}{'' if s['held'] else '✗'}({fmt(s['p99_ms'], 0)})" for s in p["steps"])
                          for p in t["passes"])
        console.print(table("Throughput of GET /v1/users/{id}/recommendations at p99 <= 50 ms (rate(p99 ms); ✗: not held)",
                            ["max rate held (median)", "per pass", "steps"],
                            [(fmt(t["max_rate_held"], 0), " / ".join(fmt(x, 0) for x in t["per_pass"]), steps)]))
    p = result.get("in_process")
    if p:
        rows = [(name, fmt(p[name]["p50_us"], 1), fmt(p[name]["p99_us"], 1), " / ".join(fmt(x, 1) for x in p[name]["p50_us_per_pass"]))
                for name in ("recommend.for_user", "TitleIndex.search", "asgi /health", "asgi recommendations", "asgi search")]
        console.print(table(f"In-process floors (µs per call; Catalog loaded in {p['catalog_load_seconds']} s, "
                            f"{p['catalog_nbytes_mib']} MiB of arrays)", ["call", "p50", "p99", "p50 per pass"], rows))
    f = result.get("feedback")
    if f:
        s = f["round_trip_s"]
        console.print(table(
            f"POST /v1/ratings -> the user's recommendations change (s; stream trigger {result['stream']['trigger_seconds']:g} s, "
            f"API refresh poll {result['api']['refresh_seconds']:g} s)",
            ["users x rounds", "p50", "p95", "max", "p95 per round", "failed", "target p95", "verdict"],
            [(f"{f['users_per_round']} x {f['rounds']}", fmt(s["p50"]), fmt(s["p95"]), fmt(s["max"]),
              " / ".join(fmt(x) for x in f["p95_per_round"]), f["failed"], f"<= {FEEDBACK_TARGET_P95_S:g}",
              verdict(s["p95"], FEEDBACK_TARGET_P95_S))]))
        if f.get("breakdown_s"):
            console.print(table("Where the round trip went (s, p50 / max over the users; stream ledger + bench clocks)",
                                ["step", "p50", "max", "n"],
                                [(k.replace("_", " "), fmt(v["p50"]), fmt(v["max"]), v["n"]) for k, v in f["breakdown_s"].items()]))
    mem = result["memory"]
    rows = [("this lakehouse, idle after /ready", f"{mem['idle']['rss_mib']:,.0f}", f"{mem['idle']['uss_mib']:,.0f}",
             f"{mem['idle']['processes']} processes, load_seconds {result['api']['ready'].get('load_seconds')}"),
            ("this lakehouse, peak under load", f"{mem['peak_under_load']['rss_mib']:,.0f}",
             f"{mem['peak_under_load']['uss_mib']:,.0f}", "sampled every second during the runs")]
    big = result.get("scale_25m")
    if big:
        rows.append(("synthetic ml-25m shape, idle after /ready", f"{big['memory_idle']['rss_mib']:,.0f}",
                     f"{big['memory_idle']['uss_mib']:,.0f}",
                     f"load_seconds {big['load_seconds']}, up -> ready {big['start']['wall_seconds_to_ready']} s, "
                     f"peak RSS while loading {big['start']['peak_rss_mib_while_loading']:,.0f} MiB; "
                     f"{big['tables']['ratings']:,} ratings"))
        for key, label in (("recommendations", "25M: recommendations"), ("search", "25M: search")):
            if big.get(key):
                lat = big[key]["latency_ms"]
                rows.append((f"{label} {big[key]['rate_offered']:g}/s x {big[key]['seconds']:g}s", "-", "-",
                             f"p50 {fmt(lat['p50'], 2)} p99 {fmt(lat['p99'], 2)} max {fmt(lat['max'], 1)} ms, "
                             f"{big[key]['errors']} errors"))
    console.print(table(f"API memory, process tree (MiB; {result['api']['workers']} workers + master)",
                        ["where", "RSS", "USS", "notes"], rows))


# ---- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="the lakehouse's data directory (default: LAKEHOUSE_HOME)")
    parser.add_argument("--port", type=int, help="the API's port (default: a free one)")
    parser.add_argument("--workers", type=int, help="uvicorn workers (default: LAKEHOUSE_API_WORKERS, else the settings' default)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of each latency run (default 60)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each latency scenario (default 1: 60 s each)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of the step test and the in-process timings")
    parser.add_argument("--rate", type=float, default=500.0, help="recommendations requests/s (default 500)")
    parser.add_argument("--search-rate", type=float, default=200.0, help="search requests/s (default 200)")
    parser.add_argument("--steps", default="100,150,200,250,300,400,500,750,1000,1500,2000,3000",
                        help="offered rates of the throughput steps, requests/s (default %(default)s)")
    parser.add_argument("--step-seconds", type=float, default=12.0)
    parser.add_argument("--feedback-users", type=int, default=10)
    parser.add_argument("--feedback-rounds", type=int, default=3)
    parser.add_argument("--feedback-interval", type=float, default=2.0, help="seconds between two users' POSTs")
    parser.add_argument("--no-feedback", action="store_true", help="skip the POST -> recommendations round trip")
    parser.add_argument("--no-stream-start", action="store_true", help="do not start the stream when it is not running")
    parser.add_argument("--scale-25m", action="store_true", help="also measure memory and load time on 25M synthetic ratings")
    parser.add_argument("--scale-25m-seconds", type=float, default=10.0, help="a short latency look at 25M (0: none)")
    parser.add_argument("--scratch-dir", type=Path, default=None, help="where the 25M tables go (default: the temp dir)")
    parser.add_argument("--only-25m", action="store_true", help="skip everything on the lakehouse; only --scale-25m")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "api.json")
    args = parser.parse_args()

    from lakehouse.console import Stages, console
    from lakehouse.datasets import get_dataset
    from lakehouse.settings import load_settings
    from lakehouse.stream import job

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.chdir(REPO)
    machine = machine_info()
    load_sampler = LoadSampler().start()
    env = load_settings()
    home = (args.home or env.home).expanduser().resolve()
    port = args.port or free_port()
    workers = args.workers or int(os.environ.get("LAKEHOUSE_API_WORKERS") or 0) or None
    settings = api_settings(home, port, workers)
    console.print(f"machine: {machine['cpus']} cores, {machine['memory_gib']} GiB, load {machine['load_at_start']}, "
                  f"{machine['other_spark_jvms_at_start']} other Spark drivers running; lakehouse {home}; API port {port}, "
                  f"{settings.api_workers} workers")
    stages = Stages()
    result: dict = {"machine": machine, "home": str(home), "commands": {"bench": " ".join(sys.argv)},
                    "api": {"workers": settings.api_workers, "port": port, "refresh_seconds": settings.api_refresh_seconds},
                    "stream": {"trigger_seconds": settings.stream_trigger_seconds}}
    load = LoadProcess()
    api = stream_started = shadow = None
    try:
        if not args.only_25m:
            from lakehouse import api_service

            with stages.stage("lakehouse api up") as notes:
                if api_service.service(settings).running_pid() is not None:
                    shadow = shadow_home(home)
                    settings = api_settings(shadow, port, workers)
                    notes.append(f"an API already runs for {home} (not ours): serving its tables from {shadow}")
                    console.print(f"[yellow]{notes[-1]}[/]")
                api = Api(settings)
                started = api.up()
                result["api"].update({"ready": started["ready"], "start": started, "shadow_home": str(shadow) if shadow else None,
                                      "started_by_bench": api.started})
                notes.append(f"ready in {started['wall_seconds_to_ready']} s, load_seconds "
                             f"{started['ready'].get('load_seconds')}, {started['ready'].get('users')} users")
            result["memory"] = {"idle": api.memory()}
            with stages.stage(f"in-process floors ({args.repeats} passes)") as notes:
                from api import delta_tables

                recs = delta_tables.read(settings.warehouse_dir, "ml.recommendations", ("user_id",))
                users = np.unique(recs.data.column("user_id").to_numpy())
                from api import catalog as api_catalog

                rng = random.Random(42)
                loading = time.monotonic()
                catalog = api_catalog.load(settings.warehouse_dir)
                loaded_in = time.monotonic() - loading
                queries = search_queries(catalog, rng)
                in_proc = in_process(settings, catalog, users, queries, args.repeats, rng)
                in_proc["catalog_load_seconds"] = round(loaded_in, 3)
                result["in_process"] = in_proc
                result["queries"] = queries
                notes.append(f"for_user {fmt(in_proc['recommend.for_user']['p50_us'])} µs, search "
                             f"{fmt(in_proc['TitleIndex.search']['p50_us'])} µs, ASGI recs "
                             f"{fmt(in_proc['asgi recommendations']['p50_us'])} µs")
            recs_p, search_p = recs_paths(users, rng), search_paths(queries, rng)
            health_p = ("/health",)
            api.reset_peak()
            peak = {"rss_mib": 0.0, "uss_mib": 0.0}

            def keep_peak(r: dict) -> dict:
                for k in peak:
                    peak[k] = max(peak[k], r["server_memory_peak"][k])
                return r

            # Each request beside its floor (/health) at the same rate, in the same run.
            scenarios = (("recommendations", "recommendations", recs_p, args.rate, "recs"),
                         ("recommendations_floor", "floor: /health", health_p, args.rate, "health"),
                         ("search", "search", search_p, args.search_rate, "search"),
                         ("search_floor", "floor: /health", health_p, args.search_rate, "health"))
            for key, title, paths, rate, label in scenarios:
                with stages.stage(f"{title} {rate:g}/s x {args.seconds:g}s x {args.runs}") as notes:
                    result[key] = keep_peak(open_loop(load, api, paths, rate, args.seconds, args.runs, label))
                    notes.append(f"p99 {fmt(result[key]['latency_ms']['p99'], 2)} ms")
            with stages.stage(f"throughput steps ({args.repeats} passes of {args.step_seconds:g}s steps)") as notes:
                steps = [float(s) for s in args.steps.split(",")]
                api.reset_peak()
                stop = threading.Event()
                sampler = api.sample_during(stop)
                result["throughput"] = throughput(load, api, recs_p, steps, args.step_seconds, args.repeats)
                stop.set()
                sampler.join(timeout=5)
                keep_peak({"server_memory_peak": api.peak()})
                notes.append(f"max held {fmt(result['throughput']['max_rate_held'], 0)}/s")
            result["memory"]["peak_under_load"] = peak
            if not args.no_feedback:
                with stages.stage(f"POST /v1/ratings -> recommendations ({args.feedback_users} users x "
                                  f"{args.feedback_rounds} rounds)") as notes:
                    lake = dataclasses.replace(env, home=home)
                    if job.running_pid(lake) is None:
                        if args.no_stream_start:
                            raise SystemExit("the stream is not running on this lakehouse (--no-stream-start)")
                        ok, tail = lakehouse_cli(lake, "stream", "--detach", timeout=600)
                        if not ok:
                            raise SystemExit(f"`lakehouse stream --detach` failed:\n{tail}")
                        stream_started = lake
                        notes.append("stream started (detached) by the bench")
                    else:
                        notes.append(f"stream already running (pid {job.running_pid(lake)}): used, left running")
                    result["stream"].update({"started_by_bench": stream_started is not None,
                                             "status": job.read_status(lake)})
                    datasets = catalog_dataset(settings)
                    scale = get_dataset(datasets).scale
                    with_list = np.intersect1d(users, catalog.recommendations.keys)
                    result["feedback"] = feedback(api, catalog, scale, with_list, args.feedback_users,
                                                  args.feedback_interval, args.feedback_rounds, random.Random(11))
                    notes.append(f"p95 {fmt(result['feedback']['round_trip_s']['p95'])} s")
            result["memory"]["end"] = api.memory()
            api.down()
        if args.scale_25m:
            if api is not None:
                api.down()
            with stages.stage("synthetic ml-25m shape: write tables, lakehouse api up, memory") as notes:
                try:
                    result["scale_25m"] = scale_25m(args, free_port(), workers, load)
                except (Exception, SystemExit) as error:  # noqa: BLE001 - the finding; the rest is kept
                    result["scale_25m_error"] = f"{type(error).__name__}: {error}"[:2000]
                    notes.append(f"FAILED: {result['scale_25m_error'][:300]}")
                    console.print(f"[red]{result['scale_25m_error']}[/]")
                if "scale_25m" in result:
                    notes.append(f"load_seconds {result['scale_25m']['load_seconds']}, RSS "
                             f"{result['scale_25m']['memory_idle']['rss_mib']} MiB")
    finally:
        load.close()
        if api is not None:
            api.down()
        if stream_started is not None:
            ok, tail = lakehouse_cli(stream_started, "stream", "--stop", timeout=180)
            console.print(f"stream stopped: {tail.splitlines()[-1:] if tail else ok}")
        if shadow is not None:
            shutil.rmtree(shadow, ignore_errors=True)
        machine["load"] = load_sampler.stop()
        machine["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        console.print(stages.summary())
        # Written even when a stage failed or the run was stopped: what was measured is kept.
        result["stages"] = [{"stage": n, "seconds": round(s, 1), "outcome": o} for n, s, o in stages.timings]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    if not args.only_25m:
        print_report(result)
    elif result.get("scale_25m"):
        console.print_json(json.dumps({k: v for k, v in result["scale_25m"].items() if k not in ("recommendations", "search")}, default=str))
    console.print(f"load average (1 min) during the bench: mean {machine['load']['load1_mean']}, max "
                  f"{machine['load']['load1_max']}; {machine['other_spark_jvms_at_start']} other Spark drivers at the start")
    console.print(f"wrote {args.out}")
    return 1 if "scale_25m_error" in result else 0  # a failed stage fails the run


def catalog_dataset(settings) -> str:
    from api import delta_tables

    log = delta_tables.read(settings.warehouse_dir, "bronze.ingest_log", ("dataset",))
    return sorted(set(log.data.column("dataset").to_pylist()))[0]


if __name__ == "__main__":
    sys.exit(main())
