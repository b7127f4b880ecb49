"""dbt with the stream: streamed ratings reach gold, and the live marts follow the stream's tables.

Synthetic micro-batches are written straight into the stream's bronze tables (schemas from
the catalogue, lakehouse/tables.py), as the streaming job would, so this tests the dbt side alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import functions as F

from lakehouse import delta, tables
from lakehouse.dbt_runner import ML_NODES, STREAM_TESTS, run_dbt
from tests.integration.conftest import count, ingest

QUERY_ID = "test-query"


def load_id(batch_id: int) -> str:
    return f"stream-{QUERY_ID}-{batch_id}"


def gold(spark, name: str):
    spark.catalog.refreshTable(f"gold.{name}")  # dbt rewrote it from another session
    return spark.table(f"gold.{name}")


@dataclass(frozen=True)
class Planted:
    """What the synthetic stream holds, for the assertions."""

    rerated: tuple[int, int, float]  # a batch pair re-rated in the stream, later: the new rating
    replayed: tuple[int, int, float]  # a batch pair streamed with an older rating: the batch rating
    uncommitted: tuple[int, int, float]  # a batch pair re-rated by a batch without a ledger row
    new_user: int  # a user known only from the stream
    new_pairs: int  # (user, movie) pairs the batch load does not have
    committed_events: int
    last_hour_events: int
    quarantined: int
    batches: dict[str, tuple[int, int, int]]  # load_id -> (rows_read, rows_accepted, rows_quarantined)


def reset_stream_tables(spark) -> None:
    """Empty stream tables and no stream rows in the quarantine (`ingest --replace` keeps them)."""
    for table in tables.BRONZE_STREAM:
        spark.sql(f"drop table if exists {table.name}")
        delta.create_if_missing(spark, table)
    for batch_id in range(3):
        delta.delete(spark, tables.QUARANTINE, f"load_id = '{load_id(batch_id)}'")


def write_stream(spark) -> Planted:
    """Three micro-batches: one two hours ago, one a minute ago (a re-rating of a batch-loaded pair
    among its ratings, a quarantined line), and one still running (no ledger row)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    batch_rows = (
        spark.table(tables.RATINGS.name)
        .select("user_id", "movie_id", "rating", "epoch_seconds")
        .orderBy("user_id", "movie_id")
        .limit(3)
        .collect()
    )
    a, b, c = batch_rows
    user = a.user_id
    rated_by_user = {r.movie_id for r in spark.table(tables.RATINGS.name).where(F.col("user_id") == user).collect()}
    movie_ids = sorted(r.movie_id for r in spark.table(tables.MOVIES.name).select("movie_id").distinct().collect())
    unrated = next(m for m in movie_ids if m not in rated_by_user)
    new_user = spark.table(tables.RATINGS.name).agg(F.max("user_id")).first()[0] + 1
    m1, m3 = movie_ids[0], movie_ids[2]

    def other(rating: float) -> float:
        return 5.0 if rating != 5.0 else 1.0

    def event(user_id, movie_id, rating, rated_at, source_file, line, batch_id, ingested_at, landed_at):
        return (user_id, movie_id, float(rating), int(rated_at.timestamp()), rated_at, source_file,
                line, landed_at, batch_id, ingested_at, load_id(batch_id))

    def at(epoch_seconds: int) -> datetime:
        return datetime.fromtimestamp(epoch_seconds, timezone.utc)

    t0, t1, t2 = now - timedelta(hours=2), now - timedelta(minutes=1), now - timedelta(seconds=20)
    events = [
        # batch 0, two hours ago: in the last day, not in the last hour
        event(new_user, m3, 4.0, t0 - timedelta(minutes=5), "f0.csv", 1, 0, t0, t0 - timedelta(seconds=3)),
        # batch 1, a minute ago
        event(a.user_id, a.movie_id, other(a.rating), now - timedelta(minutes=2), "f1.csv", 1, 1, t1, t1 - timedelta(seconds=2)),
        event(b.user_id, b.movie_id, other(b.rating), at(b.epoch_seconds) - timedelta(days=1), "f1.csv", 2, 1, t1, t1 - timedelta(seconds=2)),
        event(new_user, m1, 3.0, now - timedelta(minutes=4), "f1.csv", 3, 1, t1, t1 - timedelta(seconds=2)),
        event(user, unrated, 2.0, now - timedelta(minutes=3), "f1.csv", 4, 1, t1, t1 - timedelta(seconds=2)),
        event(new_user, m1, 4.0, now - timedelta(minutes=2), "f2.jsonl", 1, 1, t1, t1 - timedelta(seconds=1)),
        # batch 2, not committed: none of it may show
        event(c.user_id, c.movie_id, other(c.rating), now - timedelta(seconds=30), "f3.csv", 1, 2, t2, t2),
    ]
    files = [
        ("f0.csv", "csv", t0 - timedelta(seconds=3), 20, 1, 1, 0, 0, load_id(0)),
        ("f1.csv", "csv+header", t1 - timedelta(seconds=2), 120, 4, 4, 0, 1, load_id(1)),
        ("f2.jsonl", "jsonl", t1 - timedelta(seconds=1), 90, 2, 1, 1, 1, load_id(1)),
    ]
    batches = [
        (QUERY_ID, 0, 1, 1, 1, 0, t0 - timedelta(seconds=2), t0, t0 + timedelta(seconds=1),
         3.0, 1 / 3.0, 3.0, 3.0, 1, 1.0, load_id(0)),
        (QUERY_ID, 1, 2, 6, 5, 1, t1 - timedelta(seconds=1), t1, t1 + timedelta(seconds=2),
         3.0, 2.0, 2.5, 3.0, 3, 2.0, load_id(1)),
    ]
    quarantine = [("f2.jsonl", 2, '{"user_id": "x"}', "non-numeric id", tables.RATING_EVENTS.name, t1, load_id(1))]

    delta.append(spark.createDataFrame(events, tables.RATING_EVENTS.schema), tables.RATING_EVENTS)
    delta.append(spark.createDataFrame(files, tables.STREAM_FILES.schema), tables.STREAM_FILES)
    delta.append(spark.createDataFrame(quarantine, tables.QUARANTINE.schema), tables.QUARANTINE)
    # The ledger last, as the stream commits.
    delta.append(spark.createDataFrame(batches, tables.STREAM_BATCHES.schema), tables.STREAM_BATCHES)
    return Planted(
        rerated=(a.user_id, a.movie_id, other(a.rating)),
        replayed=(b.user_id, b.movie_id, b.rating),
        uncommitted=(c.user_id, c.movie_id, c.rating),
        new_user=new_user,
        new_pairs=3,  # (new_user, m3), (new_user, m1) rated twice, (user, unrated)
        committed_events=6,
        last_hour_events=5,
        quarantined=1,
        batches={load_id(0): (1, 1, 0), load_id(1): (6, 5, 1)},
    )


