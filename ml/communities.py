"""Communities of the user similarity graph: label propagation, and the modularity of its partition.

The graph is the kNN lists of ml.user_similarity made undirected: an edge wherever either user
lists the other, weighted by their (positive) similarity. Users without a neighbour are not in it.

Label propagation (Raghavan, Albert & Kumara 2007), synchronous and DataFrame-only: every user
starts with its own id as label; in each iteration every user takes the label with the largest
summed edge weight among its neighbours, ties to the smallest label. Plain synchronous updates can
oscillate for ever (two users linked only to each other swap labels every iteration), so a user's
current label also takes part, weighted like the user's strongest edge (a self-loop): a two-way
tie then resolves to the smaller label and the swap stops. It stops when no label changes or after
`max_iterations`. Each iteration's labels are localCheckpoint()ed: otherwise the plan would grow by
a join and an aggregation per iteration. Cost per iteration: a join of the 2E directed edges with
the U labels and a group-by, O(E) rows; two server jobs (the checkpoint and the change count).

Modularity of the partition on the weighted undirected graph (Newman 2004):

    Q = sum_c [ L_c / m - (d_c / 2m)^2 ]

m is the total edge weight, L_c the weight of the edges inside community c and d_c the summed
weighted degree of its members. Computed with aggregations; only Q reaches the client.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ALGORITHM = "label propagation"
TIE_DECIMALS = 9  # summed weights equal to this many decimals are a tie (float sums are order-dependent)


@dataclass
class Propagation:
    labels: DataFrame  # user_id, label
    iterations: int
    converged: bool


def undirected_edges(neighbours: DataFrame) -> DataFrame:
    """(src, dst, weight) with src < dst: the symmetrised kNN graph, one row per edge."""
    from pyspark.sql import functions as F

    ends = neighbours.select(
        F.least("user_id", "neighbour_id").alias("src"),
        F.greatest("user_id", "neighbour_id").alias("dst"),
        F.col("similarity"),
    )
    # Both directions carry the same similarity when both users list each other.
    return ends.groupBy("src", "dst").agg(F.max("similarity").alias("weight"))


def directed_edges(edges: DataFrame) -> DataFrame:
    """(user_id, neighbour_id, weight): every undirected edge in both directions."""
    from pyspark.sql import functions as F

    forward = edges.select(F.col("src").alias("user_id"), F.col("dst").alias("neighbour_id"), "weight")
    backward = edges.select(F.col("dst").alias("user_id"), F.col("src").alias("neighbour_id"), "weight")
    return forward.unionByName(backward)


def _votes(edges: DataFrame) -> DataFrame:
    """(user_id, neighbour_id, weight): who votes for a user's label, self-loops included."""
    from pyspark.sql import functions as F

    directed = directed_edges(edges)
    self_loops = directed.groupBy("user_id").agg(F.max("weight").alias("weight")).select(
        "user_id", F.col("user_id").alias("neighbour_id"), "weight"
    )
    return directed.unionByName(self_loops)


def _propagate(votes: DataFrame, labels: DataFrame) -> DataFrame:
    """(user_id, label): each user's label with the largest summed vote weight, ties to the smallest."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    voter_labels = labels.select(F.col("user_id").alias("neighbour_id"), "label")
    scores = votes.join(voter_labels, on="neighbour_id", how="inner").groupBy("user_id", "label").agg(
        F.round(F.sum("weight"), TIE_DECIMALS).alias("score")
    )
    best = Window.partitionBy("user_id").orderBy(F.desc("score"), "label")
    return scores.withColumn("_rank", F.row_number().over(best)).where(F.col("_rank") == 1).select("user_id", "label")


def _changed(before: DataFrame, after: DataFrame) -> int:
    from pyspark.sql import functions as F

    old = before.select("user_id", F.col("label").alias("old_label"))
    return after.join(old, on="user_id", how="inner").where(F.col("label") != F.col("old_label")).count()


def label_propagation(
    edges: DataFrame, max_iterations: int, progress: Callable[[int, int], None] | None = None
) -> Propagation:
    """Labels of every user in the graph `edges` (src, dst, weight); `progress(iteration, changed)`."""
    from pyspark.sql import functions as F

    votes = _votes(edges).localCheckpoint()
    labels = votes.select("user_id").distinct().select("user_id", F.col("user_id").alias("label")).localCheckpoint()
    for iteration in range(1, max_iterations + 1):
        updated = _propagate(votes, labels).localCheckpoint()
        changed = _changed(labels, updated)
        labels = updated
        if progress is not None:
            progress(iteration, changed)
        if changed == 0:
            return Propagation(labels, iteration, converged=True)
    return Propagation(labels, max_iterations, converged=False)


def communities(labels: DataFrame) -> DataFrame:
    """(user_id, community_id, community_size): communities numbered 1.. from the largest."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    sizes = labels.groupBy("label").agg(F.count(F.lit(1)).alias("community_size"))
    # One row per community: a single partition on purpose.
    by_size = Window.partitionBy(F.lit(0)).orderBy(F.desc("community_size"), "label")
    numbered = sizes.withColumn("community_id", F.row_number().over(by_size))
    return labels.join(numbered, on="label", how="inner").select("user_id", "community_id", "community_size")


