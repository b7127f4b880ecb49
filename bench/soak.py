"""Soak run of the stream under faults: replay for a long while, kill things, count every rating.

One server on free ports in a temporary data directory (a user's server is never touched), set up
as bench/readers.py does (ingest ml-100k, dbt build, `lakehouse train --task ranking --grid
quick`), then `lakehouse stream --detach` with the fold-in on. For `--minutes` (30), `lakehouse
replay`'s writer lands synthetic ratings at `--rate` (500/s) in files of `--rows-per-file` (250),
half of them into the stream's inbox directly (as `lakehouse land` does) and half written in place
into the landing folder through one open file, as `cp` does (the landing gate must wait for
them). Meanwhile:

- every `--kill-every` minutes (5) the stream's process is killed with SIGKILL and started again
  (its query, orphaned in the server, must stop by itself; the new one runs its batch again);
- once, halfway through, the whole server is killed with SIGKILL and started again; the stream's
  process is left alone and must reconnect by itself (a supervised restart).

Then the replay stops, the stream drains, and the ledger is counted: ratings landed = ratings
committed to bronze.rating_events + quarantined, with 0 lines twice. Prints the counts, the
kills, the stream's own restarts and the landing→bronze latency over the run; writes
bench/results/soak.json. Not part of `make test` (it takes the time it says).

    .venv/bin/python bench/soak.py [--minutes 30] [--rate 500] [--kill-every 5]
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.harness import LoadSampler, fmt, kill_group, machine_info, short_error, stats  # noqa: E402
from bench.prepared import DEFAULT_ML_100K, bench_settings, set_up  # noqa: E402
from lakehouse import server, tables  # noqa: E402
from lakehouse.console import Stages, console, table  # noqa: E402
from lakehouse.stream import job, replay  # noqa: E402


class Feeder(threading.Thread):
    """Lands synthetic ratings at a steady rate, alternating the two ways in; counts what it landed."""

    def __init__(self, settings, users, movies, rate: float, rows_per_file: int, stop: threading.Event):
        super().__init__(daemon=True, name="feeder")
        self.settings, self.rate, self.rows_per_file, self.stop = settings, rate, rows_per_file, stop
        self.ratings = replay.synthetic_ratings(users, movies, seed=11)
        self.inbox = replay.LandingWriter(settings.stream_inbox_dir, "csv")
        self.landed, self.files, self.in_place = 0, 0, 0
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                batch = [next(self.ratings) for _ in range(self.rows_per_file)]
                due = started + (self.landed + len(batch)) / self.rate
                if self.stop.wait(max(due - time.monotonic(), 0.0)):
                    break
                stamp = int(time.time())
                batch = [r._replace(timestamp=stamp) for r in batch]
                if self.files % 2:
                    self.write_in_place(batch)
                else:
                    self.inbox.write(batch, now=False)
                self.landed += len(batch)
                self.files += 1
        except BaseException as error:  # noqa: BLE001 - reported at the end
            self.error = error

    def write_in_place(self, batch) -> None:
        """As `cp` does: the final name from the start, written in two pieces through one open file."""
        self.settings.stream_dir.mkdir(parents=True, exist_ok=True)
        path = self.settings.stream_dir / f"copied-{self.files:07d}.csv"
        lines = [replay.format_line(r, "csv") for r in batch]
        with open(path, "w", encoding="utf-8") as out:
            out.write("".join(lines[: len(lines) // 2]))
            out.flush()
            time.sleep(0.2)
            out.write("".join(lines[len(lines) // 2:]))
        self.in_place += 1


def new_session(settings):
    """A session of its own (the process's cached one would be the killed server's)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(settings.connect_url).create()


