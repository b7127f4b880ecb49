"""Parse MovieLens files into typed rows, one record at a time, in pure Python.

Every line read is accounted for: each non-blank record (after a CSV header) comes out either as a
row or as a `Rejected` with a short reason, so rows read = rows accepted + rows rejected. Blank lines
and the header are not rows. Checks that need the whole set (unknown movie, duplicate rating) happen
later in Spark, which is why good rows carry their line number and raw text too.

Speed matters (ml-25m and ml-32m have 25-32 million rating lines), so the common case takes a fast
path: bytes are read in large chunks and split on LF, fields are split with str.split, plain ASCII
digits go straight to int(), and the usual rating spellings are looked up in a dict. The slow,
careful checks only run when the fast path does not apply.
"""
from __future__ import annotations

import csv
import math
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

from lakehouse.datasets import (
    EARLIEST_TIMESTAMP,
    FUTURE_SLACK,
    MAX_ID,
    DatasetSpec,
    FileKind,
    FileSpec,
    Layout,
    RatingScale,
)

# Order of the 19 genre flags in ml-100k's u.item (as listed in u.genre).
ML_100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)
ML_1M_AGE_CODES: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
ML_1M_OCCUPATION_CODES = range(0, 21)
AGE_RANGE = range(1, 121)

# The header line each headed file must start with.
CSV_HEADERS: dict[FileKind, tuple[str, ...]] = {
    "ratings": ("userId", "movieId", "rating", "timestamp"),
    "movies": ("movieId", "title", "genres"),
}

# A quoted CSV field may span lines, but a quote left open this long is a stray quote: the
# record's first line is rejected and parsing resumes on the next line, so one bad quote cannot
# swallow the rest of a 25-million-line file.
MAX_QUOTED_LINES = 50

_READ_CHUNK = 1 << 20
_SEPARATORS: dict[Layout, str] = {"tab": "\t", "pipe": "|", "double_colon": "::", "csv": ","}
_SIGNED_INT = re.compile(r"-?[0-9]+")
# Longer digit strings are refused before int() sees them (it refuses over 4300 digits anyway).
_MAX_DIGITS = 20
# Reasons stay short: a value quoted in one is cut to this many characters.
_SHOWN_CHARS = 30


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a row, and why."""

    line_number: int  # 1-based physical line where the record starts
    raw_line: str  # the record without its final line terminator; bad bytes as \\xNN escapes
    reason: str


class RatingRow(NamedTuple):
    user_id: int
    movie_id: int
    rating: float
    epoch_seconds: int
    line_number: int
    raw_line: str


class MovieRow(NamedTuple):
    movie_id: int
    title: str  # exactly as in the file, year included
    genres: str  # "|"-joined, the source's genre names; ml-100k: from its 19 flags
    release_date: str | None  # ml-100k only
    imdb_url: str | None  # ml-100k only
    line_number: int
    raw_line: str


class UserRow(NamedTuple):
    user_id: int
    age: int | None  # ml-100k: age in years; ml-1m: the age code (1, 18, 25, ...)
    gender: str | None
    occupation: str | None  # ml-100k: the name; ml-1m: the code as a string ("12")
    zip_code: str | None
    line_number: int
    raw_line: str


Parsed = RatingRow | MovieRow | UserRow | Rejected

# Turns a record's fields into a row, or raises _Reject.
_Builder = Callable[[list[str], int, str], "RatingRow | MovieRow | UserRow"]


class _Reject(Exception):
    """Raised while parsing one record to reject it; parse_file turns it into a Rejected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_file(
    stream: BinaryIO, file: FileSpec, dataset: DatasetSpec, now: datetime | None = None
) -> Iterator[Parsed]:
    """Yield a row or a Rejected for every non-blank record of a MovieLens file.

    `now` bounds timestamps from above (plus a day of slack); it defaults to the current UTC time.
    Raises ValueError when the file as a whole is not what `file` describes (wrong header), since
    that is a wrong file rather than a bad row.
    """
    split = _splitter(file)
    build = _builder(file, dataset, _latest_timestamp(now))
    records = _records(_physical_lines(stream), quoted=file.layout == "csv")
    if file.header:
        _check_header(records, file, split)
    encoding = file.encoding
    for line_number, body, unterminated in records:
        if not body or body.isspace():
            continue  # blank lines are not rows
        if unterminated:
            yield Rejected(line_number, _lenient_decode(body, encoding), "unterminated quoted field")
            continue
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError as error:
            yield Rejected(line_number, _lenient_decode(body, encoding), _decode_reason(error))
            continue
        try:
            row = build(split(text), line_number, text)
        except _Reject as rejection:
            yield Rejected(line_number, text, rejection.reason)
        else:
            yield row


