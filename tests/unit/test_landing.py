"""The landing gate and `lakehouse land`, on real files: what is taken into the stream's inbox,
when, under which name and mtime, and what is refused."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from lakehouse.settings import Settings
from lakehouse.stream import landing
from lakehouse.stream.landing import MAX_LINE_BYTES, Gate, LandingError

GOOD = b"1,1,5,1600000000\n2,2,4,1600000000\n"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", stream_dir=tmp_path / "landing", stream_settle_seconds=0.3)


def gate(settings: Settings, log: list[str] | None = None) -> Gate:
    return Gate(settings, "test-stream", settings.stream_settle_seconds, (log if log is not None else []).append)


def inbox(settings: Settings) -> dict[str, bytes]:
    folder = settings.stream_inbox_dir
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")} if folder.exists() else {}


def scan_until(g: Gate, settings: Settings, done, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        g.scan(None)
        if done():
            return
        time.sleep(0.05)
    raise AssertionError("the gate never got there")


def test_a_file_written_in_place_in_chunks_is_taken_only_once_whole(settings):
    settings.stream_dir.mkdir(parents=True)
    g = gate(settings)
    chunks = [b"%d,1,5,1600000000\n" % i for i in range(1, 2001)]
    path = settings.stream_dir / "copied.csv"
    with open(path, "wb") as out:  # as `cp` does: one open file, written in pieces, 3 s in all
        for part in range(3):
            out.write(b"".join(chunks[part * 667:(part + 1) * 667]))
            out.flush()
            until = time.monotonic() + 1.0
            while time.monotonic() < until:  # the gate looks all along; the file is open for writing
                g.scan(None)
                assert inbox(settings) == {}, "taken while still being written"
                time.sleep(0.05)
    scan_until(g, settings, lambda: inbox(settings))
    assert inbox(settings) == {"copied.csv": b"".join(chunks)}
    assert not path.exists()


def test_a_closed_file_still_changing_waits_for_the_settle_time(settings):
    settings.stream_dir.mkdir(parents=True)
    g = gate(settings)
    path = settings.stream_dir / "halves.csv"
    path.write_bytes(GOOD)
    g.scan(None)
    time.sleep(0.1)
    with open(path, "ab") as out:  # a second writer, appending by name: the file changed
        out.write(b"3,3,3,1600000000\n")
    g.scan(None)
    assert inbox(settings) == {}
    scan_until(g, settings, lambda: inbox(settings))
    assert inbox(settings)["halves.csv"].count(b"\n") == 3


def test_dot_names_and_partial_downloads_are_left_alone(settings):
    settings.stream_dir.mkdir(parents=True)
    for name in (".rsync-tmp.csv", "ratings.csv.part", "ratings.csv.tmp", "ratings.csv~"):
        (settings.stream_dir / name).write_bytes(GOOD)
    (settings.stream_dir / "sub").mkdir()
    log: list[str] = []
    g = gate(settings, log)
    for _ in range(3):
        g.scan(None)
        time.sleep(settings.stream_settle_seconds)
    assert inbox(settings) == {}
    assert len(os.listdir(settings.stream_dir)) == 5
    assert sum("sub is not a regular file" in line for line in log) == 1  # said once, not every look


def test_an_old_mtime_becomes_the_time_the_stream_took_the_file(settings):
    settings.stream_dir.mkdir(parents=True)
    path = settings.stream_dir / "kept-mtime.csv"
    path.write_bytes(GOOD)
    month_ago = time.time() - 30 * 86400
    os.utime(path, (month_ago, month_ago))  # as `cp -p`, `rsync -a` or unzip leave it
    g = gate(settings)
    before = time.time()
    scan_until(g, settings, lambda: inbox(settings))
    taken = settings.stream_inbox_dir / "kept-mtime.csv"
    assert before - 1 <= taken.stat().st_mtime <= time.time() + 1


def test_a_reused_name_is_read_again_under_a_new_name(settings):
    settings.stream_dir.mkdir(parents=True)
    g = gate(settings)
    for round_, data in enumerate((GOOD, b"9,9,1,1600000000\n", GOOD)):
        (settings.stream_dir / "ratings.csv").write_bytes(data)
        scan_until(g, settings, lambda: len(inbox(settings)) == round_ + 1)
    assert list(inbox(settings)) == ["ratings.csv", "ratings~2.csv", "ratings~3.csv"]
    # The inbox empties as the stream archives what it read; the names record remembers.
    for path in settings.stream_inbox_dir.iterdir():
        path.unlink()
    (settings.stream_dir / "ratings.csv").write_bytes(GOOD)
    scan_until(g, settings, lambda: inbox(settings))
    assert list(inbox(settings)) == ["ratings~4.csv"]


def test_unsafe_characters_are_replaced_in_the_name(settings):
    settings.stream_dir.mkdir(parents=True)
    (settings.stream_dir / "my ratings: día 1.csv").write_bytes(GOOD)
    g = gate(settings)
    scan_until(g, settings, lambda: inbox(settings))
    assert list(inbox(settings)) == ["my_ratings_d_a_1.csv"]


@pytest.mark.parametrize("data, reason", [
    (b"1,1,5,1600000000\n\0\0\0binary", "holds NUL bytes (line 2)"),
    (b"1,1,5,1600000000\n" + b"9" * (MAX_LINE_BYTES + 1) + b"\n", "has a line over 1,048,576 bytes"),
    (b"x" * (3 * MAX_LINE_BYTES), "has a line over"),  # one line, no terminator at all
    (b"1,1,5,1\r" + b"2" * (MAX_LINE_BYTES + 5) + b"\r", "has a line over"),  # CR-only endings count as lines
])
def test_a_file_that_is_not_readable_text_is_a_problem(tmp_path, data, reason):
    path = tmp_path / "poison.csv"
    path.write_bytes(data)
    assert reason in landing.problem(path)


def test_readable_text_is_no_problem_whatever_its_line_endings(tmp_path):
    for name, data in {"lf": GOOD, "crlf": GOOD.replace(b"\n", b"\r\n"), "cr": GOOD.replace(b"\n", b"\r"),
                       "empty": b"", "long-but-fine": (b"1,1,5,1600000000\n" * 200_000)}.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert landing.problem(path) is None, name


def test_a_poison_file_waits_in_the_landing_folder_until_its_quarantine_row_can_be_written(settings):
    settings.stream_dir.mkdir(parents=True)
    (settings.stream_dir / "binary.csv").write_bytes(b"\0" * 100)
    g = gate(settings)
    for _ in range(4):
        g.scan(None)  # no Spark session: the reason cannot be recorded yet
        time.sleep(settings.stream_settle_seconds)
    assert (settings.stream_dir / "binary.csv").exists() and inbox(settings) == {}


def test_being_written_sees_an_open_writer(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(GOOD)
    assert not landing.being_written(path)
    with open(path, "ab"):
        assert landing.being_written(path)
    assert not landing.being_written(path)


def test_land_copies_whole_files_with_unique_names_and_refuses_bad_ones(settings, tmp_path):
    good = tmp_path / "ratings.csv"
    good.write_bytes(GOOD)
    first = landing.land(settings, [good])
    second = landing.land(settings, [good])
    assert [p.name for _, p in first + second] == ["ratings.csv", "ratings~2.csv"]
    assert good.exists()  # a copy: the user's file stays
    assert time.time() - second[0][1].stat().st_mtime < 5
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\0")
    with pytest.raises(LandingError, match="bad.csv: holds NUL bytes.*nothing was|nothing was[^$]*bad.csv: holds NUL"):
        landing.land(settings, [good, bad, tmp_path / "missing.csv"])
    assert len(inbox(settings)) == 2  # all or nothing


def test_two_landers_never_get_the_same_name(settings, tmp_path):
    good = tmp_path / "ratings.csv"
    good.write_bytes(GOOD)
    names: list[str] = []

    def lander():
        for _ in range(20):
            names.extend(p.name for _, p in landing.land(settings, [good]))

    threads = [threading.Thread(target=lander) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 60 and len(set(names)) == 60 and len(inbox(settings)) == 60


def test_the_sink_dead_letters_a_file_deleted_or_unreadable_after_listing(settings, tmp_path):
    from lakehouse.datasets import get_dataset
    from lakehouse.stream.sink import BatchSink

    folder = tmp_path / "inbox"
    folder.mkdir()
    kept, gone, locked = (folder / n for n in ("kept.csv", "gone.csv", "locked.csv"))
    for path in (kept, gone, locked):
        path.write_bytes(GOOD)
    gone.unlink()
    locked.chmod(0)

    checkpoint = tmp_path / "checkpoint"  # the file source's log of what batch 3 was given
    (checkpoint / "sources" / "0").mkdir(parents=True)
    entries = [f'{{"path":"{p.as_uri()}","timestamp":1,"batchId":3}}' for p in (kept, gone, locked)]
    (checkpoint / "sources" / "0" / "3").write_text("v1\n" + "\n".join(entries) + "\n")
    dead_letter = tmp_path / "dead-letter"
    sink = BatchSink("s", get_dataset("ml-100k").scale, str(tmp_path / "stream.log"), None, str(dead_letter),
                     None, str(checkpoint))
    if os.access(locked, os.R_OK):  # root reads anything: only the deleted file is a problem then
        expected_dead = ["gone.csv"]
    else:
        expected_dead = ["gone.csv", "locked.csv"]
    readable, dead = sink.readable_files(3, "load-1")
    assert [Path(u).name for u in readable] == sorted({"kept.csv", "locked.csv"} - set(expected_dead))
    assert sorted(row[0] for row in dead) == expected_dead
    assert all(row[1] == 0 and row[3].startswith("dead-lettered: the file") and row[6] == "load-1" for row in dead)
    assert "deleted after the stream listed it" in next(r[3] for r in dead if r[0] == "gone.csv")
    if "locked.csv" in expected_dead:
        assert [p.name.endswith("locked.csv") for p in dead_letter.iterdir()] == [True]


def test_the_files_of_a_batch_come_from_the_source_log_even_once_compacted(tmp_path):
    from lakehouse.stream.sink import batch_files

    log = tmp_path / "sources" / "0"
    log.mkdir(parents=True)
    (log / "8").write_text('v1\n{"path":"file:///in/a.csv","timestamp":1,"batchId":8}\n')
    (log / "9.compact").write_text("v1\n" + "\n".join(
        f'{{"path":"file:///in/{n}.csv","timestamp":1,"batchId":{b}}}' for n, b in (("a", 8), ("b", 9), ("c", 9))))
    assert batch_files(tmp_path, 8) == ["file:///in/a.csv"]
    assert batch_files(tmp_path, 9) == ["file:///in/b.csv", "file:///in/c.csv"]
    with pytest.raises(RuntimeError, match="batch 10 is not in the file source's log"):
        batch_files(tmp_path, 10)


def test_the_owner_of_a_query_is_gone_once_killed_even_before_it_is_reaped():
    import signal
    import subprocess

    import psutil

    from lakehouse.stream.sink import Owner

    child = subprocess.Popen(["sleep", "60"])
    owner = Owner(os.uname().nodename, child.pid, psutil.Process(child.pid).create_time())
    assert not owner.gone()
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert owner.gone()  # a zombie: dead, its parent has not waited for it yet
    child.wait()
    assert owner.gone()
    assert not Owner("another-host", child.pid, 0.0).gone()  # nothing to check a remote client by
    me = Owner.this_process()
    assert not me.gone() and me._replace(started=me.started - 1).gone()  # a reused pid is another process
