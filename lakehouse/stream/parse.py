"""Landed rating files -> one row per rating line, with a reason for every line that is rejected.

DataFrame -> DataFrame transforms, no I/O, so the stream and the tests run the very same code.
The stream reads the landed files line by line (the `text` source, which streams through big
files); a line's position in its file gives its 1-based line number, and a file's first non-blank
line can be told apart as a header.

Accepted input (the schema is explicit, never inferred):
- CSV, comma-separated, fields `user_id,movie_id,rating,timestamp` (epoch seconds), with or
  without a header line; a header (`user_id`/`userId`, ...) may put the four columns in any order.
- JSON lines: one object per line with exactly the keys user_id, movie_id, rating, timestamp.
Blank lines are not rows; every other line is a row, and it is either accepted or given a reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.datasets import EARLIEST_TIMESTAMP, FUTURE_SLACK, MAX_ID, RatingScale

FIELDS = ("user_id", "movie_id", "rating", "timestamp")
# Header spellings: MovieLens' own CSVs say userId/movieId; ours say user_id/movie_id.
HEADER_NAMES = {"userid": "user_id", "movieid": "movie_id", "rating": "rating", "timestamp": "timestamp"}
JSON_SCHEMA = ", ".join(f"{name} string" for name in FIELDS)  # strings: every value is checked here
RAW_LINE_CHARS = 2000  # quarantine keeps the start of a line; a 50 MB line would not help anyone


@dataclass(frozen=True)
class Rules:
    """What a valid rating is: the dataset's scale, and the time window."""

    scale: RatingScale
    earliest_epoch: int = int(EARLIEST_TIMESTAMP.timestamp())
    future_slack_seconds: int = int(FUTURE_SLACK / timedelta(seconds=1))


def landed_lines(raw: DataFrame) -> DataFrame:
    """The stream's rows (`value`, `_metadata`) as (source_file, landed_at, bytes, line, position).

    `position` orders a file's lines (monotonically_increasing_id follows the read order and is
    the same when a batch is read again); call this on the source's rows, before any shuffle."""
    path = F.col("_metadata.file_path")
    return raw.select(
        F.url_decode(F.element_at(F.split(path, "/"), -1)).alias("source_file"),
        F.col("_metadata.file_modification_time").alias("landed_at"),
        F.col("_metadata.file_size").alias("bytes"),
        F.col("value").alias("line"),
        F.monotonically_increasing_id().alias("position"),
    )


def files(landed: DataFrame) -> DataFrame:
    """One row per landed file that has at least one line: source_file, landed_at, bytes."""
    return landed.groupBy("source_file").agg(F.first("landed_at").alias("landed_at"), F.first("bytes").alias("bytes"))


def lines(landed: DataFrame) -> DataFrame:
    """One row per non-blank line: source_file, landed_at, line_number, line, is_utf8, is_header,
    header (the file's normalised header names, or null) and file_format."""
    in_file = Window.partitionBy("source_file").orderBy("position")
    whole_file = in_file.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    is_blank = F.trim("line") == ""
    numbered = landed.select(
        "source_file",
        "landed_at",
        "line",
        F.row_number().over(in_file).cast("long").alias("line_number"),
        F.first(F.when(~is_blank, F.col("line")), ignorenulls=True).over(whole_file).alias("first_line"),
        F.min(F.when(~is_blank, F.col("position"))).over(whole_file).alias("first_position"),
        "position",
    ).where(~is_blank)
    first_line = F.col("first_line")
    is_json = F.trim(first_line).startswith("{")
    has_header = ~is_json & _normalised_name(F.element_at(F.split(first_line, ","), 1)).isin(*FIELDS)
    return numbered.select(
        "source_file",
        "landed_at",
        "line_number",
        "line",
        F.is_valid_utf8("line").alias("is_utf8"),
        (has_header & (F.col("position") == F.col("first_position"))).alias("is_header"),
        F.when(has_header, F.transform(F.split(first_line, ","), _normalised_name)).alias("header"),
        F.when(is_json, F.lit("jsonl")).when(has_header, F.lit("csv+header")).otherwise(F.lit("csv")).alias("file_format"),
    )