# ---------------------------------------------------------------------------------------------
# Physical lines and records


def _physical_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Each line's bytes without its LF (a CR before the LF is left for the caller to strip).

    Reading big chunks and splitting them costs about the same as iterating a plain file and is
    several times faster on a zip member, whose readline is pure Python. A lone CR is not a line
    break: it stays in the data.
    """
    pending = b""
    while chunk := stream.read(_READ_CHUNK):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()  # the text after the last LF: the start of a line not yet complete
        yield from lines
    if pending:
        yield pending  # a last line without a final LF


def _without_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _records(lines: Iterable[bytes], quoted: bool) -> Iterator[tuple[int, bytes, bool]]:
    """(first line number, record bytes without the final terminator, unterminated?) per record.

    Without quoting every line is a record. With CSV quoting a record whose quoted field runs past
    the end of its line takes the following lines too, keeping their terminators.
    """
    numbered = enumerate(lines, 1)
    if not quoted:
        for line_number, line in numbered:
            # (the CR test is inlined: this loop runs once per line of a 25-million-line file)
            yield line_number, line[:-1] if line[-1:] == b"\r" else line, False
        return

    # Lines read ahead while looking for a closing quote that never came; parsed again on their own.
    given_back: deque[tuple[int, bytes]] = deque()

    def next_line() -> tuple[int, bytes] | None:
        return given_back.popleft() if given_back else next(numbered, None)

    while (item := next_line()) is not None:
        line_number, line = item
        if b'"' not in line or not _ends_inside_quotes(line, inside=False):
            yield line_number, line[:-1] if line[-1:] == b"\r" else line, False
            continue
        gathered = [item]
        while len(gathered) < MAX_QUOTED_LINES and (following := next_line()) is not None:
            gathered.append(following)
            if not _ends_inside_quotes(following[1], inside=True):
                yield line_number, _without_cr(b"\n".join(text for _, text in gathered)), False
                break
        else:
            yield line_number, _without_cr(line), True
            given_back.extendleft(reversed(gathered[1:]))


_QUOTE = ord('"')
_COMMA = ord(",")


def _ends_inside_quotes(line: bytes, inside: bool) -> bool:
    """Whether a CSV line ends inside a quoted field, by the csv module's rules: a quote opens a
    quoted field only as the field's first character, and "" inside one is a literal quote.
    Works on bytes because '"' and ',' never occur inside a multi-byte UTF-8 character."""
    at_field_start = not inside
    i, end = 0, len(line)
    while i < end:
        char = line[i]
        if inside:
            if char == _QUOTE:
                if i + 1 < end and line[i + 1] == _QUOTE:
                    i += 2  # an escaped quote
                    continue
                inside = False
        elif char == _QUOTE and at_field_start:
            inside = True
        at_field_start = not inside and char == _COMMA
        i += 1
    return inside


def _lenient_decode(body: bytes, encoding: str) -> str:
    return body.decode(encoding, errors="backslashreplace")


def _decode_reason(error: UnicodeDecodeError) -> str:
    byte = error.object[error.start]
    return f"invalid {error.encoding} byte 0x{byte:02x} at column {error.start + 1}"


# ---------------------------------------------------------------------------------------------
# Fields


def _splitter(file: FileSpec) -> Callable[[str], list[str]]:
    """A function that splits a record's text into exactly the fields the format expects."""
    expected = _field_count(file)
    separator = _SEPARATORS[file.layout]

    def split(text: str) -> list[str]:
        if separator == "," and '"' in text:
            fields = _csv_fields(text)  # quoted fields: let the csv module undo the quoting
        else:
            fields = text.split(separator)
        if len(fields) != expected:
            raise _Reject(f"expected {expected} fields, got {len(fields)}")
        return fields

    return split


def _csv_fields(text: str) -> list[str]:
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as error:
        raise _Reject(f"malformed CSV quoting: {error}") from None
    if len(rows) != 1:
        raise _Reject("malformed CSV quoting: line break outside a quoted field")
    return rows[0]


