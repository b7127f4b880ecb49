"""`lakehouse replay`: the stream simulator. It lands rating files for the stream.

Sources: `holdout` replays, in time order, the ratings `lakehouse ingest --holdout-fraction F` kept
out of bronze (`<LAKEHOUSE_HOME>/holdout/<dataset>/ratings.csv`); `synthetic` draws random ratings
(seeded) on known users and movies: ids 1..N with `users=N` / `movies=N`, otherwise the ids in
`bronze.ratings` / `bronze.users` and `bronze.movies`, read over Spark Connect. Synthetic movies get
a long-tailed popularity (weight 1/(position in the id list + 10)) and MovieLens-like whole-star
ratings (valid on every dataset's scale); a drawn (user, movie) pair may repeat a known rating.

Landing is atomic and goes straight into the stream's inbox (a trusted writer, like `lakehouse
land`: see lakehouse/stream/landing.py): a file is written under a name starting with '.' (Spark's
file source skips those), fsynced, given the current time as its modification time, then renamed to
`ratings-<UTC stamp>-<seq>.<csv|json>`, a name no other file of the stream has. The stream measures landing latency from that mtime; a
rename keeps the mtime, so it is set just before renaming.

Pacing: file n is due at start + (ratings in files 1..n) / rate on the monotonic clock. Sleeping to
absolute deadlines keeps the rate from drifting however long reading and writing take.

Timestamps: with `now` (the default, for both sources) each rating carries the time its file is
written, so event-time metrics ("the last hour") and watermarks see live traffic. `now=False`
keeps the held-out ratings' original times, e.g. to replay history in order; synthetic ratings
have no other time than the moment they are drawn.

Formats: `csv` (no header: user_id,movie_id,rating,timestamp), `csv-header` (the same with that
header line) and `jsonl` (one object a line with those keys, in `.json` files).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

from lakehouse.console import console, key_values
from lakehouse.datasets import HOLDOUT_HEADER, holdout_file
from lakehouse.settings import Settings
from lakehouse.stream.landing import fsync_dir

HEADER = ",".join(HOLDOUT_HEADER)  # user_id,movie_id,rating,timestamp
FORMATS = {"csv": ".csv", "csv-header": ".csv", "jsonl": ".json"}
SOURCES = ("holdout", "synthetic")
# Share of each whole-star rating in MovieLens (ml-100k, percent): 1, 2, 3, 4, 5 stars.
STAR_WEIGHTS = (6, 11, 27, 34, 22)


class Rating(NamedTuple):
    user_id: int
    movie_id: int
    rating: float
    timestamp: int  # epoch seconds


@dataclass
class ReplaySource:
    """What to replay: the ratings, how many there are (None: unknown), a label."""

    name: str
    ratings: Iterable[Rating]
    total: int | None
    description: str
    endless: bool = False


@dataclass
class ReplayReport:
    source: str
    landing_dir: Path
    fmt: str
    rate: float  # the target, ratings per second (0: unpaced)
    files: list[Path] = field(default_factory=list)
    ratings: int = 0
    seconds: float = 0.0  # from the start to the last file's rename
    stopped_by: str = ""  # source exhausted, limit, duration, stop requested, interrupted

    @property
    def achieved_rate(self) -> float | None:
        return self.ratings / self.seconds if self.seconds > 0 else None


# ---- sources ---------------------------------------------------------------------------------


def holdout_path(settings: Settings, dataset: str | None = None) -> Path:
    """The held-out ratings of `dataset`, or of the one dataset that has some."""
    if dataset:
        path = holdout_file(settings.holdout_dir, dataset)
        if not path.exists():
            raise FileNotFoundError(
                f"no held-out ratings for {dataset} ({path}); run `lakehouse ingest --dataset {dataset} "
                "--holdout-fraction 0.1` (with --replace if it is loaded already) first"
            )
        return path
    found = sorted(settings.holdout_dir.glob("*/ratings.csv"))
    if not found:
        raise FileNotFoundError(
            f"no held-out ratings under {settings.holdout_dir}; run `lakehouse ingest --holdout-fraction 0.1` "
            "(with --replace if the dataset is loaded already) first, or use --source synthetic"
        )
    if len(found) > 1:
        names = ", ".join(p.parent.name for p in found)
        raise ValueError(f"held-out ratings for several datasets ({names}): choose one with --dataset")
    return found[0]


def count_rows(path: Path) -> int:
    """Data lines of a held-out file (lines after the header), without parsing them."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without its LF
    return max(lines - 1, 0)


