"""Benchmark of the streaming targets: landing -> bronze over Thrift, landing -> recommendations
rewritten, and sustained ingest.

One server on free ports in a temporary data directory (a user's server is never touched), set up
the way a user would: `up`, ingest ml-100k (synthetic ml-100k layout when the shared copy is
missing) with the latest 10% held out, `dbt build`, `lakehouse train --task ranking --grid quick`
(the fold-in needs a ranking champion, gold.movies and gold.ratings), then `lakehouse stream
--detach` with the product's settings (trigger 5 s, 100 files per trigger, fold-in on) and one
warm-up file, not measured. The replayed ratings are the held-out ones, cycled. Then:

1. latency at 100 and at 2,000 ratings/s, `--runs` runs of `--duration` s each: `lakehouse
   replay`'s writer lands files; a BI-style client polls the Thrift server (PyHive) every 250 ms
   with `select source_file, count(*) ... group by source_file` on the run's partitions. A file
   counts as visible in bronze when its full row count is there, at the moment the poll that saw
   it returned (an upper bound: the rows became visible somewhere during that poll). In the same
   poll, ml.recommendations is read for the users of the visible files: a user's recommendations
   count as rewritten for a file once their updated_at is at/after that file's ingested_at in
   bronze (stricter than "after landing": a refresh by an earlier batch, which finishes after the
   file landed but before its batch started, does not count). The ledger's own figures
   (committed_at - landed_at, finished_at - landed_at, per file) are reported beside them.
2. sustained ingest: big files land at `--sustained-rate` ratings/s (default 20,000: a 50,000-row
   file every 2.5 s) for `--sustained-seconds`. The committed rate and the backlog (landed -
   committed ratings, once a second) come from the ledger afterwards; the files waiting in the
   landing folder are counted every second. No Thrift poller competes with the stream then.

Prints the tables of medians and writes bench/results/streaming.json (with the machine and the
load average seen during the run: this 2-core machine is shared).

    .venv/bin/python bench/streaming.py [--runs 3] [--duration 60] [--sustained-seconds 90]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import POLL_SECONDS, LoadSampler, fmt, free_port, machine_info, short_error, stats  # noqa: E402
from lakehouse import server, tables  # noqa: E402
from lakehouse.console import Stages, console, table  # noqa: E402
from lakehouse.dbt_runner import ML_NODES, run_dbt  # noqa: E402
from lakehouse.generate import SyntheticSpec, generate  # noqa: E402
from lakehouse.ingest_command import ingest_with_progress  # noqa: E402
from lakehouse.session import connect  # noqa: E402
from lakehouse.settings import Settings  # noqa: E402
from lakehouse.stream import job, replay  # noqa: E402

DEFAULT_ML_100K = REPO.parent / "shared" / "data" / "movielens" / "ml-100k"
HOLDOUT_FRACTION = 0.1  # as `make run`
LANDED_NAME = re.compile(r"ratings-(\d{8}T\d{12})Z-")


def landed_epoch(name: str) -> float:
    """The landing moment the writer put in the name: the same nanosecond clock reading it set as
    the file's mtime just before the rename (the file itself may be archived by now)."""
    stamp = LANDED_NAME.match(name).group(1)
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc).timestamp()


