"""User-user similarity: every user's k nearest neighbours, and a heatmap of the most active users.

Two kinds of vectors (the `vectors` column of ml.user_similarity says which):

* "mean-centred co-rated ratings" (the default). x_ui = r_ui - mean_u, the user's rating minus the
  mean of all that user's ratings; two users are compared on the movies both rated (Pearson-style):

      sim(u, v) = sum_i x_ui x_vi / sqrt(sum_i x_ui^2 * sum_i x_vi^2)     over i in I_u and I_v
      shrunk    = sim(u, v) * n_uv / (n_uv + shrinkage)                    (Koren 2008, eq. 2)

  n_uv is the co-rated count; a pair needs n_uv >= min_co_rated. Shrinkage (0 = none) pulls the
  similarity of pairs with little support towards 0.
* "als factors": the cosine of the two users' factor vectors of the `als-ranking` model
  (ml.user_factors), scored on the same candidate pairs, which must pass the same min_co_rated.

Candidate pairs come from joining the ratings with themselves on movie_id, never from a users x
users cross join. A movie rated by everyone would still emit U^2/2 pairs, so at most
`max_raters_per_movie` raters of each movie take part in pair generation: a deterministic sample
that prefers the same users in every movie (the lowest hash of seed and user_id). Only movies above
the cap lose raters, and those popular movies say the least about taste (everyone rated them);
user means still use every rating. The price is support: users left out of the popular movies'
samples may fall below min_co_rated and get no neighbour. Drawing the same users everywhere keeps
the support of the pairs it keeps whole; an independent draw per movie thins every pair's support
instead, which collapses at scale: on the benchmark's synthetic data (bench/similarity_scale.py,
~28 ratings per user) it left 0.2% of 100k users with a neighbour, against 7% this way (75% and
70% at 10k users).

Only positive similarities become neighbours (a negatively correlated user is not a neighbour, and
the community detection needs non-negative edge weights); each user keeps the top k, ranked 1..k,
ties broken by the smaller neighbour id.

Complexity, with R ratings, U users, M movies, r_m raters of movie m and cap c:
    candidate rows      P = sum_m min(r_m, c) (min(r_m, c) - 1) / 2   <= M c^2 / 2
    time                O(R log R) for the means and the cap, O(P) for the join plus a shuffle of
                        P rows for the group-by (map-side partial aggregation shrinks it), and
                        O(D log D) for the top-k over the D <= P distinct pairs
    memory              the shuffle of P rows and D aggregation buffers live on the server (Spark
                        spills them to disk); the result is U * k rows; nothing is collected on the
                        client but counts
The "als factors" vectors add a join of the D pairs with the factors on both sides, O(D x rank):
the exact all-pairs cosine would be O(U^2 x rank), 10^10 dot products at 100k users, which is
why the factors are only scored on the co-rating candidates.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

RATING_VECTORS = "mean-centred co-rated ratings"
FACTOR_VECTORS = "als factors"


@dataclass(frozen=True)
class SimilarityParams:
    k: int = 20  # neighbours kept per user
    min_co_rated: int = 5  # co-rated movies a pair needs before its similarity counts
    shrinkage: float = 0.0  # ratings vectors only: sim * n / (n + shrinkage)
    max_raters_per_movie: int = 500  # cap on the raters of one movie used for pair generation
    seed: int = 42  # picks the deterministic sample of raters of popular movies

    def as_params(self) -> dict[str, object]:
        return asdict(self)


def centred_ratings(ratings: DataFrame) -> DataFrame:
    """(user_id, movie_id, centred): each rating minus the mean of its user's ratings."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    user_mean = F.avg("rating").over(Window.partitionBy("user_id"))
    return ratings.select("user_id", "movie_id", (F.col("rating") - user_mean).alias("centred"))


