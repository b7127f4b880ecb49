"""The pure parts of `lakehouse quarantine` (lakehouse/quarantine_report.py): --since, patterns,
how a raw line is shown, and the per-reason totals; the counts themselves are checked on the
server (tests/integration/test_quarantine_report.py)."""
from __future__ import annotations

from datetime import datetime

import pytest

from lakehouse.quarantine_report import QuarantineReport, ReasonCount, _like, parse_since, shown

NOW = datetime(2024, 5, 1, 12, 0, 0)


@pytest.mark.parametrize("value, expected", [
    ("30m", datetime(2024, 5, 1, 11, 30)),
    ("2h", datetime(2024, 5, 1, 10, 0)),
    ("1.5h", datetime(2024, 5, 1, 10, 30)),
    ("7d", datetime(2024, 4, 24, 12, 0)),
    ("1w", datetime(2024, 4, 24, 12, 0)),
    ("90s", datetime(2024, 5, 1, 11, 58, 30)),
    ("2024-04-30", datetime(2024, 4, 30)),
    ("2024-04-30T08:15", datetime(2024, 4, 30, 8, 15)),
    ("2024-04-30 10:00:00+02:00", datetime(2024, 4, 30, 8, 0)),  # to UTC
])
def test_since_takes_durations_and_iso_times(value, expected):
    assert parse_since(value, now=NOW) == expected


def test_since_refuses_anything_else():
    with pytest.raises(ValueError, match="--since 'yesterday'"):
        parse_since("yesterday", now=NOW)


def test_shell_patterns_become_like_patterns_with_sql_wildcards_escaped():
    assert _like("ratings-*.csv") == "ratings-%.csv"
    assert _like("u?.data") == "u_.data"
    assert _like("100%_done*") == "100\\%\\_done%"


def test_a_raw_line_is_shown_with_its_control_characters_visible_and_cut_short():
    assert shown("1\t2\t3\r") == "1\\t2\\t3\\r"
    assert shown("a\x00b\x7f") == "a\\x00b\\x7f"
    assert shown("Amélie (2001)") == "Amélie (2001)"
    cut = shown("x" * 500, width=20)
    assert len(cut) == 20 and cut.endswith("…")
    assert shown(None) == ""


def test_totals_per_reason_add_up_the_files():
    groups = [ReasonCount("a.csv", "bronze.ratings", "expected N fields, got N", 4, 1, 9, 1, None),
              ReasonCount("b.csv", "bronze.ratings", "expected N fields, got N", 2, 3, 4, 1, None),
              ReasonCount("b.csv", "bronze.ratings", "unknown movie_id N", 5, 1, 5, 1, None)]
    report = QuarantineReport(groups, 11, 3, 2, 0, [])
    assert report.by_reason == [("expected N fields, got N", 2, 6), ("unknown movie_id N", 1, 5)]
