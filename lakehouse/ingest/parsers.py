"""Parse MovieLens files into typed rows, one record at a time, in pure Python.

Every line read is accounted for: each non-blank record (after a CSV header) comes out either as a
row or as a `Rejected` with a short reason, so rows read = rows accepted + rows rejected. Blank lines
and the header are not rows. Checks that need the whole set (unknown movie, duplicate rating) happen
later in Spark, which is why good rows carry their line number and raw text too.

Whatever the bytes, parsing takes time linear in the file's size and memory bounded by a few
reads (see `_PhysicalLines`): LF, CRLF and CR-only files all split into lines, a UTF-8 byte order
mark at the start is dropped, and a line over MAX_LINE_BYTES or with a NUL byte is rejected on its
own, with its length or the NUL as the reason, without the rest of the file being held up.

Speed matters (ml-25m and ml-32m have 25-32 million rating lines), so the common case takes a fast
path: bytes are read in large chunks and split with bytes.split, lines go on in whole batches,
fields are split with str.split, plain ASCII digits go straight to int(), and the usual rating
spellings are looked up in a dict. The slow, careful checks only run when the fast path does not
apply.
"""
from __future__ import annotations

import csv
import math
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from typing import BinaryIO, Callable, Iterator, NamedTuple

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

# A MovieLens line is tens of bytes (a u.item line a few hundred); a line of a megabyte is not
# one, and is rejected without being held whole. Its raw_line keeps its first RAW_LINE_BYTES bytes,
# as the stream's quarantine does.
MAX_LINE_BYTES = 1 << 20
RAW_LINE_BYTES = 2000

