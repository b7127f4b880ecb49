"""Benchmark of reader consistency: what a BI client over Thrift sees while every writer runs.

One server on free ports in a temporary data directory (a user's server is never touched), set up
as a user would: `up`, ingest ml-100k (the synthetic ml-100k layout when the shared copy is
missing), `dbt build --exclude source:ml+` (seeds and models), `lakehouse train --task ranking
--grid quick` (publishes ml.recommendations), then `lakehouse stream --detach` with the fold-in
on (trigger 1 s) and one warm-up file, not measured.

Then a reader polls the Thrift server (PyHive, one connection, as a dashboard keeps one) every
250 ms with `select count(*)` on ml.recommendations, gold.movies and gold.ratings (three reads a
poll), for a baseline of `--baseline` s and then while, overlapping:

- the stream folds in replayed synthetic ratings (`lakehouse replay`'s writer, `--rate`
  ratings/s in files of `--rows-per-file`) for at least `--replay-seconds`, and on until the
  other writers are done (MERGE into ml.recommendations, appends to bronze);
- `dbt build --exclude source:ml+` (dbt's unit tests left out: they run on fixtures) rebuilds
  gold (`create or replace table`; a MERGE into the incremental gold.ratings), and then
- `lakehouse train --task ranking --grid quick` replaces ml.recommendations.

A read fails when the statement raises (the connection is then opened again), and is "empty"
when a count is 0: both must stay at zero, since every write is one Delta commit. Prints the
reads attempted / failed / empty per table with p50 / p95 / max latency, the latency per phase,
and each writer's duration; writes bench/results/readers.json (with the machine and its load:
this 2-core machine is shared).

    .venv/bin/python bench/readers.py [--replay-seconds 30] [--rate 20] [--rows-per-file 20]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import POLL_SECONDS, CountReader, LoadSampler, Read, fmt, machine_info, stats  # noqa: E402
from bench.prepared import DBT_BUILD, DEFAULT_ML_100K, bench_settings, lakehouse_cli, ledger_files, set_up, wait_committed  # noqa: E402
from lakehouse import server, tables  # noqa: E402
from lakehouse.console import Stages, console, table  # noqa: E402
from lakehouse.dbt_runner import run_dbt  # noqa: E402
from lakehouse.session import connect  # noqa: E402
from lakehouse.settings import Settings  # noqa: E402
from lakehouse.stream import job, replay  # noqa: E402

READS = {
    "ml.recommendations": "select count(*) from ml.recommendations",
    "gold.movies": "select count(*) from gold.movies",
    "gold.ratings": "select count(*) from gold.ratings",
}


# ---- the machine, and how busy it is (as bench/streaming.py) ---------------------------------


# ---- the reader ------------------------------------------------------------------------------


@dataclass
class Writer:
    name: str
    started: float | None = None  # monotonic
    finished: float | None = None
    ok: bool = False
    outcome: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.finished is None else self.finished - self.started


# ---- the measured run ------------------------------------------------------------------------


def measured_run(spark, settings: Settings, args) -> dict:
    users, movies = replay.known_ids(settings, spark)
    versions = {t: int(spark.sql(f"describe history {t} limit 1").first().version) for t in READS}
    log_offset = settings.stream_log.stat().st_size
    reader = CountReader(settings.host, settings.thrift_port, READS, username="bench")
    reader.start()
    time.sleep(args.baseline)  # reads with no writer: the baseline latency
    writers_from = time.monotonic()

    landed: list[tuple[str, int]] = []
    replaying = Writer(f"replay -> stream fold-in ({args.rate:g} ratings/s, {args.rows_per_file} a file)")
    stream = Writer("stream: first landing -> last file in bronze")
    dbt = Writer("dbt build --exclude source:ml+")
    train = Writer("lakehouse train --task ranking --grid quick")
    others_done, stop_replay = threading.Event(), threading.Event()

    def replay_thread() -> None:
        replaying.started = stream.started = time.monotonic()

        def stopper() -> None:
            time.sleep(args.replay_seconds)
            others_done.wait()
            stop_replay.set()

        threading.Thread(target=stopper, daemon=True).start()
        report = replay.replay(settings, source=replay.synthetic_ratings(users, movies, seed=17), rate=args.rate,
                               rows_per_file=args.rows_per_file, stop=stop_replay,
                               on_file=lambda p, n: landed.append((p.name, n)))
        replaying.finished, replaying.ok = time.monotonic(), True
        replaying.outcome = f"{len(report.files)} files, {report.ratings:,} ratings"

    def dbt_then_train() -> None:
        try:
            dbt.started = time.monotonic()
            outcome = run_dbt(settings, *DBT_BUILD, "--quiet")
            dbt.finished, dbt.ok, dbt.outcome = time.monotonic(), outcome.ok, outcome.describe()
            train.started = time.monotonic()
            train.ok, tail = lakehouse_cli(settings, "train", "--task", "ranking", "--grid", "quick")
            train.finished, train.outcome = time.monotonic(), "published" if train.ok else tail.splitlines()[-1]
        finally:
            others_done.set()

    threads = [threading.Thread(target=replay_thread, daemon=True), threading.Thread(target=dbt_then_train, daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = [name for name, _ in landed]
    stream.ok = wait_committed(spark, settings, names, args.drain)
    stream.finished = time.monotonic()
    committed = ledger_files(spark, settings, names)
    stream.outcome = (f"{len(committed)}/{len(names)} files, {sum(committed.values()):,} ratings committed"
                      + ("" if stream.ok else " (timed out)"))
    time.sleep(2.0)
    reader.stop()

    with open(settings.stream_log, "rb") as log:
        log.seek(log_offset)
        new_lines = log.read().decode(errors="replace")
    folded = [int(n) for n in re.findall(r"fold-in: merging (\d+) users'", new_lines)]
    history = {}
    for name, version in versions.items():
        ops = [r.operation for r in spark.sql(f"describe history {name}").collect() if r.version > version]
        history[name] = {op: ops.count(op) for op in sorted(set(ops))}
    return summarise(reader.reads, writers_from, [replaying, stream, dbt, train], folded, history)


def summarise(reads: list[Read], writers_from: float, writers: list[Writer], folded: list[int], history: dict) -> dict:
    replaying, stream, dbt, train = writers
    per_table = {}
    for name in READS:
        rs = [r for r in reads if r.table == name]
        ok = [r for r in rs if r.error is None]
        per_table[name] = {
            "attempted": len(rs), "failed": len(rs) - len(ok), "empty": sum(r.rows == 0 for r in ok),
            "rows_min": min((r.rows for r in ok), default=None), "rows_max": max((r.rows for r in ok), default=None),
            "latency_s": stats([r.seconds for r in ok]),
        }
    phases = {
        "baseline (no writer)": (reads[0].at if reads else 0.0, writers_from),
        "dbt build": (dbt.started, dbt.finished),
        "lakehouse train": (train.started, train.finished),
        "stream only (after train)": (train.finished, stream.finished),
    }
    by_phase = {}
    for phase, (start, end) in phases.items():
        if start is None or end is None:
            continue
        rs = [r for r in reads if start <= r.at < end and r.error is None]
        by_phase[phase] = {"seconds": round(end - start, 1), "reads": len(rs), "latency_s": stats([r.seconds for r in rs])}
    errors = [{"table": r.table, "at_s": round(r.at - reads[0].at, 2), "error": r.error} for r in reads if r.error]
    return {
        "reads": {"attempted": len(reads), "failed": len(errors), "empty": sum(t["empty"] for t in per_table.values()),
                  "window_s": round(reads[-1].at - reads[0].at, 1) if reads else 0.0},
        "per_table": per_table,
        "by_phase": by_phase,
        "writers": [{**{k: v for k, v in asdict(w).items() if k not in ("started", "finished")},
                     "seconds": round(w.seconds, 1) if w.seconds is not None else None} for w in writers],
        "fold_in_merges": len(folded), "fold_in_users": sum(folded),
        "commits_during_run": history,
        "errors": errors[:100],
    }


# ---- output ----------------------------------------------------------------------------------


def reads_table(result: dict, machine: dict):
    rows = [(name, str(t["attempted"]), str(t["failed"]), str(t["empty"]), f"{t['rows_min']:,} - {t['rows_max']:,}"
             if t["rows_min"] is not None else "-", fmt(t["latency_s"]["p50"], 2), fmt(t["latency_s"]["p95"], 2),
             fmt(t["latency_s"]["max"], 2)) for name, t in result["per_table"].items()]
    total = result["reads"]
    rows.append(("all", str(total["attempted"]), str(total["failed"]), str(total["empty"]), "", "", "", ""))
    return table(f"Thrift reads every {POLL_SECONDS:g}s over {total['window_s']:.0f}s while the writers ran; "
                 f"{machine['cpus']} cores, shared (load {machine['load']['load1_mean']} mean)",
                 ["table", "reads", "failed", "empty", "rows seen", "p50 s", "p95 s", "max s"], rows)


def phases_table(result: dict):
    rows = [(phase, fmt(p["seconds"], 0), str(p["reads"]), fmt(p["latency_s"]["p50"], 2), fmt(p["latency_s"]["p95"], 2))
            for phase, p in result["by_phase"].items()]
    return table("Read latency by phase (all three tables)", ["phase", "seconds", "reads", "p50 s", "p95 s"], rows)


def writers_table(result: dict):
    rows = [(w["name"], fmt(w["seconds"], 1), "ok" if w["ok"] else "FAILED", w["outcome"]) for w in result["writers"]]
    rows.append(("fold-in merges into ml.recommendations", "", "", f"{result['fold_in_merges']} merges, "
                 f"{result['fold_in_users']} users' lists"))
    for name, ops in result["commits_during_run"].items():
        rows.append((f"commits to {name}", "", "", ", ".join(f"{op} x{n}" for op, n in ops.items()) or "none"))
    return table("Concurrent writers", ["writer", "seconds", "result", "outcome"], rows)


# ---- main ------------------------------------------------------------------------------------


def passed(result: dict) -> bool:
    return result["reads"]["failed"] == 0 and result["reads"]["empty"] == 0 and all(w["ok"] for w in result["writers"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay-seconds", type=float, default=30.0, help="replay at least this long (default 30)")
    parser.add_argument("--rate", type=float, default=20.0, help="replayed ratings per second (default 20)")
    parser.add_argument("--rows-per-file", type=int, default=20, help="ratings per landed file (default 20)")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of reads before any writer (default 10)")
    parser.add_argument("--drain", type=float, default=600.0, help="seconds to wait for the stream to commit the last files")
    parser.add_argument("--ml-100k", type=Path, default=DEFAULT_ML_100K)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--home", type=Path, help="a data directory to use and keep (set-up skipped if it has a champion)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "readers.json")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally: stream and server stop
    machine = machine_info()
    load = LoadSampler().start()
    temp = None if args.home else Path(tempfile.mkdtemp(prefix="lakehouse-bench-readers-"))
    home = (args.home or temp).resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(home, args.driver_memory)
    console.print(f"machine: {machine['cpus']} cores, {machine['memory_gib']} GiB, load {machine['load_at_start']}, "
                  f"{machine['other_spark_jvms_at_start']} other Spark drivers running; data directory {home}")
    stages = Stages()
    dataset, result, spark = "(reused)", None, None
    try:
        with stages.stage("lakehouse server") as notes:
            state, _ = server.up(settings, timeout=300, quiet=True)
            notes.append(f"Spark {state.spark_version}, Delta {state.delta_version}, driver memory {settings.driver_memory}")
        spark = connect(settings)
        if spark.catalog.tableExists(tables.RECOMMENDATIONS.name):
            console.print("[yellow]the data directory has ml.recommendations already: set-up skipped[/]")
        else:
            dataset = set_up(stages, spark, settings, args.ml_100k)
        with stages.stage("stream: start (detached, fold-in on) + warm-up file") as notes:
            job.detach(settings, fold_in=True, timeout=300)
            users, movies = replay.known_ids(settings, spark)
            report = replay.replay(settings, source=replay.synthetic_ratings(users, movies, seed=3), limit=20,
                                   rows_per_file=20, rate=0)
            if not wait_committed(spark, settings, [p.name for p in report.files], 300):
                raise SystemExit(f"the warm-up file was not committed within 300 s; see {settings.stream_log}")
            notes.append(f"trigger {settings.stream_trigger_seconds:g}s")
        with stages.stage("readers while the stream, dbt build and train write") as notes:
            result = measured_run(spark, settings, args)
            notes.append(f"{result['reads']['attempted']} reads, {result['reads']['failed']} failed, "
                         f"{result['reads']['empty']} empty")
    finally:
        if spark is not None:  # before the server goes: a session left open retries it at exit
            spark.stop()
        job.stop(settings)
        server.down(settings)
        machine["load"] = load.stop()
        machine["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        console.print(stages.summary())
        if temp is not None and result is not None and passed(result):
            shutil.rmtree(temp, ignore_errors=True)
        elif temp is not None:  # what went wrong is in its logs
            console.print(f"[yellow]kept the data directory for its logs: {home}[/]")

    out = {
        "machine": machine, "dataset": dataset,
        "settings": {"poll_seconds": POLL_SECONDS, "reads": READS, "replay_rate": args.rate,
                     "rows_per_file": args.rows_per_file, "replay_seconds_min": args.replay_seconds,
                     "baseline_seconds": args.baseline, "trigger_seconds": settings.stream_trigger_seconds,
                     "driver_memory": settings.driver_memory, "dbt": " ".join(DBT_BUILD)},
        "stages": [{"stage": n, "seconds": round(s, 1), "outcome": o} for n, s, o in stages.timings],
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    console.print(reads_table(result, machine))
    console.print(phases_table(result))
    console.print(writers_table(result))
    for error in result["errors"][:10]:
        console.print(f"[red]failed read[/] {error['table']} at +{error['at_s']}s: {error['error']}")
    console.print(f"wrote {args.out}")
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