def read_holdout(path: Path) -> Iterator[Rating]:
    """The held-out ratings in file order (time order), one at a time."""
    with open(path, encoding="utf-8") as stream:
        header = stream.readline().strip()
        if header != HEADER:
            raise ValueError(f"{path}: expected the header {HEADER!r}, found {header!r}")
        for line_number, line in enumerate(stream, 2):
            if not line.strip():
                continue
            try:
                user, movie, rating, timestamp = line.rstrip("\r\n").split(",")
                yield Rating(int(user), int(movie), float(rating), int(timestamp))
            except ValueError:
                raise ValueError(f"{path}:{line_number}: not a rating line: {line.strip()!r}") from None


def synthetic_ratings(users: Sequence[int], movies: Sequence[int], seed: int) -> Iterator[Rating]:
    """Endless random ratings on these ids, the same sequence for the same seed."""
    if not users or not movies:
        raise ValueError("synthetic ratings need at least one user and one movie")
    rng = random.Random(seed)
    popularity = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(movies))))
    stars = (1.0, 2.0, 3.0, 4.0, 5.0)
    while True:
        yield Rating(
            rng.choice(users),
            rng.choices(movies, cum_weights=popularity)[0],
            rng.choices(stars, weights=STAR_WEIGHTS)[0],
            int(time.time()),
        )


def known_ids(settings: Settings, spark=None) -> tuple[list[int], list[int]]:
    """User and movie ids in bronze, read over Spark Connect."""
    from pyspark.sql import functions as F

    from lakehouse import tables
    from lakehouse.session import connect

    spark = spark or connect(settings)
    for table in (tables.RATINGS.name, tables.MOVIES.name):
        if not spark.catalog.tableExists(table):
            raise ValueError(f"{table} does not exist: run `lakehouse ingest` first, or pass --users N --movies N")
    user_ids = spark.table(tables.RATINGS.name).select("user_id")
    if spark.catalog.tableExists(tables.USERS.name):
        user_ids = user_ids.union(spark.table(tables.USERS.name).select("user_id"))
    users = sorted(r.user_id for r in user_ids.distinct().collect())
    movies = sorted(r.movie_id for r in spark.table(tables.MOVIES.name).select(F.col("movie_id")).distinct().collect())
    if not users or not movies:
        raise ValueError("bronze holds no users or no movies: run `lakehouse ingest` first, or pass --users N --movies N")
    return users, movies


def resolve_source(
    settings: Settings,
    source: str,
    *,
    dataset: str | None = None,
    seed: int = 42,
    users: int | Sequence[int] | None = None,
    movies: int | Sequence[int] | None = None,
    spark=None,
) -> ReplaySource:
    """The named source, ready to replay."""
    if source == "holdout":
        path = holdout_path(settings, dataset)
        return ReplaySource("holdout", read_holdout(path), count_rows(path), f"held-out ratings {path}")
    if source == "synthetic":
        if users is None or movies is None:
            known_users, known_movies = known_ids(settings, spark)
            users = known_users if users is None else users
            movies = known_movies if movies is None else movies
        user_ids = list(range(1, users + 1)) if isinstance(users, int) else list(users)
        movie_ids = list(range(1, movies + 1)) if isinstance(movies, int) else list(movies)
        return ReplaySource(
            "synthetic",
            synthetic_ratings(user_ids, movie_ids, seed),
            None,
            f"synthetic ratings (seed {seed}, {len(user_ids):,} users, {len(movie_ids):,} movies)",
            endless=True,
        )
    raise ValueError(f"unknown replay source {source!r}: expected one of {', '.join(SOURCES)}")


# ---- files -----------------------------------------------------------------------------------