def capped_raters(centred: DataFrame, max_raters: int, seed: int) -> DataFrame:
    """At most `max_raters` rows per movie: the raters with the lowest hash of (seed, user_id)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    priority = Window.partitionBy("movie_id").orderBy(F.xxhash64(F.lit(seed), F.col("user_id")), "user_id")
    slot = F.row_number().over(priority)
    return centred.withColumn("_slot", slot).where(F.col("_slot") <= max_raters).drop("_slot")


def candidate_pair_count(ratings: DataFrame, max_raters: int) -> int:
    """How many (u, v, movie) rows pair generation emits under the cap (P in the module docstring)."""
    from pyspark.sql import functions as F

    raters = ratings.groupBy("movie_id").agg(F.least(F.count(F.lit(1)), F.lit(max_raters)).alias("r"))
    pairs = F.col("r") * (F.col("r") - 1) / 2
    return int(raters.agg(F.coalesce(F.sum(pairs), F.lit(0))).first()[0])


def co_rating_stats(centred: DataFrame) -> DataFrame:
    """(user_id, neighbour_id, co_rated, dot, norm_u, norm_v) for user_id < neighbour_id.

    The sums run over the movies both users rated: the Pearson-style terms of the module docstring.
    """
    from pyspark.sql import functions as F

    left = centred.select("movie_id", F.col("user_id").alias("u"), F.col("centred").alias("x_u"))
    right = centred.select("movie_id", F.col("user_id").alias("v"), F.col("centred").alias("x_v"))
    pairs = left.join(right, on="movie_id", how="inner").where(F.col("u") < F.col("v"))
    return pairs.groupBy("u", "v").agg(
        F.count(F.lit(1)).alias("co_rated"),
        F.sum(F.col("x_u") * F.col("x_v")).alias("dot"),
        F.sum(F.col("x_u") * F.col("x_u")).alias("norm_u"),
        F.sum(F.col("x_v") * F.col("x_v")).alias("norm_v"),
    ).select(F.col("u").alias("user_id"), F.col("v").alias("neighbour_id"), "co_rated", "dot", "norm_u", "norm_v")


def _clamped(similarity: Column) -> Column:
    """Rounding can push a cosine a hair past +-1."""
    from pyspark.sql import functions as F

    return F.least(F.greatest(similarity, F.lit(-1.0)), F.lit(1.0))


def rating_pairs(centred: DataFrame, params: SimilarityParams) -> DataFrame:
    """(user_id, neighbour_id, similarity, co_rated), user_id < neighbour_id: shrunk co-rated cosine.

    A pair whose centred ratings are all 0 on the co-rated movies has no similarity (dropped).
    """
    from pyspark.sql import functions as F

    stats = co_rating_stats(centred).where(F.col("co_rated") >= params.min_co_rated)
    cosine = F.try_divide(F.col("dot"), F.sqrt(F.col("norm_u") * F.col("norm_v")))
    support = F.col("co_rated") / (F.col("co_rated") + F.lit(params.shrinkage))
    scored = stats.select("user_id", "neighbour_id", _clamped(cosine * support).alias("similarity"), "co_rated")
    return scored.where(F.col("similarity").isNotNull())


def unit_factors(factors: DataFrame) -> DataFrame:
    """(user_id, unit): each factor vector (user_id, features) scaled to length 1; zero vectors dropped."""
    from pyspark.sql import functions as F

    from ml.top_n import dot

    norm = F.sqrt(dot("features", "features"))
    unit = F.transform("features", lambda x: F.try_divide(x.cast("double"), norm))
    return factors.where(norm > 0).select("user_id", unit.alias("unit"))


def factor_pairs(centred: DataFrame, unit: DataFrame, params: SimilarityParams) -> DataFrame:
    """(user_id, neighbour_id, similarity, co_rated), user_id < neighbour_id: cosine of factors.

    Scored only on the co-rating candidates (see the module docstring for why).
    """
    from pyspark.sql import functions as F

    from ml.top_n import dot

    candidates = co_rating_stats(centred).where(F.col("co_rated") >= params.min_co_rated)
    u = unit.select(F.col("user_id"), F.col("unit").alias("unit_u"))
    v = unit.select(F.col("user_id").alias("neighbour_id"), F.col("unit").alias("unit_v"))
    scored = candidates.join(u, on="user_id", how="inner").join(v, on="neighbour_id", how="inner")
    return scored.select("user_id", "neighbour_id", _clamped(dot("unit_u", "unit_v")).alias("similarity"), "co_rated")


def both_ways(pairs: DataFrame) -> DataFrame:
    """Each pair (u < v) also as (v, u): similarity is symmetric."""
    from pyspark.sql import functions as F

    mirrored = pairs.select(
        F.col("neighbour_id").alias("user_id"), F.col("user_id").alias("neighbour_id"), "similarity", "co_rated"
    )
    return pairs.select("user_id", "neighbour_id", "similarity", "co_rated").unionByName(mirrored)


def top_k(pairs: DataFrame, k: int) -> DataFrame:
    """(user_id, neighbour_id, rank, similarity, co_rated): each user's k most similar users."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    positive = both_ways(pairs).where(F.col("similarity") > 0)
    order = Window.partitionBy("user_id").orderBy(F.desc("similarity"), "neighbour_id")
    ranked = positive.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)
    return ranked.select("user_id", "neighbour_id", "rank", "similarity", "co_rated")


