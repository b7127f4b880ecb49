"""Unit tests for lakehouse.ingest.parsers on small byte strings built here (and a few big files
written to tmp_path), and for the Snapshot ingest parses through."""
from __future__ import annotations

import hashlib
import io
import time
import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.ingest import parsers
from lakehouse.datasets import DATASETS, FileKind, get_dataset
from lakehouse.ingest.acquire import FileChangedError, locate
from lakehouse.ingest.parsers import MovieRow, RatingRow, Rejected, UserRow, parse_file

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
CSV_DATASETS = ("ml-latest-small", "ml-25m", "ml-32m")
RATINGS_HEADER = b"userId,movieId,rating,timestamp\n"
MOVIES_HEADER = b"movieId,title,genres\n"


def parse(dataset: str, kind: FileKind, data: bytes, now: datetime = NOW) -> list:
    spec = get_dataset(dataset)
    file = spec.file(kind)
    assert file is not None
    return list(parse_file(io.BytesIO(data), file, spec, now=now))


def only(rows: list):
    assert len(rows) == 1, rows
    return rows[0]


def rejection(dataset: str, kind: FileKind, data: bytes, now: datetime = NOW) -> Rejected:
    row = only(parse(dataset, kind, data, now))
    assert isinstance(row, Rejected), row
    return row


def item_line(movie_id: str = "1", title: str = "Toy Story (1995)", flags: str = "0" * 19) -> bytes:
    """A u.item line: id|title|release date|video release date|IMDb URL|19 genre flags."""
    fields = [movie_id, title, "01-Jan-1995", "", "http://us.imdb.com/M/title-exact?Toy%20Story"]
    return ("|".join(fields + list(flags)) + "\n").encode("latin-1")


# --- good lines, every dataset and layout ----------------------------------------------------


def test_ml_100k_rating():
    row = only(parse("ml-100k", "ratings", b"196\t242\t3\t881250949\n"))
    assert row == RatingRow(196, 242, 3.0, 881250949, 1, "196\t242\t3\t881250949")
    assert isinstance(row.rating, float)


def test_ml_100k_movie_genres_from_flags():
    flags = "0001110000000000000"  # Animation, Children's, Comedy
    row = only(parse("ml-100k", "movies", item_line(flags=flags)))
    assert row == MovieRow(
        movie_id=1,
        title="Toy Story (1995)",
        genres="Animation|Children's|Comedy",
        release_date="01-Jan-1995",
        imdb_url="http://us.imdb.com/M/title-exact?Toy%20Story",
        line_number=1,
        raw_line=item_line(flags=flags).decode().rstrip("\n"),
    )


def test_ml_100k_movie_first_and_last_genre_and_no_genre():
    first_last = only(parse("ml-100k", "movies", item_line(flags="1" + "0" * 17 + "1")))
    assert first_last.genres == "unknown|Western"
    none_set = only(parse("ml-100k", "movies", item_line(flags="0" * 19)))
    assert none_set.genres == ""


def test_ml_100k_movie_empty_dates_and_url_are_none():
    line = b"267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    row = only(parse("ml-100k", "movies", line))
    assert (row.title, row.release_date, row.imdb_url, row.genres) == ("unknown", None, None, "unknown")


def test_ml_100k_users_keep_zip_as_string():
    rows = parse("ml-100k", "users", b"1|24|M|technician|85711\n2|53|F|other|T8H1N\n3|23|M|writer|01002\n")
    assert rows[0] == UserRow(1, 24, "M", "technician", "85711", 1, "1|24|M|technician|85711")
    assert rows[1].zip_code == "T8H1N"
    assert rows[2].zip_code == "01002"  # a leading zero survives


def test_ml_1m_rating_movie_and_user():
    assert only(parse("ml-1m", "ratings", b"1::1193::5::978300760\n")) == RatingRow(
        1, 1193, 5.0, 978300760, 1, "1::1193::5::978300760"
    )
    movie = only(parse("ml-1m", "movies", b"1::Toy Story (1995)::Animation|Children's|Comedy\n"))
    assert (movie.movie_id, movie.title) == (1, "Toy Story (1995)")
    assert movie.genres == "Animation|Children's|Comedy"
    assert (movie.release_date, movie.imdb_url) == (None, None)
    user = only(parse("ml-1m", "users", b"1::F::1::10::48067\n"))
    assert user == UserRow(1, 1, "F", "10", "48067", 1, "1::F::1::10::48067")


def test_ml_1m_title_may_contain_single_colons():
    movie = only(parse("ml-1m", "movies", b"329::Star Trek: Generations (1994)::Action|Sci-Fi\n"))
    assert movie.title == "Star Trek: Generations (1994)"


