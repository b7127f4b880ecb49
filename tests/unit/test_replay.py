"""The stream simulator without Spark: atomic landing, names, formats, pacing, sources."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from lakehouse.cli import main
from lakehouse.settings import Settings
from lakehouse.stream.replay import (
    HEADER,
    LandingWriter,
    Rating,
    read_ratings_file,
    replay,
    synthetic_ratings,
)

NAME = re.compile(r"ratings-(\d{8}T\d{6})(\d{6})Z-(\d{6})\.(csv|json)")


def sample(n: int, start: int = 1_000_000_000) -> list[Rating]:
    return [Rating(1 + i % 7, 10 + i % 13, 0.5 + (i % 10) / 2, start + i) for i in range(n)]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", stream_dir=tmp_path / "landing")


def visible(folder: Path) -> list[Path]:
    """What Spark's file source lists: names not starting with '.' or '_'."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))


@pytest.mark.parametrize("fmt", ["csv", "csv-header", "jsonl"])
def test_each_format_parses_back(settings, fmt):
    ratings = sample(25)
    report = replay(settings, source=ratings, rate=0, rows_per_file=10, fmt=fmt, now=False)
    assert [len(read_ratings_file(p)) for p in report.files] == [10, 10, 5]
    assert [r for p in report.files for r in read_ratings_file(p)] == ratings
    first = report.files[0].read_text().splitlines()
    if fmt == "csv":
        assert first[0] == "1,10,0.5,1000000000" and len(first) == 10
    elif fmt == "csv-header":
        assert first[0] == HEADER == "user_id,movie_id,rating,timestamp" and len(first) == 11
    else:
        assert json.loads(first[0]) == {"user_id": 1, "movie_id": 10, "rating": 0.5, "timestamp": 1_000_000_000}
        assert list(json.loads(first[0])) == ["user_id", "movie_id", "rating", "timestamp"]
    assert {p.suffix for p in report.files} == {".json" if fmt == "jsonl" else ".csv"}