@pytest.fixture(scope="module")
def streamed(spark, lakehouse_server, synthetic_100k_layout):
    ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
    reset_stream_tables(spark)
    planted = write_stream(spark)
    yield planted
    # The tests after this module expect bronze without a stream.
    reset_stream_tables(spark)


def rating_of(spark, user_id: int, movie_id: int):
    return gold(spark, "ratings").where((F.col("user_id") == user_id) & (F.col("movie_id") == movie_id)).first()


def test_dbt_build_with_stream(spark, lakehouse_server, streamed: Planted):
    outcome = run_dbt(lakehouse_server, "build", "--exclude", ML_NODES, "--exclude-resource-type", "test",
                      "--exclude-resource-type", "unit_test")
    assert outcome.ok, outcome.failures
    # The tests of what the stream adds (the rest of gold's are test_dbt's, without a stream).
    tested = run_dbt(lakehouse_server, "test", "--select", *STREAM_TESTS, "--exclude", ML_NODES,
                     "--indirect-selection", "empty")
    assert tested.ok, tested.failures

    # gold.ratings: batch and stream together, the latest rating of each pair winning.
    n_batch_pairs = spark.table(tables.RATINGS.name).select("user_id", "movie_id").distinct().count()
    n_ratings = count(spark, "gold.ratings")
    assert n_ratings == n_batch_pairs + streamed.new_pairs
    user_id, movie_id, rating = streamed.rerated
    row = rating_of(spark, user_id, movie_id)
    assert (row.rating, row.rating_source) == (rating, "stream")
    user_id, movie_id, rating = streamed.replayed
    row = rating_of(spark, user_id, movie_id)
    assert (row.rating, row.rating_source) == (rating, "batch")
    user_id, movie_id, rating = streamed.uncommitted
    assert rating_of(spark, user_id, movie_id).rating == rating  # its batch has no ledger row
    sources = {r.rating_source: r["count"] for r in gold(spark, "ratings").groupBy("rating_source").count().collect()}
    assert sources == {"batch": n_batch_pairs - 1, "stream": streamed.new_pairs + 1}

    # Every aggregate derived from ratings includes the stream.
    assert gold(spark, "movies").agg(F.sum("rating_count")).first()[0] == n_ratings
    assert gold(spark, "rating_distribution").agg(F.sum("rating_count")).first()[0] == n_ratings
    assert gold(spark, "users").where(F.col("user_id") == streamed.new_user).first().rating_count == 2
    day_volume = gold(spark, "rating_volume_over_time").where("grain = 'day'").agg(F.sum("rating_count")).first()[0]
    assert day_volume == n_ratings

    # Per-minute counts add up to the committed streamed ratings; quiet minutes are 0.
    per_minute = gold(spark, "streamed_ratings_per_minute")
    assert per_minute.agg(F.sum("rating_count")).first()[0] == streamed.committed_events
    assert per_minute.count() >= 120  # the two batches are two hours apart, every minute between has a row

    # Cumulative volume: the batch load and the stream.
    last = gold(spark, "cumulative_rating_volume").orderBy(F.col("minute_start").desc()).first()
    assert last.cumulative_stream_rating_count == streamed.committed_events
    assert last.cumulative_batch_rating_count == count(spark, tables.RATINGS.name)
    assert last.cumulative_rating_count == count(spark, tables.RATINGS.name) + streamed.committed_events

    # The latest streamed ratings, newest first, with titles; nothing from the uncommitted batch.
    latest = gold(spark, "latest_streamed_ratings").orderBy("recency_rank").collect()
    assert [r.recency_rank for r in latest] == list(range(1, streamed.committed_events + 1))
    assert all(r.title for r in latest)
    assert latest[-1].user_id == streamed.new_user and latest[-1].batch_id == 0
    assert {r.batch_id for r in latest} == {0, 1}

    # Top movies of the last hour and of the last day (every streamed movie fits in the top 10).
    top = {r.period: r for r in gold(spark, "top_streamed_movies").groupBy("period").agg(
        F.sum("rating_count").alias("n"), F.count(F.lit(1)).alias("movies"), F.min("title").alias("title")
    ).collect()}
    assert top["last_hour"].n == streamed.last_hour_events
    assert top["last_day"].n == streamed.committed_events
    assert top["last_hour"].title and top["last_day"].title

    # Stream health: one row per committed batch, its counts and the quarantine agreeing.
    health = {r.load_id: r for r in gold(spark, "stream_health").collect()}
    assert set(health) == set(streamed.batches)
    for batch_load_id, (rows_read, rows_accepted, rows_quarantined) in streamed.batches.items():
        row = health[batch_load_id]
        assert (row.rows_read, row.rows_accepted, row.rows_quarantined) == (rows_read, rows_accepted, rows_quarantined)
        assert row.quarantine_rows == rows_quarantined
        assert row.refresh_latency_max_seconds > 0 and row.committed_minute is not None

    # The quarantine rate per minute: the ledger's lines per committed minute, every minute
    # between the two batches, no rate in a quiet one.
    rates = gold(spark, "stream_quarantine_rate_per_minute")
    totals = rates.agg(F.sum("rows_read"), F.sum("rows_quarantined"), F.sum("batch_count")).first()
    assert tuple(totals) == (7, 1, 2)  # batch 0: 1 read; batch 1: 6 read, 1 quarantined; batch 2 uncommitted
    assert rates.count() >= 120
    assert sorted(r.quarantine_rate for r in rates.where("batch_count > 0").collect()) == pytest.approx([0.0, 1 / 6])
    assert rates.where("batch_count = 0 and quarantine_rate is not null").count() == 0


