"""`lakehouse quarantine` on the real server: counts per file and kind of reason, committed loads
only, the filters, the samples, and the CLI's table. The rows are written into the session's
bronze.quarantine (with ledger rows in bronze.ingest_log) under file names and load ids of this
module's own, and deleted afterwards."""
from __future__ import annotations

from datetime import datetime

import pytest

from lakehouse import delta, tables
from tests.integration.helpers import lakehouse_cli

pytestmark = pytest.mark.integration

PREFIX = "qrt-"
NOW = datetime(2030, 1, 2, 3, 4, 5)
OLD = datetime(2020, 6, 1, 12, 0, 0)
# (load id, committed?, quarantined at, [(file, line, reason, raw line)])
LOADS = [
    (f"{PREFIX}load-1", True, NOW, [
        (f"{PREFIX}ratings.csv", 2, "expected 4 fields, got 3", "1,2,3"),
        (f"{PREFIX}ratings.csv", 5, "expected 4 fields, got 3", "4,5,[red]x[/]"),
        (f"{PREFIX}ratings.csv", 9, "expected 4 fields, got 5", "1,2,3,4,5"),
        (f"{PREFIX}ratings.csv", 7, "rating 7.0 is off the scale 0.5-5", "1,2,7.0,1600000000"),
    ]),
    (f"{PREFIX}load-2", True, OLD, [
        (f"{PREFIX}u.data", 10, "unknown movie_id 99999", "1\t99999\t4\t880000000"),
        (f"{PREFIX}u.data", 11, "unknown movie_id 88888", "2\t88888\t3\t880000000"),
    ]),
    (f"{PREFIX}load-3", True, NOW, [
        (f"{PREFIX}ratings.csv", 1, "expected 4 fields, got 2", "1,2"),
    ]),
    (f"{PREFIX}load-4", False, NOW, [  # no ledger row: a load still running, or dead
        (f"{PREFIX}pending.csv", 1, "expected 4 fields, got 3", "9,9,9"),
        (f"{PREFIX}pending.csv", 2, "expected 4 fields, got 3", "9,9,9"),
    ]),
]


@pytest.fixture(scope="module")
def quarantined(spark, lakehouse_server):
    for table in (tables.QUARANTINE, tables.INGEST_LOG):
        delta.create_if_missing(spark, table)
    rows, ledger = [], []
    for load_id, committed, at, lines in LOADS:
        for source_file, line, reason, raw in lines:
            rows.append((source_file, line, raw, reason, tables.RATINGS.name, at, load_id))
        if committed:
            files = {f for f, *_ in lines}
            for source_file in files:
                count = sum(1 for f, *_ in lines if f == source_file)
                ledger.append(("test", source_file, f"sha-{load_id}-{source_file}", tables.RATINGS.name, count, 0, count,
                               at, at, 0, 0.0, load_id))
    delta.append(spark.createDataFrame(rows, tables.QUARANTINE.schema), tables.QUARANTINE)
    delta.append(spark.createDataFrame(ledger, tables.INGEST_LOG.schema), tables.INGEST_LOG)
    yield spark
    for table in (tables.QUARANTINE, tables.INGEST_LOG):
        delta.delete(spark, table, f"load_id like '{PREFIX}%'")


def test_counts_per_file_and_reason_of_committed_loads(quarantined):
    from lakehouse.quarantine_report import quarantine_report

    report = quarantine_report(quarantined, source_file=f"{PREFIX}*", samples=2)
    counts = {(g.source_file, g.reason): g.rows for g in report.groups}
    assert counts == {
        (f"{PREFIX}ratings.csv", "expected N fields, got N"): 4,  # got 3, got 5 (load 1) and got 2 (load 3)
        (f"{PREFIX}ratings.csv", "rating N.N is off the scale N.N-N"): 1,
        (f"{PREFIX}u.data", "unknown movie_id N"): 2,
    }
    assert report.total_rows == 7 and report.files == 2 and report.total_groups == 3
    assert report.uncommitted_rows == 2  # load 4 has no ledger row: left out, and said so
    fields = next(g for g in report.groups if g.reason == "expected N fields, got N")
    assert report.groups[0] is fields  # the largest first
    assert (fields.first_line, fields.last_line, fields.loads) == (1, 9, 2)
    assert [(s.line_number, s.reason) for s in fields.samples] == [(1, "expected 4 fields, got 2"),
                                                                   (2, "expected 4 fields, got 3")]
    assert report.by_reason[0] == ("expected N fields, got N", 1, 4)


def test_filters_by_file_load_and_time(quarantined):
    from lakehouse.quarantine_report import quarantine_report

    only_file = quarantine_report(quarantined, source_file=f"{PREFIX}u.data")
    assert [(g.reason, g.rows) for g in only_file.groups] == [("unknown movie_id N", 2)]
    assert only_file.uncommitted_rows == 0
    one_load = quarantine_report(quarantined, load_id=f"{PREFIX}load-1", samples=0)
    assert sorted((g.reason, g.rows, g.samples) for g in one_load.groups) == [
        ("expected N fields, got N", 3, []), ("rating N.N is off the scale N.N-N", 1, [])]
    recent = quarantine_report(quarantined, source_file=f"{PREFIX}*", since=datetime(2021, 1, 1))
    assert {g.source_file for g in recent.groups} == {f"{PREFIX}ratings.csv"} and recent.total_rows == 5
    limited = quarantine_report(quarantined, source_file=f"{PREFIX}*", limit=1)
    assert len(limited.groups) == 1 and limited.total_groups == 3


def test_the_cli_prints_the_table_with_samples(quarantined, lakehouse_server):
    out = flat(lakehouse_cli(lakehouse_server, "quarantine", "--file", f"{PREFIX}*", "--samples", "3"))
    assert "expected N fields, got N" in out and "unknown movie_id N" in out
    assert "4,5,[red]x[/]" in out  # a raw line is shown as it is, never read as markup
    assert "1\\t99999\\t4\\t880000000" in out  # tabs made visible
    assert "1: 1,2 (expected 4 fields, got 2)" in out  # a sample: line number, raw line, exact reason
    assert "not committed 2 lines" in out
    nothing = lakehouse_cli(lakehouse_server, "quarantine", "--file", "no-such-file.csv")
    assert "No quarantined lines match" in nothing


def flat(out: str) -> str:
    """The CLI's tables without their borders, whitespace collapsed: a cell wrapped over several
    lines reads as one (the cells beside its continuation lines are empty)."""
    import re

    return re.sub(r"\s+", " ", re.sub(r"[\u2500-\u257f]", " ", out))