@pytest.mark.parametrize("dataset", CSV_DATASETS)
def test_csv_rating_and_movie(dataset):
    rows = parse(dataset, "ratings", RATINGS_HEADER + b"1,1,4.0,964982703\n1,3,3.5,964981247\n")
    assert rows == [
        RatingRow(1, 1, 4.0, 964982703, 2, "1,1,4.0,964982703"),
        RatingRow(1, 3, 3.5, 964981247, 3, "1,3,3.5,964981247"),
    ]
    movie = only(parse(dataset, "movies", MOVIES_HEADER + b"1,Toy Story (1995),Adventure|Animation\n"))
    assert (movie.movie_id, movie.title, movie.genres, movie.line_number) == (
        1, "Toy Story (1995)", "Adventure|Animation", 2
    )


def test_csv_datasets_have_no_users_file():
    for name in CSV_DATASETS:
        assert get_dataset(name).file("users") is None


# --- bad lines: each gets a specific reason --------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "kind", "line", "reason"),
    [
        ("ml-100k", "ratings", b"1\t2\t3", "expected 4 fields, got 3"),
        ("ml-100k", "ratings", b"1\t2\t3\t881250949\t7", "expected 4 fields, got 5"),
        ("ml-100k", "ratings", b"1\t2\t6\t881250949", "rating 6 is off the 1-5 scale (step 1)"),
        ("ml-100k", "ratings", b"1\t2\t0\t881250949", "rating 0 is off the 1-5 scale (step 1)"),
        ("ml-100k", "ratings", b"abc\t2\t3\t881250949", "user_id 'abc' is not an integer"),
        ("ml-100k", "ratings", b"1.5\t2\t3\t881250949", "user_id '1.5' is not an integer"),
        ("ml-100k", "ratings", b"1_000\t2\t3\t881250949", "user_id '1_000' is not an integer"),
        ("ml-100k", "ratings", b"1\t\t3\t881250949", "movie_id '' is not an integer"),
        ("ml-100k", "ratings", b"1\t0\t3\t881250949", "movie_id must be positive"),
        ("ml-100k", "ratings", b"-4\t2\t3\t881250949", "user_id must be positive"),
        ("ml-100k", "ratings", b"1\t2\tnan\t881250949", "rating nan is not a finite number"),
        ("ml-100k", "ratings", b"1\t2\tinf\t881250949", "rating inf is not a finite number"),
        ("ml-100k", "ratings", b"1\t2\tgood\t881250949", "rating 'good' is not a number"),
        ("ml-100k", "ratings", b"1\t2\t\t881250949", "rating '' is not a number"),
        ("ml-100k", "ratings", b"1\t2\t3\t0", "timestamp 0 (1970-01-01) is before 1995-01-01"),
        ("ml-100k", "ratings", b"1\t2\t3\t4102444800", "timestamp 4102444800 (2100-01-01) is in the future"),
        ("ml-100k", "ratings", b"1\t2\t3\t8.8e8", "timestamp '8.8e8' is not an integer"),
        ("ml-1m", "ratings", b"1::2::3", "expected 4 fields, got 3"),
        ("ml-1m", "movies", b"1::   ::Drama", "empty title"),
        ("ml-1m", "users", b"1::X::1::10::48067", "gender 'X' is not M or F"),
        ("ml-1m", "users", b"1::F::17::10::48067", "age code 17 is not one of 1, 18, 25, 35, 45, 50, 56"),
        ("ml-1m", "users", b"1::F::18::21::48067", "occupation code 21 is not within 0-20"),
        ("ml-100k", "users", b"1|0|M|technician|85711", "age 0 is not within 1-120"),
        ("ml-100k", "users", b"1|121|M|technician|85711", "age 121 is not within 1-120"),
        ("ml-100k", "users", b"1|24||technician|85711", "gender '' is not M or F"),
        ("ml-100k", "movies", item_line(title=""), "empty title"),
        ("ml-100k", "movies", item_line(flags="0" * 5 + "2" + "0" * 13), "genre flag '2' is not 0 or 1"),
        ("ml-100k", "movies", item_line(movie_id="0"), "movie_id must be positive"),
        ("ml-100k", "movies", b"1|Toy Story (1995)|01-Jan-1995", "expected 24 fields, got 3"),
        ("ml-latest-small", "ratings", RATINGS_HEADER + b"1,2,3.5", "expected 4 fields, got 3"),
        ("ml-latest-small", "ratings", RATINGS_HEADER + b"1,2,3.25,964982703",
         "rating 3.25 is off the 0.5-5 scale (step 0.5)"),
        ("ml-latest-small", "movies", MOVIES_HEADER + b'1,"",Drama', "empty title"),
        ("ml-latest-small", "movies", MOVIES_HEADER + b'1,"Foo"bar,Drama', "malformed CSV quoting"),
    ],
)
def test_bad_line_reasons(dataset, kind, line, reason):
    rejected = rejection(dataset, kind, line)
    assert reason in rejected.reason
    assert rejected.raw_line == line.decode("latin-1").splitlines()[-1]