_READ_CHUNK = 1 << 20  # reads are this big, or MAX_LINE_BYTES if that is smaller
_BOM = b"\xef\xbb\xbf"
_NUL_REASON = "contains NUL bytes (binary data?)"
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
    # The record without its final line terminator; bad bytes as \\xNN escapes. A line over
    # MAX_LINE_BYTES or with NUL bytes keeps only its first RAW_LINE_BYTES, NULs as \\x00.
    raw_line: str
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

    Reads `stream` to its end, in chunks (a caller that hashes what it reads, as ingest does,
    gets the digest of exactly the bytes parsed). `now` bounds timestamps from above (plus a day
    of slack); it defaults to the current UTC time. Raises ValueError when the file as a whole is
    not what `file` describes (wrong header), since that is a wrong file rather than a bad row.
    """
    split = _splitter(file)
    build = _builder(file, dataset, _latest_timestamp(now))
    records = _records(_PhysicalLines(stream), quoted=file.layout == "csv")
    if file.header:
        _check_header(records, file, split)
    encoding = file.encoding
    for line_number, body, problem in records:
        if problem is not None:  # no record: too long, NUL bytes, a quote never closed
            yield Rejected(line_number, _lenient_decode(body, encoding), problem)
            continue
        if not body or body.isspace():
            continue  # blank lines are not rows
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


class _Batch(NamedTuple):
    """The lines completed by one read, without their terminators."""

    lines: list[bytes]
    # None, or: index in `lines` -> why that line cannot be a record (its bytes are then only for
    # showing: see _shown).
    problems: dict[int, str] | None
    has_quote: bool  # a '"' somewhere in these lines: CSV records may span lines


class _PhysicalLines:
    """A stream's physical lines, in batches of one read each; linear time, bounded memory.

    Line terminators: the first read that holds one decides. CRs and no LF in it make a CR-only
    file (classic Mac OS), where every CR ends a line and an LF is data. Otherwise LF ends a line,
    a CR right before it goes with it (CRLF and LF files give the same lines), and a lone CR is
    data: a stray CR in an LF file stays in its one line rather than turning the whole file into
    one. `newline` is the file's first terminator, once seen: a quoted CSV field spanning lines gets
    it between its lines.

    A UTF-8 byte order mark at the very start is dropped, whatever the file's encoding and whether
    or not it has a header: no MovieLens line starts with those bytes.

    No line is held longer than MAX_LINE_BYTES: past that, the line's first RAW_LINE_BYTES are
    kept and the rest is skipped up to the next terminator, only counted, and the line comes out
    as a problem. Reads are never bigger than the limit (but for the one that decides the
    terminator, which may take two), so apart from the first line of a read every line completed
    by a read fits in that read, and only that first line needs its length checked: memory stays
    within a few reads, and every byte is copied a bounded number of times.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.newline: bytes | None = None
        self._stream = stream
        self._end = b""  # the byte that ends a line: CR in a CR-only file, else LF

    def __iter__(self) -> Iterator[_Batch]:
        limit = MAX_LINE_BYTES
        pending = b""  # the start of a line not ended yet: never over the limit
        skipped: _OverlongLine | None = None  # a line over the limit, being skipped
        for chunk in self._chunks():
            if skipped is not None:
                end = chunk.find(self._end) if self._end else -1
                if end < 0:
                    skipped.extend(chunk)
                    continue
                skipped.extend(chunk[:end])
                yield _Batch([skipped.start], {0: skipped.reason(self._end)}, False)
                skipped = None
                chunk = chunk[end + 1 :]
            data = pending + chunk if pending else chunk
            if not self._end:  # no terminator seen yet: it is all the first line
                pending = data
            else:
                lines = self._split(data)
                pending = lines.pop()
                if lines:
                    yield self._batch(lines, data)
            if len(pending) - (pending[-1:] == b"\r") > limit:  # a final CR may be half a CRLF
                skipped, pending = _OverlongLine(pending), b""
        if skipped is not None:
            yield _Batch([skipped.start], {0: skipped.reason(self._end)}, False)
        elif pending:  # a last line without a terminator
            if self._end == b"\n" and pending.endswith(b"\r"):
                pending = pending[:-1]
            yield self._batch([pending], pending)

    def _chunks(self) -> Iterator[bytes]:
        """The stream's bytes in reads of at most MAX_LINE_BYTES, the byte order mark dropped,
        deciding the terminator on the way. A read that would decide on CRs alone but ends with
        one takes the next read too: that CR may be half of a CRLF."""
        size = min(_READ_CHUNK, MAX_LINE_BYTES)
        read = self._stream.read
        first = read(size)
        while len(first) < len(_BOM) and (more := read(size)):
            first += more  # a short read: the mark is 3 bytes
        chunk = (first[len(_BOM) :] or read(size)) if first.startswith(_BOM) else first
        while chunk:
            if not self._end:
                if chunk.endswith(b"\r") and b"\n" not in chunk:
                    chunk += read(size)
                self._decide(chunk)
            yield chunk
            chunk = read(size)

    def _decide(self, data: bytes) -> None:
        """Set the terminator from the first read that holds one (see the class docstring)."""
        if (lf := data.find(b"\n")) >= 0:
            self.newline = b"\r\n" if data[lf - 1 : lf] == b"\r" else b"\n"
            self._end = b"\n"
        elif b"\r" in data:
            self.newline = self._end = b"\r"

    def _split(self, data: bytes) -> list[bytes]:
        """`data` split into lines; the last item is the start of a line not ended yet."""
        if self.newline == b"\r":
            return data.split(b"\r")
        if self.newline == b"\r\n":
            lines = data.split(b"\r\n")
            if data.count(b"\n") == len(lines) - 1:
                return lines  # every LF had its CR
        lines = data.split(b"\n")
        if b"\r" in data:  # CRLF and LF mixed, or a lone CR somewhere: drop only a CR before an LF
            last = lines.pop()
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
            lines.append(last)
        return lines

    @staticmethod
    def _batch(lines: list[bytes], data: bytes) -> _Batch:
        problems: dict[int, str] = {}
        # Every line but the first is inside one read, and a read is never over the limit.
        if len(lines[0]) > MAX_LINE_BYTES:
            problems[0] = _too_long(len(lines[0]))
            lines[0] = _shown(lines[0])
        if b"\0" in data:
            for i, line in enumerate(lines):
                if b"\0" in line and i not in problems:
                    problems[i] = _NUL_REASON
                    lines[i] = _shown(line)
        return _Batch(lines, problems or None, b'"' in data)