def format_line(rating: Rating, fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps(rating._asdict(), separators=(",", ":")) + "\n"
    return f"{rating.user_id},{rating.movie_id},{float(rating.rating)!r},{rating.timestamp}\n"


def read_ratings_file(path: Path) -> list[Rating]:
    """Parse a landed file back (any of the formats): for tests and checks."""
    ratings = []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            line = line.strip()
            if not line or line == HEADER:
                continue
            if line.startswith("{"):
                record = json.loads(line)
                ratings.append(Rating(record["user_id"], record["movie_id"], record["rating"], record["timestamp"]))
            else:
                user, movie, rating, timestamp = line.split(",")
                ratings.append(Rating(int(user), int(movie), float(rating), int(timestamp)))
    return ratings


def utc_stamp(epoch_ns: int) -> str:
    seconds, micros = divmod(epoch_ns // 1000, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=micros)
    return moment.strftime("%Y%m%dT%H%M%S%fZ")


class LandingWriter:
    """Writes rating files into one landing folder, each appearing whole or not at all."""

    def __init__(self, folder: Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.folder = folder
        self.fmt = fmt
        self.seq = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, ratings: Iterable[Rating], now: bool) -> tuple[Path, int] | None:
        """Land one file; None (and nothing visible) when `ratings` is empty."""
        self.seq += 1
        tmp = self.folder / f".ratings-{os.getpid()}-{self.seq:06d}.tmp"
        try:
            count = 0
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                if self.fmt == "csv-header":
                    out.write(HEADER + "\n")
                stamp = int(time.time()) if now else None
                for rating in ratings:
                    if stamp is not None:
                        rating = rating._replace(timestamp=stamp)
                    out.write(format_line(rating, self.fmt))
                    count += 1
                out.flush()
                os.fsync(out.fileno())
            if count == 0:
                return None
            landed_ns = time.time_ns()
            final = self.folder / f"ratings-{utc_stamp(landed_ns)}-{self.seq:06d}{FORMATS[self.fmt]}"
            os.utime(tmp, ns=(landed_ns, landed_ns))  # mtime = landing time, which the rename keeps
            os.rename(tmp, final)
            fsync_dir(self.folder)
            return final, count
        finally:
            tmp.unlink(missing_ok=True)


# ---- the replay ------------------------------------------------------------------------------


def check_options(
    rate: float, rows_per_file: int, limit: int | None, duration: float | None, burst: bool, fmt: str
) -> None:
    if not rate >= 0:
        raise ValueError(f"--rate {rate}: expected ratings per second, > 0 (0: as fast as possible)")
    if rows_per_file < 1:
        raise ValueError(f"--rows-per-file {rows_per_file}: expected at least 1")
    if limit is not None and limit < 0:
        raise ValueError(f"--limit {limit}: expected a count >= 0")
    if duration is not None and not duration > 0:
        raise ValueError(f"--duration {duration}: expected seconds > 0")
    if burst and duration is not None:
        raise ValueError("--burst lands one file at once: --duration does not apply (use --limit)")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def replay(
    settings: Settings,
    *,
    source: str | ReplaySource | Iterable[Rating] = "holdout",
    dataset: str | None = None,
    rate: float = 100.0,
    rows_per_file: int = 100,
    limit: int | None = None,
    duration: float | None = None,
    fmt: str = "csv",
    burst: bool = False,
    now: bool = True,
    seed: int = 42,
    users: int | Sequence[int] | None = None,
    movies: int | Sequence[int] | None = None,
    landing_dir: Path | None = None,
    on_file: Callable[[Path, int], None] | None = None,
    stop: threading.Event | None = None,
    spark=None,
) -> ReplayReport:
    """Write `source`'s ratings into the stream's inbox (`settings.stream_inbox_dir`) at `rate` a second,
    `rows_per_file` a file, until the source ends, `limit` ratings, `duration` seconds, `stop` is
    set or Ctrl-C (the file being written is then discarded). `burst` lands the whole selection as
    one file at once. `rate` 0 writes as fast as it can. See the module docstring for the rest."""
    check_options(rate, rows_per_file, limit, duration, burst, fmt)
    if isinstance(source, str):
        source = resolve_source(settings, source, dataset=dataset, seed=seed, users=users, movies=movies, spark=spark)
    elif not isinstance(source, ReplaySource):
        total = len(source) if isinstance(source, Sequence) else None
        source = ReplaySource("ratings", source, total, "given ratings")
    if burst and limit is None and source.endless:
        raise ValueError("--burst of an endless source: give --limit")

    landing = landing_dir or settings.stream_inbox_dir
    writer = LandingWriter(landing, fmt)
    report = ReplayReport(source.name, landing, fmt, rate)
    ratings = iter(source.ratings)
    if limit is not None:
        ratings = itertools.islice(ratings, limit)

    def landed(result: tuple[Path, int] | None) -> None:
        if result is None:
            return
        path, count = result
        report.files.append(path)
        report.ratings += count
        report.seconds = time.monotonic() - started
        if on_file:
            on_file(path, count)

    started = time.monotonic()
    try:
        if burst:
            landed(writer.write(ratings, now))
            report.stopped_by = "limit" if limit is not None and report.ratings == limit else "source exhausted"
            return report
        while True:
            batch = list(itertools.islice(ratings, rows_per_file))
            if not batch:
                report.stopped_by = "limit" if limit is not None and report.ratings == limit else "source exhausted"
                break
            due = started + (report.ratings + len(batch)) / rate if rate > 0 else time.monotonic()
            if duration is not None and due - started > duration:
                report.stopped_by = "duration"
                break
            if _wait_until(due, stop):
                report.stopped_by = "stop requested"
                break
            landed(writer.write(batch, now))
    except KeyboardInterrupt:
        report.stopped_by = "interrupted"
    return report


def _wait_until(deadline: float, stop: threading.Event | None) -> bool:
    """Sleep until `deadline` (monotonic); True when `stop` was set first."""
    delay = deadline - time.monotonic()
    if stop is not None:
        return stop.wait(max(delay, 0.0))
    if delay > 0:
        time.sleep(delay)
    return False


# ---- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCES, default="holdout",
                        help="holdout: the ratings `ingest --holdout-fraction` kept out of bronze, in "
                        "time order (default); synthetic: random ratings on known users and movies")
    parser.add_argument("--dataset", help="whose held-out ratings (default: the one dataset that has some)")
    parser.add_argument("--rate", type=float, default=100.0, help="ratings per second (default 100; 0: unpaced)")
    parser.add_argument("--rows-per-file", type=int, default=100, help="ratings per file (default 100)")
    parser.add_argument("--limit", type=int, default=None, help="stop after N ratings (default: the whole source)")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--format", dest="fmt", choices=list(FORMATS), default="csv",
                        help="csv (no header), csv-header, or jsonl (.json files); default csv")
    parser.add_argument("--burst", action="store_true", help="land the whole selection as one file at once")
    parser.add_argument("--now", action=argparse.BooleanOptionalAction, default=True,
                        help="stamp ratings with the time they land (default); --no-now keeps the "
                        "held-out ratings' original times")
    parser.add_argument("--seed", type=int, default=42, help="synthetic: the random seed (default 42)")
    parser.add_argument("--users", type=int, default=None,
                        help="synthetic: user ids 1..N (default: the users in bronze, over Spark Connect)")
    parser.add_argument("--movies", type=int, default=None,
                        help="synthetic: movie ids 1..N (default: bronze.movies, over Spark Connect)")


