"""`lakehouse similarity`: the user similarity graph, its communities and a heatmap of similarities.

One MLflow run (experiment movielens-user-similarity) per invocation: the parameters, the size of
the graph, the number of communities, their modularity and the seconds of every stage. Unlike
the recommenders, nothing is held out (protocol "all ratings"): the graph describes the users,
it is not evaluated against a test split. Writes ml.user_similarity (the kNN lists),
ml.user_similarity_matrix (the N most active users, every pair), ml.user_communities and
ml.community_summary; see ml.similarity and ml.communities for the methods and their cost.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse import tables
from lakehouse.console import Stages, console, key_values, table
from lakehouse.settings import Settings
from ml import outputs, tracking
from ml.communities import ALGORITHM, community_summary, communities, label_propagation, modularity, undirected_edges
from ml.data import RATINGS_TABLE, load_ratings, read_version
from ml.similarity import (
    FACTOR_VECTORS,
    RATING_VECTORS,
    SimilarityParams,
    candidate_pair_count,
    most_active,
    similarity_matrix,
    user_neighbours,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

MOVIES_TABLE = tables.GOLD_MOVIES.name
FACTORS_TABLE = tables.USER_FACTORS.name
PROTOCOL = "all ratings"
MODEL_TYPE = "user_knn_label_propagation"
LARGEST_SHOWN = 10  # communities listed in the printed outcome


@dataclass
class SimilarityOutcome:
    run_id: str
    vectors: str
    ratings: int
    users: int
    candidate_pairs: int  # rows emitted by pair generation under the rater cap
    edges: int  # rows of ml.user_similarity (directed kNN entries)
    users_covered: int  # users with at least one neighbour
    communities: int
    modularity: float
    largest_community_share: float  # of the covered users
    iterations: int
    converged: bool
    stage_seconds: dict[str, float]
    largest: list[tuple[int, int, int, str]]  # community_id, size, internal_edges, top_genres


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SimilarityParams()
    parser.add_argument("--ratings-table", default=RATINGS_TABLE, help="ratings table (default %(default)s)")
    parser.add_argument("--movies-table", default=MOVIES_TABLE, help="movies with a genres array (default %(default)s)")
    parser.add_argument("--k", type=int, default=defaults.k, help="neighbours kept per user (default %(default)s)")
    parser.add_argument("--min-co-rated", type=int, default=defaults.min_co_rated,
                        help="movies two users must both have rated to be compared (default %(default)s)")
    parser.add_argument("--shrinkage", type=float, default=defaults.shrinkage,
                        help="similarity x n / (n + shrinkage), n the co-rated count; 0 for none (default %(default)s)")
    parser.add_argument("--max-raters-per-movie", type=int, default=defaults.max_raters_per_movie,
                        help="raters of one movie used to generate pairs, a deterministic sample (default %(default)s)")
    parser.add_argument("--vectors", choices=("ratings", "factors"), default="ratings",
                        help="compare mean-centred co-rated ratings, or the users' als-ranking factors from "
                        f"{FACTORS_TABLE} (run `lakehouse train --task ranking` first) (default %(default)s)")
    parser.add_argument("--heatmap-users", type=int, default=30,
                        help="most active users in ml.user_similarity_matrix (default %(default)s)")
    parser.add_argument("--max-iterations", type=int, default=30,
                        help="label propagation stops here if labels still change (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="picks the sample of raters of movies above the cap (default %(default)s)")


def run_similarity(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> SimilarityOutcome:
    import mlflow

    started = time.monotonic()

    def progress(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:7.1f}s[/] {message}")

    tracking.configure(settings)
    experiment = tracking.experiment_id(settings, "similarity")
    params = SimilarityParams(k=args.k, min_co_rated=args.min_co_rated, shrinkage=args.shrinkage,
                              max_raters_per_movie=args.max_raters_per_movie, seed=args.seed)
    stages = Stages()
    with stages.stage("load"):
        ratings, input_table = load_ratings(spark, args.ratings_table)
        ratings = ratings.localCheckpoint()
        users = ratings.select("user_id").distinct().count()
        versions = {input_table.name: input_table.version}
        movies = _load_movies(spark, args.movies_table, versions)
        factors = _load_factors(spark, versions) if args.vectors == "factors" else None
        vectors = RATING_VECTORS if factors is None else FACTOR_VECTORS
        progress(f"{input_table.rows:,} ratings of {users:,} users; vectors: {vectors}")
    description = f"every rating of {input_table.name}; nothing held out (the graph is descriptive)"
    tags = {**tracking.run_tags(input_table, PROTOCOL, description, MODEL_TYPE),
            **{f"delta.version.{name}": str(version) for name, version in versions.items()}}
    with mlflow.start_run(experiment_id=experiment, run_name=f"user similarity ({vectors})", tags=tags) as run:
        run_id = run.info.run_id
        mlflow.log_params({**params.as_params(), "vectors": vectors, "heatmap_users": args.heatmap_users,
                           "max_iterations": args.max_iterations, "movies_table": args.movies_table,
                           "algorithm": ALGORITHM})
        with stages.stage("neighbours"):
            candidate_pairs = candidate_pair_count(ratings, params.max_raters_per_movie)
            progress(f"{candidate_pairs:,} candidate pairs (at most {params.max_raters_per_movie} raters per movie)")
            neighbours = user_neighbours(ratings, params, factors).localCheckpoint()
            edges = neighbours.count()
            covered = neighbours.select("user_id").distinct().count()
            _write_neighbours(neighbours, vectors, run_id)
            progress(f"{edges:,} edges; {covered:,} of {users:,} users have a neighbour")
        with stages.stage("heatmap"):
            active = most_active(ratings, args.heatmap_users).localCheckpoint()
            outputs.write(similarity_matrix(ratings, active, params, factors), tables.USER_SIMILARITY_MATRIX)
            progress(f"ml.user_similarity_matrix: the {args.heatmap_users} most active users, every pair")
        with stages.stage("communities"):
            graph = undirected_edges(neighbours).localCheckpoint()
            propagation = label_propagation(
                graph, args.max_iterations, lambda i, changed: progress(f"iteration {i}: {changed:,} labels changed")
            )
            members = communities(propagation.labels).localCheckpoint()
            how = "converged" if propagation.converged else "stopped at the iteration limit"
            progress(f"{propagation.iterations} iterations, {how}")
        with stages.stage("summary"):
            q = modularity(graph, members)
            summary = community_summary(members, graph, ratings, movies).localCheckpoint()
            outputs.write(members.select("user_id", "community_id", "community_size", _lit(run_id, "run_id")),
                          tables.USER_COMMUNITIES)
            outputs.write(_with_run(summary, q, run_id), tables.COMMUNITY_SUMMARY)
            largest = [tuple(r) for r in summary.orderBy("community_id").limit(LARGEST_SHOWN).collect()]
            count = summary.count()
            progress(f"{count:,} communities, modularity {q:.3f}")
        seconds = {name: elapsed for name, elapsed, _ in stages.timings}
        outcome = SimilarityOutcome(
            run_id=run_id, vectors=vectors, ratings=input_table.rows, users=users, candidate_pairs=candidate_pairs,
            edges=edges, users_covered=covered, communities=count, modularity=q,
            largest_community_share=largest[0][1] / covered if largest else 0.0,
            iterations=propagation.iterations, converged=propagation.converged, stage_seconds=seconds, largest=largest,
        )
        mlflow.log_metrics(_metrics(outcome))
    return outcome


def _load_movies(spark: SparkSession, table: str, versions: dict[str, int]) -> DataFrame:
    """(movie_id, genres) of the movies table; its version goes into `versions`."""
    from pyspark.sql import functions as F

    movies, versions[table] = read_version(spark, table)
    return movies.select(F.col("movie_id").cast("int"), F.col("genres"))


def _load_factors(spark: SparkSession, versions: dict[str, int]) -> DataFrame:
    """(user_id, features) of the served ranking model; its table's version goes into `versions`."""
    from pyspark.sql import functions as F

    if spark.catalog.tableExists(FACTORS_TABLE):
        snapshot, versions[FACTORS_TABLE] = read_version(spark, FACTORS_TABLE)
        factors = snapshot.where(F.col("model_name") == tracking.RANKING_MODEL).select(
            F.col("user_id").cast("int"), F.col("features")
        ).localCheckpoint()
        if not factors.isEmpty():
            return factors
    raise SystemExit(f"{FACTORS_TABLE} has no {tracking.RANKING_MODEL} factors: "
                     "run `lakehouse train --task ranking` first.")