def _internal(edges: DataFrame, members: DataFrame) -> DataFrame:
    """(community_id, internal_edges, internal_weight): the edges with both ends in one community."""
    from pyspark.sql import functions as F

    src = members.select(F.col("user_id").alias("src"), F.col("community_id").alias("src_community"))
    dst = members.select(F.col("user_id").alias("dst"), F.col("community_id").alias("dst_community"))
    joined = edges.join(src, on="src", how="inner").join(dst, on="dst", how="inner")
    return (
        joined.where(F.col("src_community") == F.col("dst_community"))
        .groupBy(F.col("src_community").alias("community_id"))
        .agg(F.count(F.lit(1)).alias("internal_edges"), F.sum("weight").alias("internal_weight"))
    )


def modularity(edges: DataFrame, members: DataFrame) -> float:
    """Q of the partition `members` (user_id, community_id) of the weighted graph `edges`."""
    from pyspark.sql import functions as F

    total = edges.agg(F.sum("weight")).first()[0]
    if not total:
        return 0.0
    m = F.lit(float(total))
    inside = _internal(edges, members)
    degrees = directed_edges(edges).groupBy("user_id").agg(F.sum("weight").alias("degree"))
    community_degrees = degrees.join(members, on="user_id", how="inner").groupBy("community_id").agg(
        F.sum("degree").alias("degree")
    )
    terms = community_degrees.join(inside, on="community_id", how="left").select(
        (F.coalesce(F.col("internal_weight"), F.lit(0.0)) / m - F.pow(F.col("degree") / (2 * m), 2)).alias("term")
    )
    return float(terms.agg(F.sum("term")).first()[0])


def top_genres(members: DataFrame, ratings: DataFrame, movies: DataFrame, n: int = 3) -> DataFrame:
    """(community_id, top_genres): the n genres the members rated most, as "Drama, Comedy, War"."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    genres = movies.select("movie_id", F.explode("genres").alias("genre"))
    community_of = members.select("user_id", "community_id")
    rated = ratings.select("user_id", "movie_id").join(community_of, on="user_id", how="inner")
    counts = rated.join(genres, on="movie_id", how="inner").groupBy("community_id", "genre").agg(
        F.count(F.lit(1)).alias("ratings")
    )
    order = Window.partitionBy("community_id").orderBy(F.desc("ratings"), "genre")
    top = counts.withColumn("genre_rank", F.row_number().over(order)).where(F.col("genre_rank") <= n)
    in_order = F.array_sort(F.collect_list(F.struct("genre_rank", "genre")))
    return top.groupBy("community_id").agg(
        F.array_join(F.transform(in_order, lambda g: g["genre"]), ", ").alias("top_genres")
    )


def community_summary(members: DataFrame, edges: DataFrame, ratings: DataFrame, movies: DataFrame) -> DataFrame:
    """(community_id, size, internal_edges, top_genres) per community of `members`.

    `members`: (user_id, community_id, community_size); `movies`: (movie_id, genres array).
    """
    from pyspark.sql import functions as F

    sizes = members.groupBy("community_id").agg(F.first("community_size").alias("size"))
    summary = sizes.join(_internal(edges, members), on="community_id", how="left").join(
        top_genres(members, ratings, movies), on="community_id", how="left"
    )
    return summary.select(
        "community_id",
        F.col("size").cast("bigint").alias("size"),
        F.coalesce(F.col("internal_edges"), F.lit(0)).cast("bigint").alias("internal_edges"),
        F.coalesce(F.col("top_genres"), F.lit("")).alias("top_genres"),
    )