def user_neighbours(ratings: DataFrame, params: SimilarityParams, factors: DataFrame | None = None) -> DataFrame:
    """(user_id, neighbour_id, rank, similarity, co_rated) for every user with a neighbour.

    `ratings`: (user_id, movie_id, rating); `factors`: (user_id, features) to compare ALS factor
    vectors instead of ratings (the candidates still come from the capped co-ratings).
    """
    centred = capped_raters(centred_ratings(ratings), params.max_raters_per_movie, params.seed)
    if factors is None:
        pairs = rating_pairs(centred, params)
    else:
        pairs = factor_pairs(centred, unit_factors(factors), params)
    return top_k(pairs, params.k)


def most_active(ratings: DataFrame, n: int) -> DataFrame:
    """(user_id, position): the n users with the most ratings, position 1 the most active."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    counts = ratings.groupBy("user_id").agg(F.count(F.lit(1)).alias("ratings"))
    top = counts.orderBy(F.desc("ratings"), "user_id").limit(n)
    # n rows: a single partition on purpose.
    position = F.row_number().over(Window.partitionBy(F.lit(0)).orderBy(F.desc("ratings"), "user_id"))
    return top.select("user_id", position.alias("position"))


def similarity_matrix(
    ratings: DataFrame, active: DataFrame, params: SimilarityParams, factors: DataFrame | None = None
) -> DataFrame:
    """(user_id, other_user_id, similarity, user_position, other_user_position): all N x N pairs.

    The diagonal is 1.0; a pair without enough co-rated movies is 0. Exact, without the rater
    cap: N users emit at most N^2 / 2 pairs per movie. Unlike the neighbour lists, negative
    similarities are kept (the heatmap shows them).
    """
    from pyspark.sql import functions as F

    # The means use every rating of these users; only then are other users' ratings dropped.
    centred = centred_ratings(ratings).join(active.select("user_id"), on="user_id", how="left_semi")
    if factors is None:
        pairs = rating_pairs(centred, params)
    else:
        unit = unit_factors(factors.join(active.select("user_id"), on="user_id", how="left_semi"))
        pairs = factor_pairs(centred, unit, params)
    scored = both_ways(pairs).select(
        "user_id", F.col("neighbour_id").alias("other_user_id"), F.col("similarity").alias("pair_similarity")
    )
    rows = active.select("user_id", F.col("position").alias("user_position"))
    columns = active.select(F.col("user_id").alias("other_user_id"), F.col("position").alias("other_user_position"))
    grid = rows.crossJoin(columns)  # N x N, the heatmap itself
    is_diagonal = F.col("user_id") == F.col("other_user_id")
    similarity = F.when(is_diagonal, F.lit(1.0)).otherwise(F.coalesce(F.col("pair_similarity"), F.lit(0.0)))
    return grid.join(scored, on=["user_id", "other_user_id"], how="left").select(
        "user_id", "other_user_id", similarity.alias("similarity"), "user_position", "other_user_position"
    )