def parse(file_lines: DataFrame, rules: Rules) -> DataFrame:
    """Rows (header lines left out) with user_id, movie_id, rating, epoch_seconds and `reason`
    (null when the row is valid so far; unknown movies are checked by `check_movies`)."""
    rows = file_lines.where(~F.col("is_header"))
    line = F.col("line")
    is_json = F.trim(line).startswith("{")
    header = F.col("header")
    # In steps, each a select: an expensive expression (JSON parsing, the split) is computed once
    # per line and then referenced, instead of being inlined into every check that reads it.
    shaped = rows.select(
        "*",
        is_json.alias("_is_json"),
        F.when(~is_json, F.split(line, ",")).alias("_fields"),
        F.when(is_json, F.from_json(line, JSON_SCHEMA)).alias("_json"),
        F.when(is_json, F.json_object_keys(line)).alias("_keys"),
    )

    def csv_field(name: str) -> Column:
        position = F.when(header.isNotNull(), F.array_position(header, F.lit(name))).otherwise(
            F.lit(FIELDS.index(name) + 1)
        )
        at = F.nullif(position.cast("int"), F.lit(0))  # 0: a header without this name (its rows get a reason)
        return F.regexp_replace(F.trim(F.try_element_at("_fields", at)), r'^"(.*)"$', "$1")

    texts = shaped.select(
        "*",
        *[F.when(F.col("_is_json"), F.trim(F.col("_json")[name])).otherwise(csv_field(name)).alias(f"_{name}")
          for name in FIELDS],
    )
    typed = texts.select(
        "*",
        _id(F.col("_user_id")).alias("_user"),
        _id(F.col("_movie_id")).alias("_movie"),
        F.col("_rating").try_cast("double").alias("_value"),
        F.when(F.col("_timestamp").rlike(r"^-?[0-9]{1,18}$"), F.col("_timestamp").try_cast("long")).alias("_epoch"),
    )
    raw = {name: F.col(f"_{name}") for name in FIELDS}
    user_id, movie_id, rating, epoch = F.col("_user"), F.col("_movie"), F.col("_value"), F.col("_epoch")
    latest = F.unix_timestamp("landed_at") + F.lit(rules.future_slack_seconds)

    reason = F.coalesce(
        F.when(~F.col("is_utf8"), F.lit("not valid UTF-8")),
        F.when(F.col("_is_json"), _json_shape_reason(F.col("_keys"))).otherwise(_csv_shape_reason(F.col("_fields"), header)),
        _id_reason("user_id", raw["user_id"], user_id),
        _id_reason("movie_id", raw["movie_id"], movie_id),
        F.when(rating.isNull(), F.format_string("rating %s is not a number", _shown(raw["rating"]))),
        F.when(F.isnan(rating) | (F.abs(rating) == F.lit(float("inf"))),
               F.format_string("rating %s is not a finite number", _shown(raw["rating"]))),
        F.when(~_on_scale(rating, rules.scale),
               F.format_string(f"rating %s is off the {rules.scale.describe()}", _shown(raw["rating"]))),
        F.when(epoch.isNull(), F.format_string("timestamp %s is not an integer (epoch seconds)", _shown(raw["timestamp"]))),
        F.when(epoch < F.lit(rules.earliest_epoch),
               F.format_string(f"timestamp %d is before {EARLIEST_TIMESTAMP.date().isoformat()}", epoch)),
        F.when(epoch > latest, F.format_string("timestamp %d is in the future (the file landed at %s UTC)", epoch,
                                               F.date_format("landed_at", "yyyy-MM-dd HH:mm:ss"))),
    )
    checked = typed.select("*", reason.alias("reason"))
    valid = F.col("reason").isNull()
    return checked.select(
        "source_file",
        "landed_at",
        "line_number",
        "file_format",
        F.when(valid, user_id.cast("int")).alias("user_id"),
        F.when(valid, movie_id.cast("int")).alias("movie_id"),
        F.when(valid, rating).alias("rating"),
        F.when(valid, epoch).alias("epoch_seconds"),
        F.substring(F.when(F.col("is_utf8"), line).otherwise(F.make_valid_utf8(line)), 1, RAW_LINE_CHARS).alias("raw_line"),
        "reason",
    )