def test_ids_must_fit_the_32_bit_columns():
    assert isinstance(only(parse("ml-100k", "ratings", b"2147483647\t1\t3\t881250949\n")), RatingRow)
    rejected = rejection("ml-100k", "ratings", b"2147483648\t1\t3\t881250949\n")
    assert rejected.reason == "user_id 2147483648 is too large (max 2147483647)"


def test_huge_numbers_are_rejected_with_short_reasons():
    digits = "9" * 5000
    for line in (f"{digits}\t1\t3\t881250949", f"1\t1\t3\t{digits}", f"1\t1\t{digits}\t881250949"):
        rejected = rejection("ml-100k", "ratings", line.encode())
        assert len(rejected.reason) < 100, rejected.reason
        assert rejected.raw_line == line


def test_integers_tolerate_surrounding_whitespace():
    row = only(parse("ml-100k", "ratings", b" 196 \t 242\t 3 \t881250949 \n"))
    assert (row.user_id, row.movie_id, row.rating, row.epoch_seconds) == (196, 242, 3.0, 881250949)


def test_non_ascii_digits_are_not_integers():
    rejected = rejection("ml-latest-small", "ratings", RATINGS_HEADER + "\u0661,2,3.5,964982703\n".encode())
    assert "user_id '\u0661' is not an integer" in rejected.reason


def test_future_is_measured_from_now_with_a_day_of_slack():
    soon = int((NOW + timedelta(hours=12)).timestamp())
    later = int((NOW + timedelta(days=2)).timestamp())
    assert isinstance(only(parse("ml-100k", "ratings", f"1\t2\t3\t{soon}\n".encode())), RatingRow)
    assert "is in the future" in rejection("ml-100k", "ratings", f"1\t2\t3\t{later}\n".encode()).reason


def test_now_defaults_to_the_current_time():
    spec = get_dataset("ml-100k")
    rows = list(parse_file(io.BytesIO(b"1\t2\t3\t1700000000\n"), spec.files[0], spec))
    assert isinstance(only(rows), RatingRow)


def test_first_error_in_field_order_wins():
    rejected = rejection("ml-100k", "ratings", b"x\t0\t9\t0\n")
    assert rejected.reason == "user_id 'x' is not an integer"


# --- ratings scales ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [("0.5", 0.5), ("3.5", 3.5), ("4", 4.0), ("4.50", 4.5), ("5.0", 5.0)])
def test_half_stars_accepted_on_ml_latest(text, value):
    row = only(parse("ml-latest-small", "ratings", RATINGS_HEADER + f"1,2,{text},964982703\n".encode()))
    assert row.rating == value


@pytest.mark.parametrize("text", ["0", "0.0", "5.5", "-1", "3.25"])
def test_off_scale_rejected_on_ml_latest(text):
    rejected = rejection("ml-latest-small", "ratings", RATINGS_HEADER + f"1,2,{text},964982703\n".encode())
    assert f"rating {text} is off the 0.5-5 scale (step 0.5)" == rejected.reason


def test_half_stars_rejected_on_ml_100k_and_ml_1m():
    assert rejection("ml-100k", "ratings", b"1\t2\t3.5\t881250949\n").reason == (
        "rating 3.5 is off the 1-5 scale (step 1)"
    )
    assert "off the 1-5 scale" in rejection("ml-1m", "ratings", b"1::2::4.5::978300760\n").reason


def test_rating_scale_contains():
    scale = get_dataset("ml-25m").scale
    assert scale.contains(0.5) and scale.contains(5.0) and scale.contains(2.5)
    assert not scale.contains(0.0) and not scale.contains(5.5) and not scale.contains(2.25)
    assert not scale.contains(float("nan")) and not scale.contains(float("inf"))


# --- line endings, blank lines, encodings ----------------------------------------------------


def test_crlf_and_lf_give_the_same_rows():
    lines = [b"196\t242\t3\t881250949", b"186\t302\t3\t891717742", b"bad"]
    lf = parse("ml-100k", "ratings", b"\n".join(lines) + b"\n")
    crlf = parse("ml-100k", "ratings", b"\r\n".join(lines) + b"\r\n")
    assert lf == crlf
    assert [r.raw_line for r in crlf] == [line.decode() for line in lines]


def test_csv_with_crlf():
    data = b"movieId,title,genres\r\n1,Toy Story (1995),Comedy\r\n2,\"Foo, The (1990)\",Drama\r\n"
    rows = parse("ml-25m", "movies", data)
    assert [(r.title, r.raw_line) for r in rows] == [
        ("Toy Story (1995)", "1,Toy Story (1995),Comedy"),
        ("Foo, The (1990)", '2,"Foo, The (1990)",Drama'),
    ]