def ledger(spark, settings) -> dict:
    from pyspark.sql import functions as F

    sid = job.stream_id(settings)
    prefix = f"{tables.STREAM_LOAD_PREFIX}{sid}-"
    for name in (tables.RATING_EVENTS.name, tables.QUARANTINE.name, tables.STREAM_BATCHES.name):
        spark.catalog.refreshTable(name)
    events = spark.table(tables.RATING_EVENTS.name).where(F.col("load_id").startswith(prefix))
    row = events.agg(F.count(F.lit(1)).alias("rows"),
                     F.count_distinct("source_file", "line_number").alias("distinct_lines")).first()
    quarantined = spark.table(tables.QUARANTINE.name).where(
        F.col("load_id").startswith(prefix) | F.col("load_id").startswith(f"dead-letter-{sid}-")).count()
    batches = spark.table(tables.STREAM_BATCHES.name).where(F.col("query_id") == sid)
    latency = [r.latency_max_seconds for r in batches.select("latency_max_seconds").collect()
               if r.latency_max_seconds is not None]
    twice = batches.groupBy("batch_id").count().where("count > 1").count()
    return {"committed": int(row.rows), "distinct_lines": int(row.distinct_lines), "quarantined": int(quarantined),
            "batches": batches.count(), "batches_twice_in_ledger": twice, "latency_max_s": stats(latency)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=500.0, help="ratings per second (default 500)")
    parser.add_argument("--rows-per-file", type=int, default=250)
    parser.add_argument("--kill-every", type=float, default=5.0, help="minutes between kills of the stream (default 5)")
    parser.add_argument("--drain", type=float, default=900.0, help="seconds to wait for the stream to catch up")
    parser.add_argument("--ml-100k", type=Path, default=DEFAULT_ML_100K)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    machine = machine_info()
    load = LoadSampler().start()
    home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-soak-")).resolve()
    settings = bench_settings(home, args.driver_memory)
    stages = Stages()
    result: dict = {"kills": []}
    spark, ok, dead_sessions = None, False, []
    try:
        with stages.stage("lakehouse server"):
            server.up(settings, timeout=300, quiet=True)
        spark = new_session(settings)
        dataset = set_up(stages, spark, settings, args.ml_100k)
        users, movies = replay.known_ids(settings, spark)
        with stages.stage("stream: start (detached, fold-in on)"):
            job.detach(settings, fold_in=True, timeout=300)
        stop = threading.Event()
        feeder = Feeder(settings, users, movies, args.rate, args.rows_per_file, stop)
        with stages.stage(f"soak: {args.minutes:g} min at {args.rate:g} ratings/s with kills") as notes:
            started = time.monotonic()
            feeder.start()
            end = started + args.minutes * 60
            next_kill = started + args.kill_every * 60
            server_kill = started + args.minutes * 60 / 2 + 30  # halfway, away from a stream kill
            while time.monotonic() < end and feeder.is_alive():
                now = time.monotonic()
                if now >= server_kill:
                    server_kill = float("inf")
                    kill_group(server.running_pid(settings))
                    result["kills"].append({"what": "server", "at_s": round(now - started, 1)})
                    console.print(f"+{now - started:.0f}s killed the server; starting it again (the stream is left alone)")
                    dead_sessions.append(spark)  # never collected mid-run: pyspark's finalizer can deadlock
                    while server.port_open(settings.host, settings.thrift_port) or \
                            server.port_open(settings.host, settings.connect_port):
                        time.sleep(0.1)
                    server.up(settings, timeout=300, quiet=True)
                    spark = new_session(settings)
                elif now >= next_kill:
                    next_kill += args.kill_every * 60
                    kill_group(job.running_pid(settings))
                    result["kills"].append({"what": "stream", "at_s": round(now - started, 1)})
                    console.print(f"+{now - started:.0f}s killed the stream's process; starting a new one")
                    job.detach(settings, fold_in=True, timeout=300)
                time.sleep(1.0)
            stop.set()
            feeder.join(60)
            notes.append(f"{feeder.landed:,} ratings in {feeder.files:,} files ({feeder.in_place:,} written in place)")
        if feeder.error is not None:
            raise SystemExit(f"the feeder failed: {short_error(feeder.error)}")
        with stages.stage("drain: the stream catches up") as notes:
            deadline = time.monotonic() + args.drain
            counts = ledger(spark, settings)
            while counts["committed"] + counts["quarantined"] < feeder.landed and time.monotonic() < deadline:
                time.sleep(5)
                counts = ledger(spark, settings)
            status = job.read_status(settings) or {}
            notes.append(f"{counts['committed']:,} committed + {counts['quarantined']:,} quarantined")
        result.update({
            "dataset": dataset, "minutes": args.minutes, "rate": args.rate, "rows_per_file": args.rows_per_file,
            "landed": feeder.landed, "files": feeder.files, "files_in_place": feeder.in_place, **counts,
            "duplicates": counts["committed"] - counts["distinct_lines"],
            "stream_restarts_after_the_last_kill": status.get("restarts"),
            "stream_log_restarts": settings.stream_log.read_text().count("supervisor: restart "),
            "orphans_stopped": settings.stream_log.read_text().count("is gone before"),
        })
        ok = (result["landed"] == result["committed"] + result["quarantined"] and result["duplicates"] == 0
              and result["batches_twice_in_ledger"] == 0)
    finally:
        job.stop(settings)
        server.down(settings)
        machine["load"] = load.stop()
        console.print(stages.summary())
        if ok:
            shutil.rmtree(home, ignore_errors=True)
        else:
            console.print(f"[yellow]kept the data directory for its logs: {home}[/]")
    out = {"machine": machine, "passed": ok,
           "stages": [{"stage": n, "seconds": round(s, 1), "outcome": o} for n, s, o in stages.timings], **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    latency = result["latency_max_s"]
    console.print(table(f"Soak: {args.minutes:g} min at {args.rate:g} ratings/s, {machine['cpus']} cores",
                        ["landed", "committed", "quarantined", "duplicates", "kills (stream / server)",
                         "supervised restarts", "orphaned queries stopped", "landing→bronze p50 / p95 / max s"],
                        [(f"{result['landed']:,}", f"{result['committed']:,}", f"{result['quarantined']:,}",
                          result["duplicates"],
                          f"{sum(k['what'] == 'stream' for k in result['kills'])} / "
                          f"{sum(k['what'] == 'server' for k in result['kills'])}",
                          result["stream_log_restarts"], result["orphans_stopped"],
                          f"{fmt(latency['p50'])} / {fmt(latency['p95'])} / {fmt(latency['max'])}")]))
    console.print(f"{'PASSED' if ok else 'FAILED'}: landed = committed + quarantined, 0 duplicates; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