def test_names_sequence_and_mtime_is_the_landing_time(settings):
    report = replay(settings, source=sample(30), rate=0, rows_per_file=10, now=False)
    assert visible(settings.stream_inbox_dir) == report.files  # names sort in landing order
    for seq, path in enumerate(report.files, 1):
        match = NAME.fullmatch(path.name)
        assert match, path.name
        assert int(match.group(3)) == seq
        stamped_us = time.mktime(time.strptime(match.group(1), "%Y%m%dT%H%M%S")) - time.timezone
        stamped_ns = int(stamped_us) * 1_000_000_000 + int(match.group(2)) * 1000
        assert abs(path.stat().st_mtime_ns - stamped_ns) < 1_000_000  # the name's stamp is the mtime
    assert not [p for p in settings.stream_inbox_dir.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_file_is_invisible_until_complete(tmp_path):
    writer = LandingWriter(tmp_path, "csv")
    seen_while_writing = []

    def ratings():
        for i, rating in enumerate(sample(1000)):
            if i == 500:
                seen_while_writing.append((visible(tmp_path), sorted(p.name for p in tmp_path.iterdir())))
            yield rating

    path, count = writer.write(ratings(), now=False)
    (listed, everything), = seen_while_writing
    assert listed == []  # half-written: nothing Spark would list
    assert len(everything) == 1 and everything[0].startswith(".")
    assert count == 1000 and visible(tmp_path) == [path]


def test_a_failed_write_leaves_nothing(tmp_path):
    writer = LandingWriter(tmp_path, "jsonl")

    def broken():
        yield from sample(10)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        writer.write(broken(), now=False)
    assert list(tmp_path.iterdir()) == []
    assert writer.write([], now=False) is None and list(tmp_path.iterdir()) == []


def test_a_reader_polling_the_folder_only_ever_sees_whole_files(settings):
    settings.stream_inbox_dir.mkdir(parents=True)
    done = threading.Event()
    sizes: dict[str, int] = {}

    def watch():
        while not done.is_set():
            for path in visible(settings.stream_inbox_dir):
                if path.name not in sizes:
                    sizes[path.name] = len(read_ratings_file(path))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = replay(settings, source=sample(4000), rate=20_000, rows_per_file=200, fmt="csv-header")
    finally:
        done.set()
        watcher.join()
    assert len(report.files) == 20
    assert sizes and set(sizes.values()) == {200}


def test_rate_is_honoured_without_drift(settings):
    landed: list[float] = []
    started = time.monotonic()
    report = replay(
        settings, source=sample(200), rate=200, rows_per_file=20,
        on_file=lambda path, count: landed.append(time.monotonic() - started),
    )
    assert report.ratings == 200 and len(report.files) == 10 and report.stopped_by == "source exhausted"
    # File n is due at n * 20 / 200 s: never early, and late by no more than scheduling noise.
    for n, at in enumerate(landed, 1):
        assert at >= n * 0.1 - 0.005, (n, at)
    assert 0.95 <= report.seconds <= 1.6
    assert 125 <= report.achieved_rate <= 210


def test_duration_and_limit_stop_the_replay(settings):
    by_duration = replay(settings, source=sample(10_000), rate=100, rows_per_file=10, duration=0.55)
    assert by_duration.stopped_by == "duration" and by_duration.ratings == 50
    by_limit = replay(settings, source=sample(10_000), rate=0, rows_per_file=10, limit=35)
    assert by_limit.stopped_by == "limit" and by_limit.ratings == 35 and len(by_limit.files) == 4


def test_a_stop_event_ends_the_replay_promptly(settings):
    stop = threading.Event()
    stopped_at: list[float] = []

    def request_stop() -> None:
        stopped_at.append(time.monotonic())
        stop.set()

    threading.Timer(0.3, request_stop).start()
    started = time.monotonic()
    report = replay(settings, source=sample(10_000), rate=10, rows_per_file=1, stop=stop)
    ended = time.monotonic()
    assert report.stopped_by == "stop requested"
    # Within one file's interval (0.1 s at 10/s) of the request, however late a loaded machine
    # ran the timer; at 10 ratings a second, the count follows from the time it ran.
    assert ended - stopped_at[0] < 0.5
    assert 1 <= report.ratings <= round((ended - started) * 10) + 1


def test_burst_lands_the_whole_selection_as_one_file(settings):
    report = replay(settings, source=sample(5000), burst=True, rate=1, rows_per_file=10, now=False)
    assert len(report.files) == 1 and report.ratings == 5000
    assert read_ratings_file(report.files[0]) == sample(5000)
    limited = replay(settings, source="synthetic", users=5, movies=9, burst=True, limit=300)
    assert len(limited.files) == 1 and limited.ratings == 300
    with pytest.raises(ValueError, match="--limit"):
        replay(settings, source="synthetic", users=5, movies=9, burst=True)


def test_now_rewrites_timestamps_and_no_now_keeps_them(settings):
    before = int(time.time())
    live = replay(settings, source=sample(20), rate=0, rows_per_file=20)
    stamps = {r.timestamp for r in read_ratings_file(live.files[0])}
    assert len(stamps) == 1 and before <= stamps.pop() <= int(time.time())
    kept = replay(settings, source=sample(20), rate=0, rows_per_file=20, now=False)
    assert [r.timestamp for r in read_ratings_file(kept.files[0])] == [r.timestamp for r in sample(20)]


def test_holdout_source_replays_the_file_in_order(settings):
    folder = settings.holdout_dir / "ml-100k"
    folder.mkdir(parents=True)
    held = sample(42)
    (folder / "ratings.csv").write_text(HEADER + "\n" + "".join(f"{r.user_id},{r.movie_id},{r.rating},{r.timestamp}\n" for r in held))
    report = replay(settings, rate=0, rows_per_file=10, now=False)  # holdout is the default source
    assert report.source == "holdout" and report.ratings == 42 and len(report.files) == 5
    assert [r for p in report.files for r in read_ratings_file(p)] == held
    again = replay(settings, dataset="ml-100k", rate=0, limit=5, rows_per_file=10, now=False)
    assert read_ratings_file(again.files[0]) == held[:5]


def test_a_missing_or_ambiguous_holdout_says_what_to_do(settings):
    with pytest.raises(FileNotFoundError, match="--holdout-fraction"):
        replay(settings)
    with pytest.raises(FileNotFoundError, match="--dataset ml-1m --holdout-fraction"):
        replay(settings, dataset="ml-1m")
    for name in ("ml-100k", "ml-1m"):
        (settings.holdout_dir / name).mkdir(parents=True)
        (settings.holdout_dir / name / "ratings.csv").write_text(HEADER + "\n")
    with pytest.raises(ValueError, match="--dataset"):
        replay(settings)
    empty = replay(settings, dataset="ml-1m")
    assert empty.ratings == 0 and empty.files == [] and empty.stopped_by == "source exhausted"


def test_synthetic_ratings_are_seeded_and_on_known_ids():
    def take(seed):
        source = synthetic_ratings(list(range(1, 21)), list(range(100, 150)), seed)
        return [(r.user_id, r.movie_id, r.rating) for _, r in zip(range(2000), source)]

    first = take(7)
    assert first == take(7) and first != take(8)
    assert {u for u, _, _ in first} <= set(range(1, 21))
    assert {m for _, m, _ in first} <= set(range(100, 150))
    assert {r for _, _, r in first} == {1.0, 2.0, 3.0, 4.0, 5.0}
    by_movie = [sum(1 for _, m, _ in first if m == movie) for movie in (100, 149)]
    assert by_movie[0] > by_movie[1]  # long-tailed popularity


def test_bad_options_are_refused(settings):
    for options, message in [
        ({"rate": -1}, "--rate"),
        ({"rows_per_file": 0}, "--rows-per-file"),
        ({"limit": -2}, "--limit"),
        ({"duration": 0}, "--duration"),
        ({"burst": True, "duration": 5}, "--burst"),
        ({"fmt": "xml"}, "format"),
    ]:
        with pytest.raises(ValueError, match=message):
            replay(settings, source=sample(3), **options)


def test_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAKEHOUSE_STREAM_DIR", str(tmp_path / "landing"))
    argv = ["replay", "--source", "synthetic", "--users", "5", "--movies", "8", "--rate", "0",
            "--limit", "30", "--rows-per-file", "10", "--format", "jsonl"]
    assert main(argv) == 0
    from lakehouse.settings import load_settings

    files = visible(load_settings().stream_inbox_dir)  # the stream's inbox, not the landing folder
    assert len(files) == 3 and all(p.suffix == ".json" for p in files)
    out = capsys.readouterr().out
    assert "Replay" in out and "30" in out
    assert main(["replay"]) == 2
    assert "--holdout-fraction" in capsys.readouterr().out
    assert os.environ["LAKEHOUSE_STREAM_DIR"].endswith("landing")