def test_last_line_without_newline_is_read():
    rows = parse("ml-100k", "ratings", b"1\t2\t3\t881250949\n4\t5\t1\t881250949")
    assert [r.user_id for r in rows] == [1, 4]


def test_lone_cr_inside_a_line_is_data():
    movie = only(parse("ml-latest-small", "movies", MOVIES_HEADER + b"1,Foo\rBar (1999),Drama\n"))
    assert movie.title == "Foo\rBar (1999)"
    assert "is not an integer" in rejection("ml-100k", "ratings", b"1\t2\t3\t8812\r50949\n").reason


def test_blank_lines_are_skipped_but_line_numbers_stay_physical():
    rows = parse("ml-100k", "ratings", b"\n1\t2\t3\t881250949\n   \n\r\n\t\n4\t5\t1\t881250949\n\n")
    assert [(r.user_id, r.line_number) for r in rows] == [(1, 2), (4, 6)]


def test_blank_lines_before_the_csv_header():
    rows = parse("ml-latest-small", "ratings", b"\n" + RATINGS_HEADER + b"1,2,3.5,964982703\n")
    assert only(rows).line_number == 3


def test_titles_are_kept_exactly_as_in_the_file():
    movie = only(parse("ml-latest-small", "movies", MOVIES_HEADER + b"1, Spaced Out (1999) ,Drama\n"))
    assert movie.title == " Spaced Out (1999) "


def test_latin_1_titles_decode():
    movie = only(parse("ml-100k", "movies", item_line(title="Caf\xe9 au Lait (1993)")))
    assert movie.title == "Café au Lait (1993)"
    movie = only(parse("ml-1m", "movies", b"1::Caf\xe9 (1993)::Comedy\n"))
    assert movie.title == "Café (1993)"


def test_invalid_utf8_rejected_in_csv_but_fine_in_latin_1():
    rejected = rejection("ml-25m", "movies", MOVIES_HEADER + b"1,Caf\xe9 (1993),Comedy\n")
    assert rejected.reason == "invalid utf-8 byte 0xe9 at column 6"
    assert rejected.raw_line == "1,Caf\\xe9 (1993),Comedy"  # the bad byte stays visible
    assert rejected.line_number == 2
    assert only(parse("ml-1m", "movies", b"1::Caf\xe9 (1993)::Comedy\n")).title == "Café (1993)"


def test_valid_utf8_titles():
    movie = only(parse("ml-25m", "movies", MOVIES_HEADER + "1,Amélie (2001),Comedy\n".encode()))
    assert movie.title == "Amélie (2001)"


def test_invalid_utf8_reports_the_byte():
    rejected = rejection("ml-25m", "ratings", RATINGS_HEADER + b"1,2,3.5,96498270\xff\n")
    assert rejected.reason == "invalid utf-8 byte 0xff at column 17"


# --- CSV quoting --------------------------------------------------------------------------------


def test_quoted_titles_with_commas_and_doubled_quotes():
    data = MOVIES_HEADER + b'1,"American President, The (1995)",Comedy\n2,"Say ""Hi"", Bob (1990)",Drama\n'
    rows = parse("ml-latest-small", "movies", data)
    assert [r.title for r in rows] == ["American President, The (1995)", 'Say "Hi", Bob (1990)']
    assert rows[1].raw_line == '2,"Say ""Hi"", Bob (1990)",Drama'


def test_quote_inside_an_unquoted_field_is_literal():
    movie = only(parse("ml-latest-small", "movies", MOVIES_HEADER + b'1,Le "Grand" Bleu (1988),Drama\n'))
    assert movie.title == 'Le "Grand" Bleu (1988)'


def test_a_single_quote_inside_an_unquoted_field_does_not_open_a_quoted_field():
    data = MOVIES_HEADER + b'1,Le "Grand Bleu (1988),Drama\n2,Next (1999),Drama\n'
    rows = parse("ml-latest-small", "movies", data)
    assert [(r.title, r.line_number) for r in rows] == [('Le "Grand Bleu (1988)', 2), ("Next (1999)", 3)]