class _OverlongLine:
    """A line over MAX_LINE_BYTES: its first bytes and its length, counted as it is skipped."""

    def __init__(self, start: bytes) -> None:
        self.start = _shown(start)
        self.length = len(start)
        self.last = start[-1:]

    def extend(self, more: bytes) -> None:
        if more:
            self.length += len(more)
            self.last = more[-1:]

    def reason(self, end: bytes) -> str:
        crlf = end == b"\n" and self.last == b"\r"  # the CR of its CRLF is not part of the line
        return _too_long(self.length - crlf)


def _too_long(length: int) -> str:
    return f"line is {length:,} bytes long (limit {MAX_LINE_BYTES:,})"


def _shown(line: bytes) -> bytes:
    """What a line that is no record keeps as its raw bytes: its start, NUL bytes as \\x00."""
    return line[:RAW_LINE_BYTES].replace(b"\0", b"\\x00")


# (line number, record bytes, None or why it cannot be a row)
_Record = tuple[int, bytes, "str | None"]


def _records(lines: _PhysicalLines, quoted: bool) -> Iterator[_Record]:
    """(first line number, record bytes without the final terminator, problem) per record.

    Without quoting every line is a record. With CSV quoting a record whose quoted field runs past
    the end of its line takes the following lines too, joined by the file's line terminator.
    Batches without a problem and without a quote (nearly all of them) go through at C speed.
    """
    line_number = 0
    if not quoted:
        for batch in lines:
            yield from _numbered(batch, line_number + 1)
            line_number += len(batch.lines)
        return

    # Lines to look at one by one, in order: those of a batch with a quote or a problem, and
    # lines read ahead while looking for a closing quote that never came (parsed again on their own).
    queue: deque[_Record] = deque()
    batches = iter(lines)

    def next_line() -> _Record | None:
        nonlocal line_number
        if not queue:
            if (batch := next(batches, None)) is None:
                return None
            queue.extend(_numbered(batch, line_number + 1))
            line_number += len(batch.lines)
        return queue.popleft()

    while True:
        if not queue:
            for batch in batches:  # quote-free batches need no look at each line
                if batch.has_quote or batch.problems:
                    queue.extend(_numbered(batch, line_number + 1))
                    line_number += len(batch.lines)
                    break
                yield from _numbered(batch, line_number + 1)
                line_number += len(batch.lines)
            else:
                return
        item = queue.popleft()
        first_line, line, problem = item
        if problem is not None or b'"' not in line or not _ends_inside_quotes(line, inside=False):
            yield item
            continue
        gathered = [item]
        closed = False
        while len(gathered) < MAX_QUOTED_LINES and (following := next_line()) is not None:
            gathered.append(following)
            if following[2] is not None:
                break  # a line that is no record cannot continue a quoted field
            if not _ends_inside_quotes(following[1], inside=True):
                closed = True
                break
        if closed:
            joiner = lines.newline or b"\n"
            yield first_line, joiner.join(text for _, text, _ in gathered), None
        else:
            yield first_line, line, "unterminated quoted field"
            queue.extendleft(reversed(gathered[1:]))


def _numbered(batch: _Batch, first: int) -> Iterator[_Record]:
    numbers = range(first, first + len(batch.lines))
    if batch.problems is None:
        return zip(numbers, batch.lines, repeat(None))
    return zip(numbers, batch.lines, (batch.problems.get(i) for i in range(len(batch.lines))))


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


def _check_header(records: Iterator[_Record], file: FileSpec, split: Callable[[str], list[str]]) -> None:
    """Consume the header (the first non-blank line) and check it names the expected columns."""
    expected = CSV_HEADERS.get(file.kind) if file.layout == "csv" else None
    if expected is None:
        raise ValueError(f"{file.name}: no known header for a {file.layout} {file.kind} file")
    wanted = ",".join(expected)
    for _, body, problem in records:
        if problem is None and (not body or body.isspace()):
            continue
        try:
            columns = None if problem else tuple(column.strip() for column in split(body.decode(file.encoding)))
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
            raise _Reject(f"timestamp {seconds} ({_utc_date(seconds)}) is in the future{_unit_hint(seconds)}")
        return seconds

    def _unit_hint(seconds: int) -> str:
        # ms since the epoch (Java's currentTimeMillis, JavaScript's Date.now) are a common mix-up
        if earliest <= seconds // 1000 <= latest:
            return f"; looks like milliseconds ({seconds // 1000} seconds is {_utc_date(seconds // 1000)})"
        return ""

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