def med(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---- what landed, and what a Thrift client sees --------------------------------------------


@dataclass(frozen=True)
class Landed:
    name: str
    at: float  # epoch seconds
    rows: int
    users: frozenset[int]


class RecordingSource:
    """Wraps the replayed ratings: when replay calls on_file, the ratings drawn since the last
    file are exactly that file's (replay draws a file's rows, writes them, then calls back)."""

    def __init__(self, ratings) -> None:
        self._ratings = iter(ratings)
        self.drawn: list[int] = []

    def __iter__(self):
        for rating in self._ratings:
            self.drawn.append(rating.user_id)
            yield rating

    def take(self, count: int) -> frozenset[int]:
        users, self.drawn = frozenset(self.drawn[:count]), self.drawn[count:]
        return users


class ThriftWatcher(threading.Thread):
    """Polls the Thrift server as a BI tool would, one PyHive connection, every POLL_SECONDS."""

    def __init__(self, settings: Settings, stream_id: str, after_batch: int) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        # Only this run's partitions: load_id is the partition column, so the metastore prunes.
        low, high = tables.stream_load_id(stream_id, after_batch), tables.stream_load_id(stream_id, 99_999_999)
        self.bronze_sql = ("select source_file, count(*), unix_micros(min(ingested_at)) from bronze.rating_events "
                           f"where load_id > '{low}' and load_id <= '{high}' group by source_file")
        self.files: dict[str, Landed] = {}
        self.seen: dict[str, tuple[float, float]] = {}  # name -> (seen at, ingested_at), epoch s
        self.refreshed: dict[tuple[str, int], float] = {}  # (name, user) -> seen rewritten at
        self.poll_seconds: list[float] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._halt = threading.Event()

    def add(self, landed: Landed) -> None:
        with self.lock:
            self.files[landed.name] = landed

    def pending(self) -> tuple[int, int]:
        """(files not yet visible in bronze, (file, user) pairs not yet rewritten)."""
        with self.lock:
            pairs = sum(len(f.users) for f in self.files.values())
            return len(self.files) - len(self.seen), pairs - len(self.refreshed)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def run(self) -> None:
        from pyhive import hive

        conn = None
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = hive.connect(host=self.settings.host, port=self.settings.thrift_port, username="bench")
                self._tick(conn.cursor())
            except Exception as error:  # noqa: BLE001 - record it and poll on, as a dashboard would
                self.errors.append(short_error(error))
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
            self._halt.wait(max(POLL_SECONDS - (time.monotonic() - started), 0.0))
        if conn is not None:
            conn.close()

    def _tick(self, cursor) -> None:
        issued = time.monotonic()
        cursor.execute(self.bronze_sql)
        rows = cursor.fetchall()
        now = time.time()
        self.poll_seconds.append(time.monotonic() - issued)
        with self.lock:
            for name, count, ingested in rows:
                landed = self.files.get(name)
                if landed and name not in self.seen and count >= landed.rows:
                    self.seen[name] = (now, ingested / 1e6)
            waiting = [(name, user) for name in self.seen for user in self.files[name].users
                       if (name, user) not in self.refreshed]
        if not waiting:
            return
        users = sorted({user for _, user in waiting})
        cursor.execute("select user_id, unix_micros(max(updated_at)) from ml.recommendations "
                       f"where user_id in ({', '.join(map(str, users))}) group by user_id")
        updated = {user: micros / 1e6 for user, micros in cursor.fetchall()}
        now = time.time()
        with self.lock:
            for name, user in waiting:
                if user in updated and updated[user] >= self.seen[name][1]:
                    self.refreshed[(name, user)] = now


# ---- the stream's own ledger (over Spark Connect) -------------------------------------------


def last_batch(spark, stream_id: str) -> int:
    """This stream's last committed batch id, or -1."""
    from pyspark.sql import functions as F

    if not spark.catalog.tableExists(tables.STREAM_BATCHES.name):
        return -1
    spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
    row = spark.table(tables.STREAM_BATCHES.name).where(F.col("query_id") == stream_id).agg(F.max("batch_id")).first()
    return -1 if row[0] is None else int(row[0])


def wait_ledger(spark, names: list[str], timeout: float) -> list:
    """The ledger's rows for these files once every one has its batch's row (written after the
    fold-in), or what is there when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = ledger_files(spark, names)
        except Exception as error:  # noqa: BLE001 - a read racing a write: try again
            console.print(f"[yellow]ledger read failed, retrying: {short_error(error)}[/]")
            rows = []
        if len(rows) >= len(names) or time.monotonic() > deadline:
            return rows
        time.sleep(2.0)


def ledger_files(spark, names: list[str]) -> list:
    """Per file: committed_at - landed_at and finished_at - landed_at from the ledger."""
    from pyspark.sql import functions as F

    spark.catalog.refreshTable(tables.STREAM_FILES.name)
    spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
    batches = spark.table(tables.STREAM_BATCHES.name).select("load_id", "committed_at", "finished_at")
    micros = F.unix_micros
    return (spark.table(tables.STREAM_FILES.name).where(F.col("source_file").isin(names)).join(batches, "load_id")
            .select("source_file", (micros("landed_at") / 1e6).alias("landed"),
                    ((micros("committed_at") - micros("landed_at")) / 1e6).alias("bronze"),
                    ((micros("finished_at") - micros("landed_at")) / 1e6).alias("finished"))
            .collect())


def ledger_batches(spark, stream_id: str, after_batch: int) -> list:
    from pyspark.sql import functions as F

    spark.catalog.refreshTable(tables.STREAM_BATCHES.name)
    return (spark.table(tables.STREAM_BATCHES.name)
            .where((F.col("query_id") == stream_id) & (F.col("batch_id") > after_batch))
            .select("batch_id", "files", "rows_read", "batch_seconds", "fold_in_seconds", "users_refreshed",
                    (F.unix_micros("started_at") / 1e6).alias("started"),
                    (F.unix_micros("committed_at") / 1e6).alias("committed"))
            .orderBy("batch_id").collect())


# ---- scenarios ------------------------------------------------------------------------------


@dataclass
class Bench:
    spark: object
    settings: Settings
    ratings: list  # the pool the replays draw from (cycled)
    stream_id: str = ""
    cursor: int = 0  # where the next run starts in the pool

    def draw(self):
        """The pool, cycled, from where the last run stopped (a new slice for each run)."""
        pool = self.ratings
        start = self.cursor % len(pool)
        for index in itertools.count(start):
            self.cursor = index + 1
            yield pool[index % len(pool)]


def latency_run(bench: Bench, rate: float, rows_per_file: int, duration: float, drain: float, label: str) -> dict:
    spark, settings = bench.spark, bench.settings
    before = last_batch(spark, bench.stream_id)
    watcher = ThriftWatcher(settings, bench.stream_id, before)
    watcher.start()
    source = RecordingSource(bench.draw())

    def on_file(path: Path, count: int) -> None:
        watcher.add(Landed(path.name, landed_epoch(path.name), count, source.take(count)))

    stop_progress = threading.Event()

    def progress() -> None:
        started = time.monotonic()
        while not stop_progress.wait(10.0):
            files, pairs = watcher.pending()
            console.print(f"[dim]{label}: {time.monotonic() - started:5.0f}s, {len(watcher.files)} files landed, "
                          f"{files} not yet in bronze, {pairs} user refreshes pending, {len(watcher.errors)} poll errors"
                          + (f" (last: {watcher.errors[-1][:120]})" if watcher.errors else "") + "[/]")

    threading.Thread(target=progress, daemon=True).start()
    try:
        report = replay.replay(settings, source=source, rate=rate, rows_per_file=rows_per_file, duration=duration,
                               on_file=on_file)
        deadline = time.monotonic() + drain
        while watcher.pending() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        watcher.stop()
        stop_progress.set()
    files = dict(watcher.files)
    ledger = wait_ledger(spark, list(files), drain)  # the stream is idle again: the next run starts clean
    thrift = [seen - files[name].at for name, (seen, _) in watcher.seen.items()]
    folded = [at - files[name].at for (name, _), at in watcher.refreshed.items()]
    batches = ledger_batches(spark, bench.stream_id, before)
    pending_files, pending_pairs = len(files) - len(watcher.seen), sum(len(f.users) for f in files.values()) - len(watcher.refreshed)
    return {
        "rate_target": rate, "rate_achieved": report.achieved_rate, "rows_per_file": rows_per_file,
        "files": len(files), "ratings": report.ratings, "user_refreshes": sum(len(f.users) for f in files.values()),
        "bronze_thrift_s": stats(thrift), "bronze_ledger_s": stats([r.bronze for r in ledger]),
        "recs_thrift_s": stats(folded), "recs_ledger_s": stats([r.finished for r in ledger]),
        "files_never_seen": pending_files, "refreshes_never_seen": pending_pairs,
        "files_missing_from_ledger": len(files) - len(ledger),
        "poll_query_s": stats(watcher.poll_seconds), "poll_errors": len(watcher.errors),
        "poll_error_examples": sorted(set(watcher.errors))[:3],
        "batches": len(batches), "files_per_batch": med([b.files for b in batches]),
        "batch_s": stats([b.batch_seconds for b in batches]),
        "fold_in_s": stats([b.fold_in_seconds for b in batches]),
        "users_per_batch": med([b.users_refreshed for b in batches]),
    }


def sustained_run(bench: Bench, rate: float, rows_per_file: int, duration: float, drain: float) -> dict:
    spark, settings = bench.spark, bench.settings
    before = last_batch(spark, bench.stream_id)
    landed: list[tuple[float, int]] = []
    backlog_files: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:  # files waiting in the landing folder (processed ones are archived)
        while not stop.wait(1.0):
            try:
                waiting = sum(1 for e in os.scandir(settings.stream_inbox_dir) if not e.name.startswith("."))
            except OSError:
                continue
            backlog_files.append((time.time(), waiting))

    def on_file(path: Path, count: int) -> None:
        landed.append((landed_epoch(path.name), count))
        console.print(f"[dim]sustained: {len(landed)} files landed, {sum(c for _, c in landed):,} ratings, "
                      f"{backlog_files[-1][1] if backlog_files else 0} waiting in the landing folder[/]")

    threading.Thread(target=sample, daemon=True).start()
    try:
        # Pre-drawn ratings, so the writer spends its time writing, not drawing (2 cores only).
        stamp = int(time.time())  # rated now, as the latency runs' ratings are
        pool = [r._replace(timestamp=stamp) for r in itertools.islice(bench.draw(), rows_per_file)]
        report = replay.replay(settings, source=itertools.cycle(pool), rate=rate, rows_per_file=rows_per_file,
                               duration=duration, now=False, on_file=on_file)
        names = [p.name for p in report.files]
        ledger = wait_ledger(spark, names, drain)
    finally:
        stop.set()
    drained = len(ledger) == len(names)
    batches = ledger_batches(spark, bench.stream_id, before)
    first, last = landed[0][0], landed[-1][0]
    window = max(last - first, 1e-9)
    in_window = sum(b.rows_read for b in batches if first <= b.committed <= last)
    # Backlog (ratings landed but not committed) once a second over the landing window.
    times = np.arange(first, last + 1e-9, 1.0)
    land_t, land_n = np.array([t for t, _ in landed]), np.cumsum([n for _, n in landed])
    done_t, done_n = np.array([b.committed for b in batches]), np.cumsum([b.rows_read for b in batches])

    def cumulative(at, t, n):
        index = np.searchsorted(t, at, side="right")
        return np.where(index > 0, n[np.maximum(index - 1, 0)], 0)

    backlog = cumulative(times, land_t, land_n) - cumulative(times, done_t, done_n) if len(batches) else land_n
    slope = float(np.polyfit(times - first, backlog, 1)[0]) if len(times) >= 3 else None
    lags = [r.bronze for r in sorted(ledger, key=lambda r: r.landed)]
    third = max(len(lags) // 3, 1)
    folder = [n for t, n in backlog_files if first <= t <= last]
    grows = slope is not None and slope > 0.05 * rate
    return {
        "rate_target": rate, "rate_landed": report.achieved_rate, "rows_per_file": rows_per_file,
        "files": len(report.files), "ratings": report.ratings, "window_s": window,
        "committed_per_s_in_window": in_window / window,
        "committed_per_s_overall": (sum(b.rows_read for b in batches) / (batches[-1].committed - first)) if batches else None,
        "drained": drained, "drain_s": (batches[-1].committed - last) if batches else None,
        "backlog_ratings_slope_per_s": slope,
        "backlog_ratings_first_third": float(np.mean(backlog[: max(len(backlog) // 3, 1)])),
        "backlog_ratings_last_third": float(np.mean(backlog[-max(len(backlog) // 3, 1):])),
        "landing_folder_files_max": max(folder, default=0),
        "landing_folder_files_last": folder[-1] if folder else 0,
        "lag_s_first_third": med(lags[:third]), "lag_s_last_third": med(lags[-third:]),
        "backlog_grows": grows,
        "batches": len(batches), "files_per_batch": med([b.files for b in batches]),
        "batch_s": stats([b.batch_seconds for b in batches]),
        "fold_in_s": stats([b.fold_in_seconds for b in batches]),
        "users_per_batch": med([b.users_refreshed for b in batches]),
    }


def summarise(runs: list[dict]) -> dict:
    """Medians over runs of the per-run figures (and the per-run p95s, to show the spread)."""
    out = {}
    for key in ("bronze_thrift_s", "bronze_ledger_s", "recs_thrift_s", "recs_ledger_s", "poll_query_s", "batch_s", "fold_in_s"):
        out[key] = {q: med([r[key][q] for r in runs]) for q in ("p50", "p95", "max")}
        out[key]["p95_per_run"] = [r[key]["p95"] for r in runs]
    out["rate_achieved"] = med([r["rate_achieved"] for r in runs])
    out["files_never_seen"] = sum(r["files_never_seen"] for r in runs)
    out["refreshes_never_seen"] = sum(r["refreshes_never_seen"] for r in runs)
    out["files_missing_from_ledger"] = sum(r["files_missing_from_ledger"] for r in runs)
    out["poll_errors"] = sum(r["poll_errors"] for r in runs)
    out["users_per_batch"] = med([r["users_per_batch"] for r in runs])
    return out


# ---- set-up ---------------------------------------------------------------------------------


def set_up(stages: Stages, spark, settings: Settings, ml_100k: Path) -> str:
    """Ingest (10% held out), dbt build, train with the quick grid: what the fold-in needs."""
    from ml.train import add_arguments, run_training

    if (ml_100k / "u.data").exists():
        source, dataset_label = ml_100k, f"ml-100k ({ml_100k})"
    else:
        source = settings.home / "synthetic-ml-100k"
        console.print(f"[yellow]ml-100k not found at {ml_100k}: using a synthetic set in its layout[/]")
        generate(SyntheticSpec(layout="ml-100k", ratings=100_000, seed=1), source)
        dataset_label = "synthetic 100k (ml-100k layout)"
    with stages.stage("ingest ml-100k, 10% held out") as notes:
        report = ingest_with_progress(spark, settings, "ml-100k", source, holdout_fraction=HOLDOUT_FRACTION)
        loaded = sum(f.rows_loaded for f in report.files if f.target_table == "bronze.ratings")
        notes.append(f"{loaded:,} ratings loaded, {sum(f.rows_held_out for f in report.files):,} held out")
    with stages.stage("dbt build") as notes:
        outcome = run_dbt(settings, "build", "--exclude", ML_NODES, "--quiet")  # as `make run`: ml marts wait
        notes.append(outcome.describe())
        if not outcome.ok:
            raise SystemExit(f"dbt build failed: {outcome.failures}")
    with stages.stage("train the ranking champion (--task ranking --grid quick)") as notes:
        # The fold-in serves the ranking champion only; the rating sweep would add ~5 min here.
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        trained = run_training(spark, settings, parser.parse_args(["--task", "ranking", "--grid", "quick"]))
        notes.append(", ".join(f"{name} v{version}" for name, version in trained.registered.items()))
    return dataset_label


def champion_exists(spark) -> bool:
    return spark.catalog.tableExists("ml.item_factors") and spark.table("ml.item_factors").limit(1).count() > 0


# ---- output ---------------------------------------------------------------------------------


def latency_table(results: dict, trigger: float, machine: dict, runs: int, duration: float):
    rows = []
    for rate_label, summary in results.items():
        for key, what, target, ledger_key in (
            ("bronze_thrift_s", "landing -> bronze, over Thrift", trigger + 2.0, "bronze_ledger_s"),
            ("recs_thrift_s", "landing -> user's recs rewritten, over Thrift", 10.0 if rate_label == "100/s" else None, "recs_ledger_s"),
        ):
            s, ledger = summary[key], summary[ledger_key]
            verdict = "-" if target is None or s["p95"] is None else ("met" if s["p95"] <= target else "MISSED")
            rows.append((what, rate_label, fmt(s["p50"]), fmt(s["p95"]), " / ".join(fmt(v) for v in s["p95_per_run"]),
                         fmt(s["max"]), f"{fmt(ledger['p50'])} / {fmt(ledger['p95'])}",
                         f"<= {target:g}" if target else "-", verdict))
    return table(
        f"Streaming latency (s), median over {runs} runs of {duration:g} s; {machine['cpus']} cores, "
        f"{machine['memory_gib']} GiB, shared (load {machine['load']['load1_mean']} mean)",
        ["measure", "rate", "p50", "p95", "p95 per run", "max", "ledger p50 / p95", "target p95", "verdict"], rows,
    )


def sustained_table(s: dict):
    rows = [
        ("landed (target)", f"{s['rate_landed']:,.0f} ratings/s ({s['rate_target']:,.0f}) in {s['files']} files of {s['rows_per_file']:,}"),
        ("committed, over the landing window", f"{s['committed_per_s_in_window']:,.0f} ratings/s ({s['window_s']:.0f} s)"),
        ("committed, first landing -> last commit", f"{s['committed_per_s_overall']:,.0f} ratings/s" if s["committed_per_s_overall"] else "-"),
        ("backlog trend", f"{s['backlog_ratings_slope_per_s']:+,.0f} ratings/s" if s["backlog_ratings_slope_per_s"] is not None else "-"),
        ("backlog, first / last third of the window", f"{s['backlog_ratings_first_third']:,.0f} / {s['backlog_ratings_last_third']:,.0f} ratings"),
        ("files waiting in the landing folder, max / at the end", f"{s['landing_folder_files_max']} / {s['landing_folder_files_last']}"),
        ("landing -> committed (ledger), first / last third", f"{fmt(s['lag_s_first_third'])} / {fmt(s['lag_s_last_third'])} s"),
        ("drain after the last file", f"{fmt(s['drain_s'])} s" + ("" if s["drained"] else " (timed out)")),
        ("batches: files, seconds p50, fold-in seconds p50", f"{fmt(s['files_per_batch'], 0)}, {fmt(s['batch_s']['p50'])}, {fmt(s['fold_in_s']['p50'])}"),
        ("verdict (>= 20,000/s, backlog not growing)",
         "met" if s["committed_per_s_in_window"] >= 20_000 and not s["backlog_grows"] else "MISSED"),
    ]
    return table("Sustained ingest (fold-in on, LAKEHOUSE_STREAM_MAX_FILES default 100)", ["measure", "value"], rows)


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per latency scenario (default 3)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of replay per latency run (default 60)")
    parser.add_argument("--rates", default="100:100,2000:500",
                        help="latency scenarios as rate:rows_per_file, comma-separated (default %(default)s)")
    parser.add_argument("--sustained-rate", type=float, default=20_000.0)
    parser.add_argument("--sustained-rows-per-file", type=int, default=50_000)
    parser.add_argument("--sustained-seconds", type=float, default=90.0, help="0 skips the sustained scenario")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for the stream to catch up after a run")
    parser.add_argument("--source", choices=("holdout", "synthetic"), default="holdout",
                        help="held-out ml-100k ratings (cycled; stamped with the landing time), or synthetic ones")
    parser.add_argument("--ml-100k", type=Path, default=DEFAULT_ML_100K)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--home", type=Path, help="a data directory to use and keep (set-up skipped if it has a champion)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "streaming.json")
    args = parser.parse_args()
    scenarios = [(float(r), int(n)) for r, n in (item.split(":") for item in args.rates.split(","))]

    # SIGTERM (a CI timeout, `kill`) unwinds through the finally blocks: stream and server stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    load = LoadSampler().start()
    temp = None if args.home else tempfile.TemporaryDirectory(prefix="lakehouse-bench-stream-")
    home = (args.home or Path(temp.name)).resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, thrift_port=free_port(), connect_port=free_port(), driver_memory=args.driver_memory,
                        mlflow_dir=home / "mlflow", mlflow_port=free_port(), stream_dir=home / "landing")
    os.environ["DBT_TARGET_PATH"] = str(home / "dbt-target")
    console.print(f"machine: {machine['cpus']} cores, {machine['memory_gib']} GiB, load {machine['load_at_start']}, "
                  f"{machine['other_spark_jvms_at_start']} other Spark drivers running; data directory {home}")
    stages = Stages()
    latency: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {}
    sustained = warm_up = None
    dataset = "(reused)"
    try:
        with stages.stage("lakehouse server") as notes:
            state, _ = server.up(settings, timeout=300, quiet=True)
            notes.append(f"Delta Lake {state.delta_version}, driver memory {settings.driver_memory}")
        spark = connect(settings)
        if champion_exists(spark):
            console.print("[yellow]the data directory has a champion already: set-up skipped[/]")
        else:
            dataset = set_up(stages, spark, settings, args.ml_100k)
        with stages.stage("stream: start (detached, fold-in on)") as notes:
            if args.source == "holdout":
                pool = list(replay.read_holdout(replay.holdout_path(settings)))
            else:
                users, movies = replay.known_ids(settings, spark)
                pool = list(itertools.islice(replay.synthetic_ratings(users, movies, seed=42), 200_000))
            bench = Bench(spark, settings, pool, job.stream_id(settings))
            job.detach(settings, timeout=300)
            notes.append(f"{len(pool):,} {args.source} ratings in the pool, {len({r.user_id for r in pool})} users; "
                         f"trigger {settings.stream_trigger_seconds:g}s, max {settings.stream_max_files_per_trigger} files")
        with stages.stage("stream: warm-up file (not measured)") as notes:
            # The first batch starts the server's Python worker and loads the champion: a one-off
            # cost (tens of seconds on a loaded machine) that would otherwise land in run 1.
            report = replay.replay(settings, source=list(itertools.islice(bench.draw(), 100)), rate=0, rows_per_file=100)
            warm = wait_ledger(spark, [p.name for p in report.files], 300)
            if not warm:
                raise SystemExit(f"the warm-up file was not committed within 300 s; see {settings.stream_log}")
            warm_up = {"landing_to_committed_s": warm[0].bronze, "landing_to_finished_s": warm[0].finished}
            notes.append(f"landing -> committed {warm[0].bronze:.1f}s, -> recommendations {warm[0].finished:.1f}s")
        for rate, rows_per_file in scenarios:
            label = f"{rate:g}/s"
            runs[label] = []
            for index in range(args.runs):
                with stages.stage(f"latency {label}, run {index + 1}/{args.runs} ({args.duration:g}s, {rows_per_file} rows a file)") as notes:
                    result = latency_run(bench, rate, rows_per_file, args.duration, args.drain, f"{label} run {index + 1}")
                    runs[label].append(result)
                    notes.append(f"bronze over Thrift p95 {fmt(result['bronze_thrift_s']['p95'])}s, "
                                 f"recs rewritten p95 {fmt(result['recs_thrift_s']['p95'])}s, "
                                 f"{result['batches']} batches, {result['poll_errors']} poll errors")
            latency[label] = summarise(runs[label])
        if args.sustained_seconds > 0:
            with stages.stage(f"sustained {args.sustained_rate:,.0f}/s for {args.sustained_seconds:g}s") as notes:
                sustained = sustained_run(bench, args.sustained_rate, args.sustained_rows_per_file,
                                          args.sustained_seconds, args.drain * 2)
                notes.append(f"{sustained['committed_per_s_in_window']:,.0f} ratings/s committed, backlog "
                             f"{'grows' if sustained['backlog_grows'] else 'steady'}")
        spark.stop()
    finally:
        job.stop(settings)
        server.down(settings)
        machine["load"] = load.stop()
        machine["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        console.print(stages.summary())
        if temp is not None:
            temp.cleanup()

    result = {
        "machine": machine, "dataset": dataset, "source": args.source,
        "settings": {"trigger_seconds": settings.stream_trigger_seconds,
                     "max_files_per_trigger": settings.stream_max_files_per_trigger,
                     "driver_memory": settings.driver_memory, "fold_in": True, "poll_seconds": POLL_SECONDS},
        "runs_per_scenario": args.runs, "run_seconds": args.duration,
        "stages": [{"stage": n, "seconds": round(s, 1), "outcome": o} for n, s, o in stages.timings],
        "warm_up": warm_up, "latency": latency, "latency_runs": runs, "sustained": sustained,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    console.print(latency_table(latency, settings.stream_trigger_seconds, machine, args.runs, args.duration))
    if sustained:
        console.print(sustained_table(sustained))
    console.print(f"load average (1 min) during the bench: mean {machine['load']['load1_mean']}, max "
                  f"{machine['load']['load1_max']}; {machine['other_spark_jvms_at_start']} other Spark drivers at the start")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