def test_doubled_quotes_keep_a_quoted_field_open_across_lines():
    data = MOVIES_HEADER + b'1,"Say ""Hi""\nthere, ""Bob"" (1990)",Drama\n2,Next (1999),Drama\n'
    rows = parse("ml-latest-small", "movies", data)
    assert [(r.title, r.line_number) for r in rows] == [
        ('Say "Hi"\nthere, "Bob" (1990)', 2),
        ("Next (1999)", 4),
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_quoted_field_spanning_lines(newline):
    records = [MOVIES_HEADER.rstrip(), b'1,"Two', b'Lines (1999)",Drama', b"2,After (2000),Drama"]
    data = newline.join(records) + newline
    rows = parse("ml-latest-small", "movies", data)
    assert [type(r) for r in rows] == [MovieRow, MovieRow]
    first, second = rows
    assert first.title == "Two" + newline.decode() + "Lines (1999)"
    assert first.line_number == 2  # where the record starts
    assert first.raw_line == '1,"Two' + newline.decode() + 'Lines (1999)",Drama'
    assert second.line_number == 4


def test_unterminated_quote_at_eof_is_rejected():
    data = MOVIES_HEADER + b'1,Fine (1999),Drama\n2,"Never closed,Drama\n'
    rows = parse("ml-latest-small", "movies", data)
    assert rows[0].title == "Fine (1999)"
    assert rows[1] == Rejected(3, '2,"Never closed,Drama', "unterminated quoted field")


def test_unterminated_quote_rejects_its_line_and_parsing_resumes():
    numbers = range(3, 3 + parsers.MAX_QUOTED_LINES)
    following = b"".join(f"{i},Movie {i} (1999),Drama\n".encode() for i in numbers)
    data = MOVIES_HEADER + b'2,"Stray quote,Drama\n' + following
    rows = parse("ml-latest-small", "movies", data)
    assert rows[0] == Rejected(2, '2,"Stray quote,Drama', "unterminated quoted field")
    assert all(isinstance(r, MovieRow) for r in rows[1:])
    assert [r.line_number for r in rows] == list(range(2, 3 + parsers.MAX_QUOTED_LINES))


# --- headers ------------------------------------------------------------------------------------


def test_wrong_csv_header_is_a_wrong_file():
    with pytest.raises(ValueError, match="expected the header 'userId,movieId,rating,timestamp'"):
        parse("ml-latest-small", "ratings", b"a,b,c\n1,2,3\n")


def test_ratings_header_on_movies_file_is_a_wrong_file():
    with pytest.raises(ValueError, match="movies.csv"):
        parse("ml-latest-small", "movies", RATINGS_HEADER + b"1,2,3.5,964982703\n")


def test_empty_csv_file_is_a_wrong_file():
    with pytest.raises(ValueError, match="empty"):
        parse("ml-latest-small", "ratings", b"")


def test_header_with_byte_order_mark_and_quotes():
    data = b'\xef\xbb\xbf"movieId","title","genres"\r\n1,Heat (1995),Action\r\n'
    assert only(parse("ml-25m", "movies", data)).title == "Heat (1995)"


# --- conservation -------------------------------------------------------------------------------


def test_mixed_file_conserves_lines():
    lines = [
        b"196\t242\t3\t881250949",
        b"",
        b"1\t2",
        b"x\t2\t3\t881250949",
        b"   ",
        b"186\t302\t3\t891717742",
        b"1\t2\t9\t881250949",
        b"1\t2\t3\t1",
        b"\xff\t2\t3\t881250949",
        b"22\t377\t1\t878887116",
    ]
    rows = parse("ml-100k", "ratings", b"\r\n".join(lines))
    good = [r for r in rows if not isinstance(r, Rejected)]
    bad = [r for r in rows if isinstance(r, Rejected)]
    non_blank = [n for n, line in enumerate(lines, 1) if line.strip()]
    assert (len(good), len(bad)) == (3, 5)
    assert len(good) + len(bad) == len(non_blank)
    assert sorted(r.line_number for r in rows) == non_blank


def test_small_read_chunks_give_the_same_rows(monkeypatch):
    data = MOVIES_HEADER + b'1,"Two\r\nLines (1999)",Drama\r\n\r\n2,Caf\xc3\xa9 (2000),Drama\r\n3,x,y'
    expected = parse("ml-25m", "movies", data)
    monkeypatch.setattr(parsers, "_READ_CHUNK", 3)
    assert parse("ml-25m", "movies", data) == expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 23])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_terminator_and_a_bom_survive_any_read_size(monkeypatch, newline, chunk):
    # 23 bytes end the first read (mark, first line) on the CR of a CRLF: not a CR-only file
    lines = [b"196\t242\t3\t881250949", b"", b"186\t302\t3\t891717742", b"x"]
    data = b"\xef\xbb\xbf" + newline.join(lines)
    expected = parse("ml-100k", "ratings", data)
    assert [(r.line_number, type(r)) for r in expected] == [(1, RatingRow), (3, RatingRow), (4, Rejected)]
    monkeypatch.setattr(parsers, "_READ_CHUNK", chunk)
    assert parse("ml-100k", "ratings", data) == expected


# --- faults: CR-only files, byte order marks, NUL bytes, huge lines, milliseconds ---------------


