"""POST /v1/ratings to a recommendation, through the real stream: the API (in process, its
lifespan and polling refresh running) writes the ratings into the stream's inbox, the stream
(its own process, fold-in on) lands them in bronze.rating_events and folds the user in, and the
API then serves the user's rewritten list. A rating the stream would reject is refused (422)
and writes nothing.

On the synthetic ml-100k layout with dbt's gold and a quick ranking champion (served_lakehouse).
"""
from __future__ import annotations

import re
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from pyspark.sql import functions as F

from api.app import create_app
from lakehouse import tables
from lakehouse.stream import job
from lakehouse.stream.showcase import committed_rows
from tests.integration.conftest import fresh
from tests.integration.helpers import fresh_stream, log_since, log_size, wait_for
from tests.integration.test_dbt_stream import reset_stream_tables

pytestmark = pytest.mark.integration

VALID_TS = 1_600_000_000  # 2020-09-13


@pytest.fixture(scope="module")
def api(spark, served_lakehouse, tmp_path_factory):
    """(client, settings, stream log offset): the stream detached with the fold-in, on a landing
    folder of its own, and the API in process on the same settings (the same inbox)."""
    settings = fresh_stream(served_lakehouse, tmp_path_factory.mktemp("api-stream-landing"))
    log_offset = log_size(settings.stream_log)
    job.detach(settings, fold_in=True, timeout=300)
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/ready").json()["ready"] is True
            yield client, settings, log_offset
    finally:
        job.stop(settings)
        reset_stream_tables(spark)  # later modules expect bronze without a stream


def inbox_files(settings) -> set[str]:
    """Every file the API has written for the stream: in the inbox, or archived once read."""
    return {p.name for folder in (settings.stream_inbox_dir, settings.stream_archive_dir) if folder.exists()
            for p in folder.rglob("api-*")}


def a_listed_user(spark) -> int:
    """A user with a list from the champion (not a cold-start one)."""
    recommendations = fresh(spark, tables.RECOMMENDATIONS.name).where(F.col("model_name") == "als-ranking")
    return recommendations.agg(F.min("user_id")).first()[0]


def unrated_movies(spark, client, user: int, n: int) -> tuple[list[int], str]:
    """The top 3 of the user's served list and more movies of the catalogue they have not
    rated: n in all; and the list's updated_at."""
    body = client.get(f"/v1/users/{user}/recommendations", params={"k": 100}).json()
    assert body["cold_start"] is False and body["model_name"] == "als-ranking" and body["updated_at"], body
    top = [r["movie"]["movie_id"] for r in body["recommendations"][:3]]
    rated = {r.movie_id for table in (tables.GOLD_RATINGS, tables.RATING_EVENTS)
             for r in fresh(spark, table.name).where(F.col("user_id") == user).select("movie_id").collect()}
    catalogue = sorted(r.movie_id for r in fresh(spark, tables.MOVIES.name).select("movie_id").collect())
    others = [m for m in catalogue if m not in rated and m not in top][-(n - len(top)):]
    return top + others, body["updated_at"]


def test_a_posted_rating_reaches_bronze_and_the_user_s_recommendations(spark, api):
    client, settings, log_offset = api
    user = a_listed_user(spark)
    movies, updated_before = unrated_movies(spark, client, user, 6)
    ready_before = client.get("/ready").json()
    values = [5.0, 5.0, 4.0, 1.0, 3.0, 2.0]  # the synthetic set is ml-100k shaped: whole stars, 1-5
    ratings = [{"user_id": user, "movie_id": m, "rating": v, **({"timestamp": VALID_TS + i} if i % 2 else {})}
               for i, (m, v) in enumerate(zip(movies, values))]
    posted_at = datetime.now().timestamp()

    response = client.post("/v1/ratings", json={"ratings": ratings})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", accepted["event_id"]), accepted
    assert accepted["file"] == f"api-{accepted['event_id']}.csv" and accepted["ratings"] == len(ratings)
    name = accepted["file"]
    assert name in inbox_files(settings)

    # The stream commits the file's batch; its ledger row is written after the fold-in.
    def committed() -> bool:
        for table in (tables.STREAM_FILES, tables.STREAM_BATCHES):
            spark.catalog.refreshTable(table.name)
        return committed_rows(spark, {name}) == len(ratings)

    wait_for(committed, 300, f"the stream to commit {name}")
    log = log_since(settings.stream_log, log_offset)
    assert "fold-in: merging" in log, log[-3000:]

    # bronze.rating_events holds exactly the posted ratings, from that file (the header is line 1).
    events = fresh(spark, tables.RATING_EVENTS.name).where(F.col("source_file") == name).collect()
    assert sorted((e.user_id, e.movie_id, e.rating) for e in events) == sorted(
        (user, m, v) for m, v in zip(movies, values))
    assert sorted(e.line_number for e in events) == list(range(2, len(ratings) + 2))
    assert {e.load_id.rsplit("-", 1)[0] for e in events} == {f"{tables.STREAM_LOAD_PREFIX}{job.stream_id(settings)}"}
    for event in events:
        posted = ratings[event.line_number - 2]
        if "timestamp" in posted:
            assert event.epoch_seconds == posted["timestamp"]
        else:  # "now" when the API took the request
            assert posted_at - 5 <= event.epoch_seconds <= datetime.now().timestamp()

    # The fold-in rewrote the user's list in ml.recommendations without the movies just rated.
    rows = fresh(spark, tables.RECOMMENDATIONS.name).where(F.col("user_id") == user).collect()
    assert rows and not {r.movie_id for r in rows} & set(movies)

    # The API's poll sees the new versions and serves the new list.
    def served():
        body = client.get(f"/v1/users/{user}/recommendations", params={"k": 100}).json()
        return body if body["updated_at"] != updated_before else None

    body = wait_for(served, 60, "the API to serve the folded-in list", step=0.5)
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(updated_before)
    assert body["cold_start"] is False and body["recommendations"]
    listed = [r["movie"]["movie_id"] for r in body["recommendations"]]
    assert not set(listed) & set(movies)
    assert listed == [r.movie_id for r in sorted(rows, key=lambda r: r.rank)][:len(listed)]
    ready = client.get("/ready").json()
    for table in (tables.RATING_EVENTS, tables.RECOMMENDATIONS):
        assert ready["tables"][table.name] > ready_before["tables"][table.name], (ready_before, ready)


