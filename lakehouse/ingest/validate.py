"""Set-level validation of one load, as DataFrame -> DataFrame transforms (no I/O).

Row-level checks (fields, types, scale, timestamps, encoding) happen while parsing; the checks
here need the whole load: a rating of a movie nobody knows, and a key seen twice in one load.
Each transform returns the input's columns plus `reason`: null for rows that pass.
"""
from __future__ import annotations

from typing import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F


def _first_reason(*reasons: Column) -> Column:
    return F.coalesce(*reasons)


def flag_duplicates(df: DataFrame, key: Sequence[str], newest_first: Sequence[Column]) -> Column:
    """A reason for every row but the newest per key (newest by `newest_first`)."""
    window = Window.partitionBy(*key).orderBy(*newest_first)
    rank = F.row_number().over(window)
    kept_line = F.first("line_number").over(window.rowsBetween(Window.unboundedPreceding, 0))
    key_text = ", ".join(key)
    return F.when(
        rank > 1,
        F.format_string(f"duplicate ({key_text}) in this load: line %d was kept", kept_line),
    )


def validate_ratings(ratings: DataFrame, known_movies: DataFrame) -> DataFrame:
    """Ratings of unknown movies and repeated (user, movie) pairs get a reason.

    Of a repeated pair the latest rating wins (then the later line), as MovieLens keeps a user's
    latest rating of a movie.
    """
    movies = known_movies.select(F.col("movie_id").alias("known_movie_id")).distinct()
    joined = ratings.join(movies, on=ratings["movie_id"] == movies["known_movie_id"], how="left")
    is_unknown_movie = F.col("known_movie_id").isNull()
    unknown_reason = F.when(
        is_unknown_movie, F.format_string("movie_id %d is not in the movies file", "movie_id")
    )
    duplicate_reason = flag_duplicates(
        joined,
        ["user_id", "movie_id"],
        [F.col("epoch_seconds").desc(), F.col("line_number").desc()],
    )
    return joined.select(*ratings.columns, _first_reason(unknown_reason, duplicate_reason).alias("reason"))


def validate_keyed(rows: DataFrame, key: str) -> DataFrame:
    """Movies or users: a key seen twice in one load keeps its last line."""
    reason = flag_duplicates(rows, [key], [F.col("line_number").desc()])
    return rows.select(*rows.columns, reason.alias("reason"))