def test_cr_only_file_splits_into_lines():
    lines = [b"196\t242\t3\t881250949", b"186\t302\t3\t891717742", b"bad"]
    cr = parse("ml-100k", "ratings", b"\r".join(lines) + b"\r")
    assert cr == parse("ml-100k", "ratings", b"\n".join(lines) + b"\n")
    assert [r.raw_line for r in cr] == [line.decode() for line in lines]
    assert [type(r) for r in cr] == [RatingRow, RatingRow, Rejected]


def test_cr_only_csv_with_header_and_quoted_field_spanning_lines():
    data = b'movieId,title,genres\r1,"Two\rLines (1999)",Drama\r2,Heat (1995),Action\r'
    rows = parse("ml-25m", "movies", data)
    assert [(r.line_number, r.title) for r in rows] == [(2, "Two\rLines (1999)"), (4, "Heat (1995)")]


def test_a_lone_cr_does_not_make_an_lf_file_cr_only():
    data = b"1\t2\t3\t881250949\n" + b"1\t2\t3\t88\r1250949\n" * 3
    rows = parse("ml-100k", "ratings", data)
    assert [r.line_number for r in rows] == [1, 2, 3, 4]
    assert all("is not an integer" in r.reason for r in rows[1:])


def test_bom_before_a_headerless_first_line():
    data = b"\xef\xbb\xbf196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
    rows = parse("ml-100k", "ratings", data)
    assert [type(r) for r in rows] == [RatingRow, RatingRow]
    assert rows[0] == RatingRow(196, 242, 3.0, 881250949, 1, "196\t242\t3\t881250949")
    assert only(parse("ml-1m", "users", b"\xef\xbb\xbf1::F::1::10::48067\n")).user_id == 1


def test_bom_before_a_csv_header():
    data = b"\xef\xbb\xbfuserId,movieId,rating,timestamp\n1,2,3.5,964982703\n"
    assert only(parse("ml-latest-small", "ratings", data)).line_number == 2


def test_nul_bytes_reject_their_line_only():
    data = b"196\t242\t3\t881250949\n1\t2\x00\t3\t881250949\n\x00\x00\x00\n186\t302\t3\t891717742\n"
    rows = parse("ml-100k", "ratings", data)
    assert [type(r) for r in rows] == [RatingRow, Rejected, Rejected, RatingRow]
    assert rows[1] == Rejected(2, "1\t2\\x00\t3\t881250949", "contains NUL bytes (binary data?)")
    assert rows[2].raw_line == "\\x00\\x00\\x00"
    csv = parse("ml-25m", "movies", MOVIES_HEADER + b'1,"Nul\x00 (1999)",Drama\n2,Heat (1995),Action\n')
    assert [r.reason if isinstance(r, Rejected) else r.title for r in csv] == [
        "contains NUL bytes (binary data?)", "Heat (1995)"
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_line_over_the_limit_is_rejected_with_its_length(newline):
    long = b"1\t2\t3\t881250949" + b" " * (3 * parsers.MAX_LINE_BYTES)  # blank-padded: still no row
    data = newline.join([b"196\t242\t3\t881250949", long, b"186\t302\t3\t891717742"]) + newline
    rows = parse("ml-100k", "ratings", data)
    assert [(r.line_number, type(r)) for r in rows] == [(1, RatingRow), (2, Rejected), (3, RatingRow)]
    assert rows[1].reason == f"line is {len(long):,} bytes long (limit {parsers.MAX_LINE_BYTES:,})"
    assert rows[1].raw_line == long[: parsers.RAW_LINE_BYTES].decode()


def test_a_line_at_the_limit_is_parsed():
    title = b"T" * (parsers.MAX_LINE_BYTES - len(b"1::::Drama"))
    row = only(parse("ml-1m", "movies", b"1::" + title + b"::Drama\n"))
    assert isinstance(row, MovieRow) and len(row.raw_line) == parsers.MAX_LINE_BYTES


def test_an_over_long_line_cannot_continue_a_quoted_field():
    long = b"x" * (parsers.MAX_LINE_BYTES + 1)
    data = MOVIES_HEADER + b'1,"Open\n' + long + b'\nclosed",Drama\n2,Heat (1995),Action\n'
    rows = parse("ml-25m", "movies", data)
    assert [(r.line_number, r.reason if isinstance(r, Rejected) else r.title) for r in rows] == [
        (2, "unterminated quoted field"),
        (3, f"line is {len(long):,} bytes long (limit {parsers.MAX_LINE_BYTES:,})"),
        (4, "expected 3 fields, got 2"),
        (5, "Heat (1995)"),
    ]


def test_an_over_long_header_is_a_wrong_file():
    with pytest.raises(ValueError, match="expected the header"):
        parse("ml-25m", "ratings", b"userId" * parsers.MAX_LINE_BYTES + b"\n1,2,3.5,964982703\n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lengths=st.lists(st.integers(0, 40), max_size=12), newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
       chunk=st.integers(1, 12), final_newline=st.booleans())
def test_lines_over_a_small_limit_whatever_the_reads(lengths, newline, chunk, final_newline):
    lines = [(b"%d" % n * 40)[:n] for n in lengths]
    data = newline.join(lines) + (newline if final_newline and lines else b"")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsers, "MAX_LINE_BYTES", 16)
        patch.setattr(parsers, "RAW_LINE_BYTES", 4)
        patch.setattr(parsers, "_READ_CHUNK", chunk)
        rows = parse("ml-100k", "ratings", data)
    expected = [(n, f"line is {len(line):,} bytes long (limit 16)" if len(line) > 16 else "expected 4 fields, got 1")
                for n, line in enumerate(physical_lines(data), 1) if line.strip()]
    assert [(r.line_number, r.reason) for r in rows] == expected
    assert all(len(r.raw_line) <= 16 for r in rows)