def _field_count(file: FileSpec) -> int:
    if file.kind == "ratings":
        return 4
    if file.kind == "movies":
        return 24 if file.layout == "pipe" else 3  # ml-100k: id, title, 2 dates, url, 19 flags
    return 5


def _check_header(
    records: Iterator[tuple[int, bytes, bool]], file: FileSpec, split: Callable[[str], list[str]]
) -> None:
    """Consume the header (the first non-blank line) and check it names the expected columns."""
    expected = CSV_HEADERS.get(file.kind) if file.layout == "csv" else None
    if expected is None:
        raise ValueError(f"{file.name}: no known header for a {file.layout} {file.kind} file")
    wanted = ",".join(expected)
    for _, body, _ in records:
        if not body or body.isspace():
            continue
        try:
            text = body.decode(file.encoding).lstrip("\ufeff")  # tolerate a UTF-8 byte order mark
            columns = tuple(column.strip() for column in split(text))
        except (UnicodeDecodeError, _Reject):
            columns = None
        if columns != expected:
            found = _lenient_decode(body[:200], file.encoding)
            raise ValueError(
                f"{file.name}: expected the header {wanted!r}, found {found!r}; "
                f"is this really a MovieLens {file.kind} file?"
            )
        return
    raise ValueError(f"{file.name}: the file is empty; expected the header {wanted!r}")


# ---------------------------------------------------------------------------------------------
# Values


def _cut(text: str) -> str:
    """A value shown in a reason, cut short so that reasons stay short."""
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _show(text: str) -> str:
    return repr(_cut(text))


def _positive_id(field: str, name: str) -> int:
    if len(field) < _MAX_DIGITS and field.isdigit() and field.isascii():  # the common case
        value = int(field)
    else:
        value = _strict_int(field, name)
    if value <= 0:
        raise _Reject(f"{name} must be positive")
    if value > MAX_ID:
        raise _Reject(f"{name} {value} is too large (max {MAX_ID})")
    return value


def _strict_int(field: str, name: str) -> int:
    """An integer with optional surrounding whitespace and minus sign; no "1.5", "1_000" or ""."""
    text = field.strip()
    if not _SIGNED_INT.fullmatch(text):
        raise _Reject(f"{name} {_show(text)} is not an integer")
    if len(text) > _MAX_DIGITS:
        raise _Reject(f"{name} {_show(text)} is too large")
    return int(text)


def _int_in(field: str, name: str, allowed: range | tuple[int, ...], allowed_text: str) -> int:
    value = _strict_int(field, name)
    if value not in allowed:
        raise _Reject(f"{name} {value} is not {allowed_text}")
    return value


def _optional(field: str) -> str | None:
    text = field.strip()
    return text or None


def _rating_parser(scale: RatingScale) -> Callable[[str], float]:
    # The usual spellings ("4", "4.0", "3.5") map straight to their value: no float(), no checks.
    known = {text: value for value in scale.values() for text in (f"{value:g}", f"{value:.1f}")}

    def parse(field: str) -> float:
        value = known.get(field)
        return value if value is not None else _checked_rating(field, scale)

    return parse


def _checked_rating(field: str, scale: RatingScale) -> float:
    text = field.strip()
    # float() also takes "1_0" and non-ASCII digits; a rating is plain ASCII without underscores.
    try:
        if not text.isascii() or "_" in text:
            raise ValueError(text)
        value = float(text)
    except ValueError:
        raise _Reject(f"rating {_show(text)} is not a number") from None
    if not math.isfinite(value):
        raise _Reject(f"rating {_cut(text)} is not a finite number")
    if not scale.contains(value):
        raise _Reject(f"rating {_cut(text)} is off the {scale.describe()}")
    steps = round((value - scale.minimum) / scale.step)
    return scale.minimum + steps * scale.step  # snap 3.4999999999 to 3.5


def _latest_timestamp(now: datetime | None) -> int:
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)  # a naive `now` is taken as UTC
    return math.floor((now + FUTURE_SLACK).timestamp())