def check_movies(rows: DataFrame, known_movies: DataFrame) -> DataFrame:
    """Ratings of a movie the catalogue does not know are rejected (new users are welcome)."""
    known = known_movies.select(F.col("movie_id").alias("known_movie_id")).distinct()
    joined = rows.join(known, rows["movie_id"] == known["known_movie_id"], "left")
    unknown = F.when(
        F.col("reason").isNull() & F.col("known_movie_id").isNull(),
        F.format_string("movie_id %d is not in the movie catalogue (bronze.movies)", "movie_id"),
    )
    return joined.select(*[c for c in rows.columns if c != "reason"], F.coalesce("reason", unknown).alias("reason"))


def _normalised_name(column: Column) -> Column:
    """`"userId"`, ` user_id ` -> `userid`; known header names map to our field names."""
    bare = F.lower(F.regexp_replace(F.trim(column), r'["_ ]', ""))
    mapped = F.create_map(*[F.lit(x) for pair in HEADER_NAMES.items() for x in pair])
    return F.coalesce(F.element_at(mapped, bare), bare)


def _csv_shape_reason(fields: Column, header: Column) -> Column:
    expected = F.coalesce(F.size(header), F.lit(len(FIELDS)))
    # Four distinct names, all known, is every field exactly once (in any order).
    header_ok = (F.size(F.array_distinct(header)) == F.lit(len(FIELDS))) & F.forall(header, lambda n: n.isin(*FIELDS))
    header_problem = F.when(
        ~header_ok,
        F.format_string(
            "the file's header has columns %s; expected %s in any order",
            F.array_join(header, ","),
            F.lit(",".join(FIELDS)),
        ),
    )
    wrong_count = F.when(
        F.size(fields) != expected,
        F.format_string(
            "expected %d comma-separated fields, found %d%s",
            expected,
            F.size(fields),
            F.when(F.element_at(fields, 1).rlike("[;\t|]"), F.lit(" (wrong delimiter?)")).otherwise(F.lit("")),
        ),
    )
    return F.coalesce(F.when(header.isNotNull(), header_problem), wrong_count)


def _json_shape_reason(keys: Column) -> Column:
    allowed = F.array(*[F.lit(f) for f in FIELDS])
    unexpected = F.array_except(keys, allowed)
    missing = F.array_except(allowed, keys)
    return F.coalesce(
        F.when(keys.isNull(), F.lit("malformed JSON (expected one object per line)")),
        F.when(F.size(unexpected) > 0, F.format_string("unexpected JSON key(s) %s", F.array_join(unexpected, ","))),
        F.when(F.size(missing) > 0, F.format_string("missing JSON key(s) %s", F.array_join(missing, ","))),
    )


def _id(text: Column) -> Column:
    return F.when(text.rlike(r"^-?[0-9]{1,18}$"), text.try_cast("long"))


def _id_reason(name: str, text: Column, value: Column) -> Column:
    return F.coalesce(
        F.when(text.isNull() | (text == ""), F.lit(f"{name} is missing")),
        F.when(value.isNull(), F.format_string(f"{name} %s is not an integer", _shown(text))),
        F.when(value <= 0, F.lit(f"{name} must be positive")),
        F.when(value > F.lit(MAX_ID), F.format_string(f"{name} %d is too large (max {MAX_ID})", value)),
    )


def _on_scale(value: Column, scale: RatingScale) -> Column:
    steps = (value - F.lit(scale.minimum)) / F.lit(scale.step)
    return (
        (value >= F.lit(scale.minimum))
        & (value <= F.lit(scale.maximum))
        & (F.abs(steps - F.round(steps)) < F.lit(1e-9))
    )


def _shown(text: Column) -> Column:
    """A value quoted for a reason, cut short."""
    return F.concat(F.lit("'"), F.substring(F.coalesce(text, F.lit("")), 1, 40), F.lit("'"))