def test_a_200_mb_line_without_a_newline_takes_seconds_and_little_memory(tmp_path):
    size = 200 * 2**20
    (tmp_path / "u.data").write_bytes(b"")
    (tmp_path / "u.item").write_bytes(item_line())
    with open(tmp_path / "u.data", "wb") as out:
        block = b"9" * 2**20
        for _ in range(size // len(block)):
            out.write(block)
    spec = get_dataset("ml-100k")
    files = locate(spec, tmp_path, tmp_path / "cache")
    try:
        tracemalloc.start()
        started = time.monotonic()
        with files.snapshot("ratings") as source:
            rows = list(parse_file(source, spec.file("ratings"), spec, now=NOW))
            source.finish()
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        (tmp_path / "u.data").unlink()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # a few reads, not the line
    assert seconds < 15, f"{seconds:.1f} s"  # under a second on a quiet machine
    assert rows == [Rejected(1, "9" * 2000, "line is 209,715,200 bytes long (limit 1,048,576)")]


def test_millisecond_timestamps_get_a_hint():
    rejected = rejection("ml-100k", "ratings", b"1\t2\t3\t1700000000000\n")
    assert rejected.reason == (
        "timestamp 1700000000000 (beyond the calendar) is in the future; "
        "looks like milliseconds (1700000000 seconds is 2023-11-14)"
    )
    assert "milliseconds" not in rejection("ml-100k", "ratings", b"1\t2\t3\t4102444800\n").reason
    late = int((NOW + timedelta(days=30)).timestamp()) * 1000  # /1000 would be in the future too
    assert "milliseconds" not in rejection("ml-100k", "ratings", f"1\t2\t3\t{late}\n".encode()).reason


# --- reading once: the bytes parsed are the bytes hashed --------------------------------------------


def ratings_folder(tmp_path, ratings: bytes):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_bytes(ratings)
    (folder / "u.item").write_bytes(item_line())
    return locate(get_dataset("ml-100k"), folder, tmp_path / "cache")


def parse_snapshot(files, grow=None):
    spec = get_dataset("ml-100k")
    with files.snapshot("ratings") as source:
        rows = []
        for row in parse_file(source, spec.file("ratings"), spec, now=NOW):
            rows.append(row)
            if grow:
                grow()
                grow = None
        return rows, source


def test_the_digest_is_of_exactly_the_bytes_parsed(tmp_path):
    data = b"\xef\xbb\xbf196\t242\t3\t881250949\r\n186\t302\t3\t891717742"
    files = ratings_folder(tmp_path, data)
    rows, source = parse_snapshot(files)
    assert len(rows) == 2
    assert source.finish(files.sha256("ratings")) == hashlib.sha256(data).hexdigest() == files.sha256("ratings")


def test_a_file_that_grows_while_it_is_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(parsers, "_READ_CHUNK", 64)
    data = b"196\t242\t3\t881250949\n" * 100
    files = ratings_folder(tmp_path, data)

    def append():
        with open(tmp_path / "ml-100k" / "u.data", "ab") as out:
            out.write(b"1\t2\t3\t881250949\n" * 10)

    rows, source = parse_snapshot(files, grow=append)
    assert len(rows) == 100 and source.bytes_read == len(data)  # it read what the file had when opened
    with pytest.raises(FileChangedError, match=f"had {len(data):,} bytes when opened and {len(data) + 160:,}"):
        source.finish()


def test_a_file_that_changed_since_its_checksum_is_refused(tmp_path):
    files = ratings_folder(tmp_path, b"196\t242\t3\t881250949\n")
    checked = files.sha256("ratings")
    (tmp_path / "ml-100k" / "u.data").write_bytes(b"186\t302\t3\t891717742\n")
    _, source = parse_snapshot(files)
    with pytest.raises(FileChangedError, match="changed between its checksum and its read"):
        source.finish(checked)


def test_a_snapshot_not_read_to_its_end_has_no_digest(tmp_path):
    files = ratings_folder(tmp_path, b"196\t242\t3\t881250949\n")
    with files.snapshot("ratings") as source:
        source.read(4)
        with pytest.raises(RuntimeError, match="not read to its end"):
            source.finish()


def _spans(rows) -> list[int]:
    """Physical line numbers covered by each output record (a quoted record may span lines)."""
    covered = []
    for row in rows:
        covered.extend(range(row.line_number, row.line_number + row.raw_line.count("\n") + 1))
    return covered


NEAR_MISS_FIELDS = st.sampled_from(
    [b"1", b"2", b"5", b"3.5", b"881250949", b"", b"x", b'"', b" ", b"\xe9", b"\r"]
)
byte_lines = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
        # lines that look almost right, so the row builders get exercised too
        st.lists(NEAR_MISS_FIELDS, max_size=6).map(lambda parts: b"\t".join(parts)),
    ),
    max_size=25,
)