def _timestamp_checker(latest: int) -> Callable[[str], int]:
    earliest = int(EARLIEST_TIMESTAMP.timestamp())
    earliest_text = EARLIEST_TIMESTAMP.date().isoformat()

    def check(field: str) -> int:
        if len(field) < _MAX_DIGITS and field.isdigit() and field.isascii():
            seconds = int(field)
        else:
            seconds = _strict_int(field, "timestamp")
        if seconds < earliest:
            raise _Reject(f"timestamp {seconds} ({_utc_date(seconds)}) is before {earliest_text}")
        if seconds > latest:
            raise _Reject(f"timestamp {seconds} ({_utc_date(seconds)}) is in the future")
        return seconds

    return check


def _utc_date(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return "beyond the calendar"


def _title(field: str) -> str:
    if not field.strip():
        raise _Reject("empty title")
    return field  # kept exactly, "(1995)" and all: dbt splits out the year


def _gender(field: str) -> str:
    text = field.strip()
    if text not in ("M", "F"):
        raise _Reject(f"gender {_show(text)} is not M or F")
    return text


def _genres_from_flags(flags: list[str]) -> str:
    names = []
    for name, flag in zip(ML_100K_GENRES, flags):
        flag = flag.strip()
        if flag == "1":
            names.append(name)
        elif flag != "0":
            raise _Reject(f"genre flag {_show(flag)} is not 0 or 1")
    return "|".join(names)


# ---------------------------------------------------------------------------------------------
# Rows


def _builder(file: FileSpec, dataset: DatasetSpec, latest: int) -> _Builder:
    if file.kind == "ratings":
        return _ratings_builder(dataset.scale, latest)
    builders: dict[tuple[str, str], _Builder] = {
        ("movies", "pipe"): _ml_100k_movie,
        ("movies", "double_colon"): _plain_movie,
        ("movies", "csv"): _plain_movie,
        ("users", "pipe"): _ml_100k_user,
        ("users", "double_colon"): _ml_1m_user,
    }
    try:
        return builders[(file.kind, file.layout)]
    except KeyError:
        raise ValueError(f"{file.name}: no parser for a {file.layout} {file.kind} file") from None


def _ratings_builder(scale: RatingScale, latest: int) -> _Builder:
    rating_of = _rating_parser(scale)
    timestamp_of = _timestamp_checker(latest)

    def build(fields: list[str], line_number: int, text: str) -> RatingRow:
        user, movie, rating, timestamp = fields
        return RatingRow(
            _positive_id(user, "user_id"),
            _positive_id(movie, "movie_id"),
            rating_of(rating),
            timestamp_of(timestamp),
            line_number,
            text,
        )

    return build


def _ml_100k_movie(fields: list[str], line_number: int, text: str) -> MovieRow:
    # id | title | release date | video release date (always empty: dropped) | IMDb URL | 19 flags
    return MovieRow(
        movie_id=_positive_id(fields[0], "movie_id"),
        title=_title(fields[1]),
        genres=_genres_from_flags(fields[5:]),
        release_date=_optional(fields[2]),
        imdb_url=_optional(fields[4]),
        line_number=line_number,
        raw_line=text,
    )


def _plain_movie(fields: list[str], line_number: int, text: str) -> MovieRow:
    movie_id, title, genres = fields
    return MovieRow(
        movie_id=_positive_id(movie_id, "movie_id"),
        title=_title(title),
        genres=genres.strip(),
        release_date=None,
        imdb_url=None,
        line_number=line_number,
        raw_line=text,
    )


def _ml_100k_user(fields: list[str], line_number: int, text: str) -> UserRow:
    user_id, age, gender, occupation, zip_code = fields
    return UserRow(
        user_id=_positive_id(user_id, "user_id"),
        age=_int_in(age, "age", AGE_RANGE, "within 1-120"),
        gender=_gender(gender),
        occupation=_optional(occupation),
        zip_code=_optional(zip_code),
        line_number=line_number,
        raw_line=text,
    )


def _ml_1m_user(fields: list[str], line_number: int, text: str) -> UserRow:
    user_id, gender, age, occupation, zip_code = fields
    age_codes = ", ".join(map(str, ML_1M_AGE_CODES))
    return UserRow(
        user_id=_positive_id(user_id, "user_id"),
        gender=_gender(gender),
        age=_int_in(age, "age code", ML_1M_AGE_CODES, f"one of {age_codes}"),
        occupation=str(_int_in(occupation, "occupation code", ML_1M_OCCUPATION_CODES, "within 0-20")),
        zip_code=_optional(zip_code),
        line_number=line_number,
        raw_line=text,
    )