def test_source_freshness_checks_the_ledgers(lakehouse_server, streamed: Planted):
    from lakehouse.dbt_runner import source_freshness

    outcome = source_freshness(lakehouse_server)
    by_source = {s.source: s for s in outcome.sources}
    assert {"movielens.ratings", "movielens.ingest_log", "stream.rating_events", "stream.stream_batches"} <= set(by_source)
    assert all(s.status == "pass" for s in outcome.sources), outcome.describe()  # loaded minutes ago
    assert outcome.returncode == 0 and outcome.stale == []


def test_a_stale_stream_is_a_warning_not_an_error(spark, lakehouse_server, streamed: Planted):
    from lakehouse.dbt_runner import source_freshness

    spark.sql(f"update {tables.STREAM_BATCHES.name} set committed_at = committed_at - interval 3 hours")
    try:
        outcome = source_freshness(lakehouse_server, "--select", "source:stream.stream_batches")
    finally:
        spark.sql(f"update {tables.STREAM_BATCHES.name} set committed_at = committed_at + interval 3 hours")
    [batches] = outcome.sources
    assert batches.status == "warn" and batches.age_seconds > 3 * 3600 - 600, batches
    assert outcome.returncode == 0  # a warning: `make run` goes on (lakehouse/pipeline.py)
    assert "stream.stream_batches: last load" in outcome.describe() and "(stale)" in outcome.describe()