def _lit(value: str, name: str) -> Column:
    from pyspark.sql import functions as F

    return F.lit(value).alias(name)


def _write_neighbours(neighbours: DataFrame, vectors: str, run_id: str) -> None:
    outputs.write(
        neighbours.select("user_id", "neighbour_id", "rank", "similarity", "co_rated",
                          _lit(vectors, "vectors"), _lit(run_id, "run_id")),
        tables.USER_SIMILARITY,
    )


def _with_run(summary: DataFrame, q: float, run_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    return summary.select("community_id", "size", "internal_edges", "top_genres",
                          F.lit(q).alias("modularity"), _lit(ALGORITHM, "algorithm"), _lit(run_id, "run_id"))


def _metrics(outcome: SimilarityOutcome) -> dict[str, float]:
    figures = {
        "users": outcome.users,
        "candidate_pairs": outcome.candidate_pairs,
        "edges": outcome.edges,
        "users_covered": outcome.users_covered,
        "communities": outcome.communities,
        "modularity": outcome.modularity,
        "largest_community_share": outcome.largest_community_share,
        "label_propagation_iterations": outcome.iterations,
    }
    seconds = {f"seconds_{name}": value for name, value in outcome.stage_seconds.items()}
    return {name: float(value) for name, value in {**figures, **seconds}.items()}


def print_outcome(outcome: SimilarityOutcome) -> None:
    how = "converged" if outcome.converged else "iteration limit"
    rows = [
        ("vectors", outcome.vectors),
        ("ratings / users", f"{outcome.ratings:,} / {outcome.users:,}"),
        ("candidate pairs", f"{outcome.candidate_pairs:,}"),
        ("edges (kNN rows)", f"{outcome.edges:,}"),
        ("users with a neighbour", f"{outcome.users_covered:,} ({outcome.users_covered / max(outcome.users, 1):.1%})"),
        ("communities", f"{outcome.communities:,} ({outcome.iterations} iterations, {how})"),
        ("modularity", f"{outcome.modularity:.3f}"),
        ("largest community", f"{outcome.largest_community_share:.1%} of the users with a neighbour"),
        ("seconds", ", ".join(f"{name} {value:.1f}" for name, value in outcome.stage_seconds.items())),
        ("MLflow run", outcome.run_id),
    ]
    console.print(key_values("User similarity", rows))
    console.print(table(f"Largest communities (of {outcome.communities:,})",
                        ["community", "users", "internal edges", "top genres"], outcome.largest))
