"""User similarity and communities on synthetic ratings with planted groups.

Three groups of users each rate their own block of movies with the group's shared taste (plus a
little personal noise), and everyone rates a few common movies with personal opinions. The kNN
graph must link users of a group, and label propagation must recover the groups. Pairs from
different groups co-rate only the common movies: on so few movies their correlation swings to
extremes, which is what shrinkage is for (the job runs with it).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
from collections import Counter

import pytest

from lakehouse import delta

SCHEMA = "similarity_test"  # the synthetic input stays out of gold.*, which other tests rebuild
RATINGS_TABLE = f"{SCHEMA}.ratings"
MOVIES_TABLE = f"{SCHEMA}.movies"
GROUPS = 3
USERS_PER_GROUP = 12
BLOCK_MOVIES = 15  # movies only one group rates
RATED_PER_BLOCK = 12  # of which each user rates this many
COMMON_MOVIES = 6  # movies every user rates
GENRES = ("Comedy", "Drama", "Horror")  # one per group's block
K = 14  # more than a group's 11 other members: some edges must cross groups
SHRINKAGE = 10.0
HEATMAP_USERS = 10


def group_of(user_id: int) -> int:
    return user_id // 100


def planted_ratings(seed: int = 3) -> tuple[list[tuple], list[tuple]]:
    """(ratings rows, movies rows): user ids g*100 + 1..12, block movies g*20 + 1..15, common 901.."""
    rng = random.Random(seed)
    block_taste = {g: [rng.randint(1, 5) for _ in range(BLOCK_MOVIES)] for g in range(GROUPS)}
    common_quality = [rng.randint(2, 4) for _ in range(COMMON_MOVIES)]
    ratings = []
    for g in range(GROUPS):
        for i in range(1, USERS_PER_GROUP + 1):
            user = g * 100 + i
            for m in sorted(rng.sample(range(BLOCK_MOVIES), RATED_PER_BLOCK)):
                noisy = block_taste[g][m] + (rng.choice((-1, 1)) if rng.random() < 0.1 else 0)
                ratings.append((user, g * 20 + m + 1, float(min(5, max(1, noisy)))))
            for c in range(COMMON_MOVIES):
                opinion = common_quality[c] + (rng.choice((-1, 1)) if rng.random() < 0.5 else 0)
                ratings.append((user, 901 + c, float(min(5, max(1, opinion)))))
    movies = [(g * 20 + m + 1, [GENRES[g]]) for g in range(GROUPS) for m in range(BLOCK_MOVIES)]
    movies += [(901 + c, ["Drama", "War"]) for c in range(COMMON_MOVIES)]
    return ratings, movies


@pytest.fixture(scope="module")
def planted_tables(spark):
    ratings, movies = planted_ratings()
    spark.sql(f"create schema if not exists {SCHEMA}")
    frame = spark.createDataFrame(ratings, "user_id int, movie_id int, rating double").selectExpr(
        "*", "timestamp'2020-01-01 00:00:00' as rated_at"
    )
    delta.replace(frame, RATINGS_TABLE)
    delta.replace(spark.createDataFrame(movies, "movie_id int, genres array<string>"), MOVIES_TABLE)
    yield ratings
    spark.sql(f"drop schema if exists {SCHEMA} cascade")


def job_args(*flags: str) -> argparse.Namespace:
    from ml.similarity_job import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--ratings-table", RATINGS_TABLE, "--movies-table", MOVIES_TABLE, *flags])


@pytest.fixture(scope="module")
def outcome(spark, lakehouse_server, planted_tables, tmp_path_factory):
    from ml.similarity_job import print_outcome, run_similarity

    settings = dataclasses.replace(lakehouse_server, mlflow_dir=tmp_path_factory.mktemp("mlflow"))
    args = job_args("--k", str(K), "--shrinkage", str(SHRINKAGE), "--heatmap-users", str(HEATMAP_USERS),
                    "--max-iterations", "10")
    result = run_similarity(spark, settings, args)
    print_outcome(result)
    return result, settings


def table_rows(spark, name: str) -> list:
    spark.catalog.refreshTable(name)
    return spark.table(name).collect()


def test_neighbour_lists_are_top_k_without_self_edges(spark, outcome):
    from ml.similarity import RATING_VECTORS

    result, _ = outcome
    rows = table_rows(spark, "ml.user_similarity")
    assert len(rows) == result.edges > 0
    assert all(r.user_id != r.neighbour_id for r in rows)
    assert all(-1.0 <= r.similarity <= 1.0 for r in rows)
    assert all(r.co_rated >= 5 for r in rows)
    assert {(r.vectors, r.run_id) for r in rows} == {(RATING_VECTORS, result.run_id)}
    ranks: dict[int, list[int]] = {}
    for r in rows:
        ranks.setdefault(r.user_id, []).append(r.rank)
    assert len(ranks) == result.users_covered == GROUPS * USERS_PER_GROUP
    assert all(sorted(found) == list(range(1, len(found) + 1)) and len(found) <= K for found in ranks.values())
    # Similarity is symmetric and decreases with the rank.
    by_pair = {(r.user_id, r.neighbour_id): r.similarity for r in rows}
    assert all(abs(s - by_pair[(v, u)]) < 1e-9 for (u, v), s in by_pair.items() if (v, u) in by_pair)


def test_users_of_a_planted_group_are_each_others_neighbours(spark, outcome):
    rows = table_rows(spark, "ml.user_similarity")
    closest = [r for r in rows if r.rank <= USERS_PER_GROUP - 1]
    assert all(group_of(r.user_id) == group_of(r.neighbour_id) for r in closest)
    # With K above a group's size some edges cross groups, and they rank below the group's own.
    assert any(group_of(r.user_id) != group_of(r.neighbour_id) for r in rows)


def test_label_propagation_recovers_the_planted_groups(spark, outcome):
    result, _ = outcome
    members = {r.user_id: r.community_id for r in table_rows(spark, "ml.user_communities")}
    assert len(members) == GROUPS * USERS_PER_GROUP
    assert result.communities >= 2
    majority = {}
    for g in range(GROUPS):
        labels = [c for u, c in members.items() if group_of(u) == g]
        majority[g] = max(set(labels), key=labels.count)
        assert labels.count(majority[g]) >= 0.8 * USERS_PER_GROUP
    assert len(set(majority.values())) == GROUPS
    assert result.modularity > 0.3


def test_community_tables_agree(spark, outcome):
    result, _ = outcome
    members = table_rows(spark, "ml.user_communities")
    summary = {r.community_id: r for r in table_rows(spark, "ml.community_summary")}
    assert len(summary) == result.communities
    assert sum(r.size for r in summary.values()) == len(members)
    assert all(summary[m.community_id].size == m.community_size for m in members)
    assert {(r.modularity, r.algorithm, r.run_id) for r in summary.values()} == {
        (result.modularity, "label propagation", result.run_id)
    }
    # Each group's block has its own genre; the common movies add Drama and War.
    assert {r.top_genres.split(", ")[0] for r in summary.values() if r.size >= USERS_PER_GROUP - 2} == set(GENRES)
    assert all(0 < len(r.top_genres.split(", ")) <= 3 for r in summary.values())


def test_heatmap_matrix_has_every_pair_of_the_most_active_users(spark, outcome):
    rows = table_rows(spark, "ml.user_similarity_matrix")
    assert len(rows) == HEATMAP_USERS * HEATMAP_USERS
    assert {r.user_position for r in rows} == set(range(1, HEATMAP_USERS + 1))
    assert all(r.similarity == 1.0 for r in rows if r.user_id == r.other_user_id)
    assert all(-1.0 <= r.similarity <= 1.0 for r in rows)
    cells = {(r.user_id, r.other_user_id): r.similarity for r in rows}
    assert all(cells[(u, v)] == cells[(v, u)] for u, v in cells)
    assert all(r.user_position == r.other_user_position for r in rows if r.user_id == r.other_user_id)


def test_mlflow_run_has_the_metrics(outcome):
    import mlflow

    from ml import tracking

    result, settings = outcome
    tracking.configure(settings)
    run = mlflow.get_run(result.run_id)
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == tracking.EXPERIMENTS["similarity"]
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["edges"] == result.edges
    assert metrics["users_covered"] == GROUPS * USERS_PER_GROUP
    assert metrics["communities"] == result.communities
    assert metrics["modularity"] == pytest.approx(result.modularity)
    assert 0 < metrics["largest_community_share"] <= 1
    assert {"seconds_neighbours", "seconds_communities"} <= set(metrics)
    assert run.data.params["k"] == str(K)
    assert run.data.tags["protocol"] == "all ratings"
    assert run.data.tags["input.table"] == RATINGS_TABLE


def test_rater_cap_bounds_pair_generation(spark, planted_tables):
    """With at most 4 raters per movie, each movie emits at most 4 * 3 / 2 pairs, the same ones every time."""
    from pyspark.sql import functions as F

    from ml.similarity import candidate_pair_count, capped_raters, centred_ratings

    ratings = spark.table(RATINGS_TABLE)
    capped = capped_raters(centred_ratings(ratings), max_raters=4, seed=1)
    per_movie = capped.groupBy("movie_id").count().agg(F.max("count")).first()[0]
    assert per_movie == 4
    left, right = capped.alias("a"), capped.alias("b")
    pairs = left.join(right, on="movie_id", how="inner").where(F.col("a.user_id") < F.col("b.user_id")).count()
    raters = Counter(movie for _, movie, _ in planted_tables)
    assert pairs == candidate_pair_count(ratings, 4) == sum(min(r, 4) * (min(r, 4) - 1) // 2 for r in raters.values())
    assert sorted(capped.collect()) == sorted(capped_raters(centred_ratings(ratings), max_raters=4, seed=1).collect())


def test_factor_vectors_score_the_co_rating_candidates(spark, planted_tables):
    """Users of a group share a factor direction: their cosine is 1, across groups 0."""
    from ml.similarity import SimilarityParams, user_neighbours

    users = sorted({row[0] for row in planted_tables})
    factors = spark.createDataFrame(
        [(u, [1.0 if group_of(u) == d else 0.0 for d in range(GROUPS)]) for u in users],
        "user_id int, features array<float>",
    )
    rows = user_neighbours(spark.table(RATINGS_TABLE), SimilarityParams(k=K), factors).collect()
    assert rows and all(group_of(r.user_id) == group_of(r.neighbour_id) for r in rows)  # cross pairs: cosine 0
    assert all(r.similarity == pytest.approx(1.0) for r in rows)


def test_label_propagation_stops_on_isolated_pairs(spark):
    """Two users linked only to each other would swap labels for ever under plain synchronous updates."""
    from ml.communities import communities, label_propagation, modularity

    edges = spark.createDataFrame([(1, 2, 0.9), (3, 4, 0.5), (4, 5, 0.5)], "src int, dst int, weight double")
    result = label_propagation(edges, max_iterations=10)
    assert result.converged
    labels = {r.user_id: r.label for r in result.labels.collect()}
    assert labels == {1: 1, 2: 1, 3: 3, 4: 3, 5: 3}
    q = modularity(edges, communities(result.labels))
    assert q == pytest.approx(1 - (1.8 / 3.8) ** 2 - (2.0 / 3.8) ** 2)