def test_the_ledger_test_allows_fewer_quarantine_rows_only_once_removed_on_purpose(spark, lakehouse_server,
                                                                                   streamed: Planted):
    """The ledger keeps a batch's counts when the retention policy deletes its quarantine rows:
    assert_stream_batches_match_bronze accepts fewer rows in bronze.quarantine for batches that
    started before the cutoff in governance.retention_log, and still fails a row gone without it."""
    test = "assert_stream_batches_match_bronze"
    [row] = spark.table(tables.QUARANTINE.name).where(F.col("load_id") == load_id(1)).collect()
    [batch] = spark.table(tables.STREAM_BATCHES.name).where(F.col("load_id") == load_id(1)).collect()
    delta.create_if_missing(spark, tables.RETENTION_LOG)
    run_id = "test-retention-of-batch-1"
    delta.delete(spark, tables.QUARANTINE, f"load_id = {delta.quote(load_id(1))}")
    try:
        lost = run_dbt(lakehouse_server, "test", "--select", test)
        assert not lost.ok and any(test in f for f in lost.failures), lost.describe()

        cutoff = batch.started_at + timedelta(seconds=1)  # the row was quarantined before it
        log_row = (run_id, delta.utc_now(), tables.QUARANTINE.name, "90 days (LAKEHOUSE_RETAIN_QUARANTINE_DAYS)",
                   cutoff, 1, "rows", None)
        delta.append(spark.createDataFrame([log_row], tables.RETENTION_LOG.schema), tables.RETENTION_LOG)
        expired = run_dbt(lakehouse_server, "test", "--select", test)
        assert expired.ok, expired.failures
    finally:
        delta.delete(spark, tables.RETENTION_LOG, f"run_id = {delta.quote(run_id)}")
        delta.append(spark.createDataFrame([tuple(row)], tables.QUARANTINE.schema), tables.QUARANTINE)
