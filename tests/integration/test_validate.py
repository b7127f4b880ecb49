"""The set-level validation transforms on tiny frames."""
from __future__ import annotations

from pyspark.sql import types as T

from lakehouse.ingest import validate

RATINGS = T.StructType(
    [
        T.StructField("user_id", T.IntegerType()),
        T.StructField("movie_id", T.IntegerType()),
        T.StructField("rating", T.DoubleType()),
        T.StructField("epoch_seconds", T.LongType()),
        T.StructField("line_number", T.LongType()),
    ]
)


def test_unknown_movies_and_repeated_pairs_get_reasons(spark):
    ratings = spark.createDataFrame(
        [
            (1, 10, 4.0, 900, 1),   # older rating of (1, 10)
            (1, 10, 2.0, 950, 2),   # latest: kept
            (1, 11, 3.0, 900, 3),   # fine
            (2, 99, 5.0, 900, 4),   # unknown movie
            (2, 11, 1.0, 900, 5),   # same time as line 6: the later line wins
            (2, 11, 2.0, 900, 6),
        ],
        RATINGS,
    )
    movies = spark.createDataFrame([(10,), (11,)], "movie_id int")
    result = {r.line_number: r.reason for r in validate.validate_ratings(ratings, movies).collect()}
    assert result == {
        1: "duplicate (user_id, movie_id) in this load: line 2 was kept",
        2: None,
        3: None,
        4: "movie_id 99 is not in the movies file",
        5: "duplicate (user_id, movie_id) in this load: line 6 was kept",
        6: None,
    }


def test_keyed_rows_keep_their_last_line(spark):
    movies = spark.createDataFrame(
        [(1, "A", 1), (2, "B", 2), (1, "A again", 3)], "movie_id int, title string, line_number long"
    )
    result = {r.line_number: r.reason for r in validate.validate_keyed(movies, "movie_id").collect()}
    assert result == {1: "duplicate (movie_id) in this load: line 3 was kept", 2: None, 3: None}
