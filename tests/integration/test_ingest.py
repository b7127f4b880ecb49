"""Ingest into bronze: conservation per file, quarantine with reasons, idempotence, recovery."""
from __future__ import annotations


import pytest
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.ingest.load import IngestError
from lakehouse import delta
from tests.integration.conftest import copy_dataset, count, ingest


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