def test_a_new_user_s_first_ratings_get_a_cold_start_list_said_to_be_one(spark, api):
    """Fewer ratings than the fold-in needs (ml/refresh.py: MIN_RATINGS): the fold-in writes the
    newcomer a cold-start list (popular in their genres), which the API then serves."""
    from ml.refresh import COLD_START_MODEL, MIN_RATINGS

    client, settings, _ = api
    newcomer = max(fresh(spark, t.name).agg(F.max("user_id")).first()[0] or 0
                   for t in (tables.GOLD_RATINGS, tables.RATING_EVENTS)) + 1000
    before = client.get(f"/v1/users/{newcomer}/recommendations").json()
    assert before["cold_start"] is True and before["updated_at"] is None, before
    ratings = [{"user_id": newcomer, "movie_id": m, "rating": 5.0} for m in (1, 2)][:MIN_RATINGS - 1]
    response = client.post("/v1/ratings", json={"ratings": ratings})
    assert response.status_code == 202, response.text
    name = response.json()["file"]

    def committed() -> bool:
        for table in (tables.STREAM_FILES, tables.STREAM_BATCHES):
            spark.catalog.refreshTable(table.name)
        return committed_rows(spark, {name}) == len(ratings)

    wait_for(committed, 300, f"the stream to commit {name}")
    rows = fresh(spark, tables.RECOMMENDATIONS.name).where(F.col("user_id") == newcomer).collect()
    assert rows and {r.model_name for r in rows} == {COLD_START_MODEL}
    body = wait_for(lambda: (b := client.get(f"/v1/users/{newcomer}/recommendations").json())["updated_at"] and b,
                    60, "the API to serve the newcomer's list", step=0.5)
    listed = [r["movie"]["movie_id"] for r in body["recommendations"]]
    assert listed == [r.movie_id for r in sorted(rows, key=lambda r: r.rank)] and not {1, 2} & set(listed)
    assert body["cold_start"] is True and body["model_name"] == COLD_START_MODEL


@pytest.mark.parametrize("rating, says", [
    ({"rating": 4.5}, "rating '4.5' is off the 1-5 scale (step 1)"),
    ({"rating": 0.0}, "rating '0.0' is off the 1-5 scale (step 1)"),
    ({"movie_id": 99_999}, "movie_id 99999 is not in the movie catalogue (bronze.movies)"),
    ({"timestamp": 700_000_000}, "timestamp 700000000 is before 1995-01-01"),
    ({"timestamp": 4_000_000_000}, "timestamp 4000000000 is in the future"),
])
def test_a_rating_the_stream_would_reject_is_a_422_and_writes_nothing(spark, api, rating, says):
    client, settings, _ = api
    good = {"user_id": a_listed_user(spark), "movie_id": 1, "rating": 4.0}  # the synthetic movies are 1..400
    before = inbox_files(settings)
    for body, where in (({**good, **rating}, ["body"]),
                        ({"ratings": [good, {**good, **rating}]}, ["body", "ratings", 1])):  # one bad in a batch
        response = client.post("/v1/ratings", json=body)
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"] == where and problem["type"] == "stream_rule", problem
        assert f"the stream would reject this rating: {says}" in problem["msg"], problem
        assert problem["msg"].endswith("nothing was written")
    assert inbox_files(settings) == before
