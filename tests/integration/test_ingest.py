"""Ingest into bronze: conservation per file, quarantine with reasons, idempotence, recovery, and
files that change while they are read or have no good row."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse import delta, tables
from lakehouse.datasets import get_dataset
from lakehouse.ingest import load, parsers
from lakehouse.ingest.acquire import locate
from lakehouse.ingest.load import IngestError
from lakehouse.ingest.load import ingest as run_ingest
from tests.integration.conftest import copy_dataset, count, fresh, ingest
from tests.integration.helpers import lakehouse_cli_run


def reasons_by_line(spark, source_file: str) -> dict[int, str]:
    rows = spark.table(tables.QUARANTINE.name).where(F.col("source_file") == source_file).collect()
    return {r.line_number: r.reason for r in rows}


@pytest.fixture(scope="module")
def clean_100k(spark, lakehouse_server, synthetic_100k_layout):
    return ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)


def test_synthetic_100k_layout_loads_every_row(spark, clean_100k, synthetic_100k_layout):
    by_table = {f.target_table: f for f in clean_100k.files}
    assert by_table[tables.RATINGS.name].rows_read == 6000
    assert by_table[tables.RATINGS.name].rows_loaded == 6000
    assert by_table[tables.MOVIES.name].rows_loaded == 400
    assert by_table[tables.USERS.name].rows_loaded == 120
    assert all(f.conserved and f.rows_quarantined == 0 for f in clean_100k.files)
    assert count(spark, tables.RATINGS.name) == 6000
    lineage = spark.table(tables.RATINGS.name).select("source_file", "load_id", "ingested_at").distinct().collect()
    assert len(lineage) == 1
    assert lineage[0].source_file.endswith("u.data") and lineage[0].load_id.endswith("-ratings")


def test_reingesting_the_same_files_adds_nothing(spark, lakehouse_server, clean_100k, synthetic_100k_layout):
    again = ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout)
    assert all(f.skipped_reason.startswith("unchanged since load") for f in again.files)
    assert count(spark, tables.RATINGS.name) == 6000
    assert count(spark, tables.MOVIES.name) == 400
    assert count(spark, tables.INGEST_LOG.name) == 3


def test_malformed_lines_are_quarantined_with_reasons(spark, lakehouse_server, clean_100k, synthetic_100k_layout, tmp_path):
    folder = copy_dataset(synthetic_100k_layout, tmp_path / "ml-100k")
    u_data = folder / "u.data"
    good = u_data.read_bytes().splitlines()
    first_user, first_movie, _, first_ts = good[0].split(b"\t")
    bad_lines = [
        b"this is not a rating line",                       # unparseable
        b"1\t2\t3",                                          # missing field
        b"1\t2\t3\t880000000\t9",                            # extra field
        b"1\t1\t6\t880000000",                               # off the 1-5 scale
        b"1\t1\t3.5\t880000000",                             # half star on a whole-star dataset
        b"abc\t1\t3\t880000000",                             # not an integer
        b"1\t99999\t3\t880000000",                           # unknown movie
        b"1\t1\t3\t0",                                       # absurd timestamp (1970)
        b"1\t1\t3\t4102444800",                              # in the future (2100)
        b"\t".join([first_user, first_movie, b"1", str(int(first_ts) - 10).encode()]),  # duplicate pair, older
        b"",                                                 # blank: not a row
    ]
    u_data.write_bytes(b"\n".join(good + bad_lines) + b"\n")
    report = ingest(spark, lakehouse_server, "ml-100k", folder)
    ratings = next(f for f in report.files if f.target_table == tables.RATINGS.name)
    assert ratings.rows_read == 6000 + 10
    assert ratings.rows_loaded == 6000
    assert ratings.rows_quarantined == 10
    assert ratings.conserved
    reasons = reasons_by_line(spark, ratings.source_file)
    n = len(good)
    expected = {
        n + 1: "expected 4 fields, got 1",
        n + 2: "expected 4 fields, got 3",
        n + 3: "expected 4 fields, got 5",
        n + 4: "off the 1-5 scale",
        n + 5: "off the 1-5 scale",
        n + 6: "is not an integer",
        n + 7: "movie_id 99999 is not in the movies file",
        n + 8: "before 1995-01-01",
        n + 9: "is in the future",
        n + 10: "duplicate (user_id, movie_id) in this load: line 1 was kept",
    }
    for line, fragment in expected.items():
        assert fragment in reasons[line], (line, reasons[line])
    raw = {r.line_number: r.raw_line for r in spark.table(tables.QUARANTINE.name).collect()}
    assert raw[n + 1] == "this is not a rating line"
    # movies and users did not change: skipped, not loaded twice
    assert count(spark, tables.MOVIES.name) == 400


def test_bad_encoding_and_half_stars_in_csv_layout(spark, lakehouse_server, synthetic_latest_layout, tmp_path):
    folder = copy_dataset(synthetic_latest_layout, tmp_path / "ml-latest-small")
    ratings_csv = folder / "ratings.csv"
    text = ratings_csv.read_bytes().replace(b"\n", b"\r\n")  # CRLF must parse too
    ratings_csv.write_bytes(text + b"1,1,4.5,1500000000\r\n" + b"2,1,3.\xff,1500000000\r\n")
    report = ingest(spark, lakehouse_server, "ml-latest-small", folder, replace=True)
    ratings = next(f for f in report.files if f.target_table == tables.RATINGS.name)
    assert ratings.conserved
    assert ratings.rows_read == 5002
    reasons = list(reasons_by_line(spark, ratings.source_file).values())
    assert any("invalid utf-8" in r.lower() for r in reasons), reasons
    assert count(spark, tables.USERS.name) == 0  # the dataset has no users file


def test_a_load_that_died_is_dropped_on_the_next_run(spark, lakehouse_server, synthetic_100k_layout):
    ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
    crashed = spark.table(tables.RATINGS.name).limit(5).withColumn("load_id", F.lit("20000101T000000Z-crashed"))
    delta.append(crashed, tables.RATINGS.name)
    assert count(spark, tables.RATINGS.name) == 6005
    report = ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout)
    assert report.recovered_loads == [f"{tables.RATINGS.name}:20000101T000000Z-crashed"]
    assert count(spark, tables.RATINGS.name) == 6000


def test_another_dataset_needs_replace(spark, lakehouse_server, synthetic_100k_layout, synthetic_latest_layout):
    ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
    with pytest.raises(IngestError, match="--replace"):
        ingest(spark, lakehouse_server, "ml-latest-small", synthetic_latest_layout)
    assert count(spark, tables.RATINGS.name) == 6000


# --- files that change while ingest reads them, and files with no good row -------------------------


def new_ratings(u_data: Path, count: int) -> bytes:
    """`count` valid u.data lines for (user, movie) pairs the file does not have yet."""
    lines = u_data.read_bytes().splitlines()
    users = sorted({int(line.split(b"\t")[0]) for line in lines})
    movies = sorted({int(line.split(b"\t")[1]) for line in lines})
    taken = {tuple(map(int, line.split(b"\t")[:2])) for line in lines}
    fresh = [(u, m) for u in users for m in movies if (u, m) not in taken][:count]
    return b"".join(b"%d\t%d\t4\t881250949\n" % pair for pair in fresh)


def ledger_sha256(spark, load_id: str) -> str:
    return fresh(spark, tables.INGEST_LOG.name).where(F.col("load_id") == load_id).collect()[0].file_sha256


def ratings_of(report):
    return next(f for f in report.files if f.target_table == tables.RATINGS.name)


def ingest_watching_ratings(spark, source: Path, on_rows, at_start=None, replace: bool = False):
    """ingest(), calling `at_start()` when the ratings load starts (after every file's checksum was
    taken, before u.data is opened) and `on_rows(rows)` as it reports progress: after every
    CHUNK_ROWS rows parsed, and once the file has been read, before its load is committed."""
    def on_file(name: str):
        if not name.endswith("u.data"):
            return None
        if at_start:
            at_start()
        return on_rows

    files = locate(get_dataset("ml-100k"), source, source.parent / "cache")
    return run_ingest(spark, files, replace=replace, on_file=on_file)


class Appender:
    """Appends `extra` to a file, the first time it is called."""

    def __init__(self, path: Path, extra: bytes) -> None:
        self.path, self.extra, self.calls = path, extra, []

    def __call__(self, rows: int | None = None) -> None:
        if not self.calls:
            with open(self.path, "ab") as out:
                out.write(self.extra)
        self.calls.append(rows)


def test_a_file_that_grows_after_it_was_read_is_loaded_again(spark, lakehouse_server, synthetic_100k_layout, tmp_path):
    folder = copy_dataset(synthetic_100k_layout, tmp_path / "ml-100k")
    u_data = folder / "u.data"
    original = u_data.read_bytes()
    grow = Appender(u_data, new_ratings(u_data, 50))

    report = ingest_watching_ratings(spark, folder, on_rows=grow, replace=True)
    first = ratings_of(report)
    assert grow.calls == [6000]  # once, when the file had been read and the load was not committed
    assert (first.rows_read, first.rows_loaded, first.rows_quarantined) == (6000, 6000, 0)
    load_id = fresh(spark, tables.RATINGS.name).select("load_id").first().load_id
    # the ledger describes the bytes loaded, not the file as it was at the commit
    assert ledger_sha256(spark, load_id) == hashlib.sha256(original).hexdigest()

    again = ingest(spark, lakehouse_server, "ml-100k", folder)
    second = ratings_of(again)
    assert not second.skipped_reason, "the grown file was called unchanged"
    assert (second.rows_read, second.rows_loaded, second.rows_quarantined) == (6050, 6050, 0)
    second_load = next(r.load_id for r in fresh(spark, tables.INGEST_LOG.name).collect()
                       if r.target_table == tables.RATINGS.name and r.load_id != load_id)
    assert ledger_sha256(spark, second_load) == hashlib.sha256(u_data.read_bytes()).hexdigest()


@pytest.mark.parametrize("when", ["between its checksum and its read", "while it was read"])
def test_a_file_that_grows_while_it_is_loaded_is_refused_then_loaded_whole(
    spark, lakehouse_server, synthetic_100k_layout, tmp_path, monkeypatch, when
):
    folder = copy_dataset(synthetic_100k_layout, tmp_path / "ml-100k")
    u_data = folder / "u.data"
    grow = Appender(u_data, new_ratings(u_data, 50))
    if when == "while it was read":  # small reads and chunks: progress comes while most of it is unread
        monkeypatch.setattr(parsers, "_READ_CHUNK", 4096)
        monkeypatch.setattr(load, "CHUNK_ROWS", 1000)
        hooks = {"on_rows": grow}
    else:
        hooks = {"on_rows": None, "at_start": grow}

    with pytest.raises(IngestError, match=f"u.data changed {when}.*Nothing of it is committed"):
        ingest_watching_ratings(spark, folder, replace=True, **hooks)
    assert grow.calls[0] == (1000 if when == "while it was read" else None)  # when it grew
    committed_tables = {r.target_table for r in fresh(spark, tables.INGEST_LOG.name).collect()}
    assert committed_tables == {tables.MOVIES.name, tables.USERS.name}  # nothing of the ratings

    monkeypatch.undo()
    again = ingest(spark, lakehouse_server, "ml-100k", folder)  # the file holds still now
    ratings = ratings_of(again)
    assert (ratings.rows_read, ratings.rows_loaded, ratings.rows_quarantined) == (6050, 6050, 0)
    assert count(spark, tables.RATINGS.name) == 6050
    load_id = next(r.load_id for r in fresh(spark, tables.INGEST_LOG.name).collect()
                   if r.target_table == tables.RATINGS.name)
    assert ledger_sha256(spark, load_id) == hashlib.sha256(u_data.read_bytes()).hexdigest()


def test_a_file_with_every_row_quarantined_fails_the_ingest(spark, lakehouse_server, synthetic_100k_layout, tmp_path):
    folder = copy_dataset(synthetic_100k_layout, tmp_path / "ml-100k")
    u_data = folder / "u.data"
    # every timestamp in milliseconds: each row is rejected, and nothing is lost
    lines = [line.split(b"\t") for line in u_data.read_bytes().splitlines()]
    u_data.write_bytes(b"".join(b"\t".join([*fields[:3], fields[3] + b"000"]) + b"\n" for fields in lines))

    run = lakehouse_cli_run(lakehouse_server, "ingest", "--dataset", "ml-100k", "--source", str(folder), "--replace")
    assert run.returncode == 1, run.stdout + run.stderr
    said = " ".join(run.stdout.split())  # as one line: the console wraps long ones
    assert "warning: ml-100k/u.data: all 6,000 rows were quarantined, none loaded into bronze.ratings" in said, said
    assert count(spark, tables.RATINGS.name) == 0
    reasons = fresh(spark, tables.QUARANTINE.name).where(F.col("target_table") == tables.RATINGS.name)
    assert reasons.count() == 6000
    assert reasons.where(F.col("reason").contains("looks like milliseconds")).count() == 6000
    assert count(spark, tables.MOVIES.name) == 400  # the other files loaded as usual

    again = lakehouse_cli_run(lakehouse_server, "ingest", "--dataset", "ml-100k", "--source", str(folder))
    assert again.returncode == 1, again.stdout + again.stderr  # unchanged, and still nothing loaded from it
    said = " ".join(again.stdout.split())
    assert "warning: ml-100k/u.data is unchanged since load" in said, said
    assert "which quarantined all of its 6,000 rows" in said, said