def replay_with_progress(settings: Settings, args: argparse.Namespace) -> ReplayReport:
    """The replay as the CLI shows it: a progress bar, then a summary."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    check_options(args.rate, args.rows_per_file, args.limit, args.duration, args.burst, args.fmt)
    source = resolve_source(
        settings, args.source, dataset=args.dataset, seed=args.seed, users=args.users, movies=args.movies
    )
    total = source.total
    if args.limit is not None:
        total = args.limit if total is None else min(total, args.limit)
    if args.duration is not None and args.rate > 0 and not args.burst:
        planned = int(args.duration * args.rate)
        total = planned if total is None else min(total, planned)
    console.print(f"replaying {source.description} into {settings.stream_inbox_dir}")
    if total is None:
        console.print("no --limit or --duration: replaying until Ctrl-C")
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
        TextColumn("{task.completed:,} ratings, {task.fields[files]:,} files"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(f"replay ({args.fmt})", total=total, files=0)

        def on_file(path: Path, count: int) -> None:
            bar.update(task, advance=count, files=bar.tasks[task].fields["files"] + 1)

        return replay(
            settings, source=source, rate=args.rate, rows_per_file=args.rows_per_file, limit=args.limit,
            duration=args.duration, fmt=args.fmt, burst=args.burst, now=args.now, on_file=on_file,
        )


def print_replay_report(report: ReplayReport) -> None:
    achieved = report.achieved_rate
    target = f"{report.rate:,.0f}/s" if report.rate > 0 else "unpaced"
    rows = [
        ("source", report.source),
        ("landing folder", str(report.landing_dir)),
        ("format", report.fmt),
        ("files", f"{len(report.files):,}"),
        ("ratings", f"{report.ratings:,}"),
        ("seconds", f"{report.seconds:.1f}"),
        ("rate (achieved / target)", f"{achieved:,.1f}/s / {target}" if achieved else f"- / {target}"),
        ("stopped by", report.stopped_by),
    ]
    if report.files:
        rows.append(("first / last file", f"{report.files[0].name} / {report.files[-1].name}"))
    console.print(key_values("Replay", rows))


def run_from_arguments(settings: Settings, args: argparse.Namespace) -> int:
    report = replay_with_progress(settings, args)
    print_replay_report(report)
    return 0