def physical_lines(data: bytes) -> list[bytes]:
    """The documented line rule, the slow obvious way (for files shorter than one read): a byte
    order mark at the start is dropped; CRs and no LF make a CR-only file; otherwise LF ends a line,
    with a CR before it, and a lone CR is data."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\n" not in data and b"\r" in data:
        lines = data.split(b"\r")
    else:
        lines = [line.removesuffix(b"\r") for line in data.split(b"\n")]
    return lines[:-1] if lines and not lines[-1] else lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=byte_lines, newline=st.sampled_from([b"\n", b"\r\n", b"\r"]), final_newline=st.booleans(),
       dataset=st.sampled_from(["ml-100k", "ml-1m"]), kind=st.sampled_from(["ratings", "movies", "users"]),
       separator=st.sampled_from([b"\t", b"|", b"::"]))
def test_every_non_blank_line_comes_out_exactly_once(lines, newline, final_newline, dataset, kind, separator):
    lines = [line.replace(b"\t", separator) for line in lines]
    data = newline.join(lines) + (newline if final_newline and lines else b"")
    rows = parse(dataset, kind, data)
    non_blank = [n for n, line in enumerate(physical_lines(data), 1) if line.strip()]
    assert [r.line_number for r in rows] == non_blank


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=byte_lines, newline=st.sampled_from([b"\n", b"\r\n"]),
       kind=st.sampled_from(["ratings", "movies"]))
def test_csv_every_non_blank_line_is_covered_exactly_once(lines, newline, kind):
    lines = [line.replace(b"\t", b",") for line in lines]
    header = RATINGS_HEADER if kind == "ratings" else MOVIES_HEADER
    rows = parse("ml-25m", kind, header.rstrip(b"\n") + newline + newline.join(lines))
    covered = _spans(rows)
    assert len(covered) == len(set(covered))  # no line in two records
    non_blank = {n for n, line in enumerate(lines, 2) if line.strip()}
    assert non_blank <= set(covered)
    assert {row.line_number for row in rows} <= non_blank  # every record starts on a non-blank line


# --- the real ml-100k, when this machine has it ---------------------------------------------------


def test_real_ml_100k_parses_cleanly(shared_ml_100k):
    spec = get_dataset("ml-100k")
    expected = {"ratings": 100_000, "movies": 1_682, "users": 943}
    for file in spec.files:
        with open(shared_ml_100k / file.name, "rb") as stream:
            rows = list(parse_file(stream, file, spec))
        rejected = [r for r in rows if isinstance(r, Rejected)]
        assert rejected == [], rejected[:5]
        assert len(rows) == expected[file.kind], file.name


# --- the registry -------------------------------------------------------------------------------


def test_registry():
    assert list(DATASETS) == ["ml-100k", "ml-latest-small", "ml-1m", "ml-25m", "ml-32m"]
    for name, spec in DATASETS.items():
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert spec.files[0].kind == "ratings" and spec.files[1].kind == "movies"
    assert get_dataset("ml-100k").md5 == "0e33842e24a9c977be4e0107933c0723"
    assert get_dataset("ml-latest-small").md5 is None
    with pytest.raises(ValueError, match="ml-100k, ml-latest-small, ml-1m, ml-25m, ml-32m"):
        get_dataset("ml-10m")


def test_unsupported_file_spec_is_refused():
    spec = get_dataset("ml-100k")
    odd = replace(spec.files[0], kind="movies", layout="tab")
    with pytest.raises(ValueError, match="no parser"):
        list(parse_file(io.BytesIO(b"1\t2\t3\n"), odd, spec))
