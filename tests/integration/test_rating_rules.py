"""lakehouse/stream/rating_rules.py (what the REST API checks before it writes a rating file) gives
the very reason the stream's Spark parse (lakehouse/stream/parse.py) quarantines the same rating
with: each case is one line of a CSV file written as the API writes it (a header, then
`user_id,movie_id,rating,timestamp` with the rating as `repr(float(r))`), read the way the stream
reads a landed file (`sink.read_text`), landed at the file's mtime, on each dataset scale."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import NamedTuple

import pytest

from lakehouse.datasets import EARLIEST_TIMESTAMP, FUTURE_SLACK, MAX_ID, get_dataset
from lakehouse.stream import parse, rating_rules
from lakehouse.stream.sink import read_text

pytestmark = pytest.mark.integration

KNOWN_MOVIES = frozenset(range(1, 401))
VALID_TS = 1_600_000_000  # 2020-09-13
LANDED_NS = 1_767_225_600_750_000_000  # 2026-01-01 00:00:00.75 UTC: a fraction of a second, as mtimes have
LANDED = int(LANDED_NS // 10**9)
EARLIEST = int(EARLIEST_TIMESTAMP.timestamp())
SLACK = int(FUTURE_SLACK.total_seconds())


class Case(NamedTuple):
    name: str
    user_id: int
    movie_id: int
    rating: float
    epoch: int


CASES = [
    Case("valid", 1, 1, 4.0, VALID_TS),
    Case("valid: the scale's top", 2, 400, 5.0, VALID_TS),
    Case("valid: a brand-new user", 777_777, 3, 3.0, VALID_TS),
    Case("valid: the largest id", MAX_ID, 4, 2.0, VALID_TS),
    Case("half star", 1, 5, 4.5, VALID_TS),
    Case("half star: the lowest", 1, 6, 0.5, VALID_TS),
    Case("quarter star", 1, 7, 4.25, VALID_TS),
    Case("zero", 1, 8, 0.0, VALID_TS),
    Case("negative zero", 1, 8, -0.0, VALID_TS),
    Case("above the scale", 1, 9, 5.5, VALID_TS),
    Case("far above the scale", 1, 9, 1e20, VALID_TS),
    Case("negative", 1, 9, -1.0, VALID_TS),
    Case("nearly whole", 1, 10, 4.000000001, VALID_TS),
    Case("user 0", 0, 1, 4.0, VALID_TS),
    Case("negative user", -3, 1, 4.0, VALID_TS),
    Case("user past 32 bits", 2**31, 1, 4.0, VALID_TS),
    Case("user far past 32 bits", 10**17, 1, 4.0, VALID_TS),
    Case("movie 0", 1, 0, 4.0, VALID_TS),
    Case("movie past 32 bits", 1, 2**31, 4.0, VALID_TS),
    Case("unknown movie", 1, 401, 4.0, VALID_TS),
    Case("unknown movie, new user", 888_888, 99_999, 4.0, VALID_TS),
    Case("the first second of 1995", 1, 11, 4.0, EARLIEST),
    Case("the last second of 1994", 1, 11, 4.0, EARLIEST - 1),
    Case("epoch 0", 1, 11, 4.0, 0),
    Case("a day ahead of the landing", 1, 12, 4.0, LANDED + SLACK),
    Case("a day and a second ahead", 1, 12, 4.0, LANDED + SLACK + 1),
    Case("a year ahead", 1, 12, 4.0, LANDED + 365 * 86400),
    # Several problems: the first in the stream's order wins.
    Case("user 0 and off the scale", 0, 1, 9.0, 0),
    Case("off the scale and in 1970", 1, 401, 9.0, 0),
    Case("in 1970, unknown movie", 1, 401, 4.0, 0),
    # pydantic refuses these at the API (allow_inf_nan=False); the rules still agree.
    Case("NaN", 1, 13, float("nan"), VALID_TS),
    Case("infinity", 1, 13, float("inf"), VALID_TS),
    Case("minus infinity", 1, 13, float("-inf"), VALID_TS),
]

# The API accepts a timestamp up to 2**62 (api/schemas.py: RatingIn.timestamp); the stream reads
# one of 19 digits or more as "not an integer" (parse.py: at most 18 digits), rating_rules says
# "in the future". Both refuse it; the reasons differ.
LONG_TIMESTAMP = [
    Case("a 19-digit timestamp", 1, 14, 4.0, 10**18),
]


def python_reasons(cases: list[Case], scale) -> dict[int, str | None]:
    landed_at = datetime.fromtimestamp(LANDED_NS / 1e9, timezone.utc)
    return {line: rating_rules.reason(c.user_id, c.movie_id, c.rating, repr(float(c.rating)), c.epoch, landed_at,
                                      scale, KNOWN_MOVIES)
            for line, c in enumerate(cases, start=2)}


def spark_rows(spark, tmp_path, cases: list[Case], scale) -> dict[int, object]:
    """line number -> the stream's parsed row, for the cases written as the API writes them."""
    lines = ["user_id,movie_id,rating,timestamp"] + [f"{c.user_id},{c.movie_id},{repr(float(c.rating))},{c.epoch}"
                                                     for c in cases]
    path = tmp_path / "api-parity.csv"
    path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(LANDED_NS, LANDED_NS))
    known = spark.createDataFrame([(m,) for m in sorted(KNOWN_MOVIES)], "movie_id int")
    landed = parse.landed_lines(read_text(spark, [path.as_uri()]))
    rows = parse.check_movies(parse.parse(parse.lines(landed), parse.Rules(scale)), known).collect()
    assert len(rows) == len(cases), rows  # the header is not a row
    return {r.line_number: r for r in rows}


@pytest.mark.parametrize("dataset", ["ml-100k", "ml-latest-small"])  # whole stars; half stars
def test_rating_rules_give_the_stream_s_reasons(spark, tmp_path, dataset):
    scale = get_dataset(dataset).scale
    expected = python_reasons(CASES, scale)
    rows = spark_rows(spark, tmp_path, CASES, scale)
    assert {rows[line].landed_at.timestamp() for line in rows} == {LANDED_NS // 10**6 / 1e3}
    mismatches = {CASES[line - 2].name: (expected[line], rows[line].reason) for line in expected
                  if expected[line] != rows[line].reason}
    assert not mismatches, mismatches  # case: (rating_rules, the stream)
    for line, case in enumerate(CASES, start=2):
        row = rows[line]
        if row.reason is None:  # accepted: the stream reads back the values the API wrote
            assert (row.user_id, row.movie_id, row.rating, row.epoch_seconds) == case[1:], case.name
    # The cases cover acceptance and each rule on this scale.
    reasons = [r for r in expected.values() if r]
    assert len(reasons) < len(CASES)
    for phrase in ("must be positive", "is too large", "not a finite number", "is off the", "is before 1995",
                   "is in the future", "not in the movie catalogue"):
        assert any(phrase in r for r in reasons), phrase


def test_a_timestamp_of_19_digits_is_refused_by_both(spark, tmp_path):
    scale = get_dataset("ml-100k").scale
    expected = python_reasons(LONG_TIMESTAMP, scale)
    rows = spark_rows(spark, tmp_path, LONG_TIMESTAMP, scale)
    assert expected[2] is not None and expected[2] == rows[2].reason, (expected, rows)
