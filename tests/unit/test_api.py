"""The REST API on a small lakehouse of real Delta tables (written by delta-rs, no Spark): every
endpoint, the search cases, bad input, the title flow, cold start, and the refresh swap."""
from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest
from fastapi.testclient import TestClient

import api_fixtures as fx
from api.app import MAX_BODY_BYTES, create_app
from api.refresh import Live
from lakehouse.settings import Settings


def settings_for(home: Path) -> Settings:
    return Settings(home=home, stream_dir=home / "landing", api_refresh_seconds=0.2, superset_env_file=home / ".env")


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    home = tmp_path_factory.mktemp("api-lake")
    truth = fx.build(home)
    with TestClient(create_app(settings_for(home))) as client:
        yield client, truth, home


def titles(response) -> list[str]:
    return [(r["title"], r["year"]) for r in response.json()["results"]]


@pytest.mark.parametrize("query, wanted", [
    ("toy stroy", ("Toy Story", 1995)),
    ("godfater", ("Godfather, The", 1972)),
    ("star wars 1977", ("Star Wars", 1977)),
    ("amelie", ("Amélie", 2001)),
    ("AMÉLIE", ("Amélie", 2001)),
    ("the matrix", ("Matrix, The", 1999)),
    ("Matrix, The", ("Matrix, The", 1999)),
    ("alein", ("Alien", 1979)),
])
def test_search_finds_the_film_in_the_top_3(lake, query, wanted):
    client, _, _ = lake
    response = client.get("/v1/movies/search", params={"q": query})
    assert response.status_code == 200, response.text
    assert wanted in titles(response)[:3], titles(response)


def test_search_ranks_by_match_quality_then_popularity(lake):
    client, _, _ = lake
    results = client.get("/v1/movies/search", params={"q": "star", "limit": 10}).json()["results"]
    qualities = [r["match_quality"] for r in results]
    assert qualities == sorted(qualities, reverse=True)
    for a, b in zip(results, results[1:]):
        if a["match_quality"] == b["match_quality"]:
            assert a["rating_count"] >= b["rating_count"]
    assert results[0]["display_title"]  # every hit is a full movie record


def test_search_filters_and_pages(lake):
    client, _, _ = lake
    assert titles(client.get("/v1/movies/search", params={"q": "hamlet", "year": 1996})) == [("Hamlet", 1996)]
    comedy = client.get("/v1/movies/search", params={"q": "toy story", "genre": "comedy"}).json()
    assert {r["title"] for r in comedy["results"]} == {"Toy Story", "Toy Story 2"}
    assert client.get("/v1/movies/search", params={"q": "matrix", "genre": "Horror"}).json()["results"] == []
    everything = client.get("/v1/movies/search", params={"q": "star", "limit": 100}).json()
    page = client.get("/v1/movies/search", params={"q": "star", "limit": 2, "offset": 1}).json()
    assert page["total"] == everything["total"] and page["results"] == everything["results"][1:3]


def test_movie_details_and_similar(lake):
    client, truth, _ = lake
    movie = client.get("/v1/movies/3").json()
    assert movie["title"] == "Godfather, The" and movie["display_title"] == "The Godfather" and movie["year"] == 1972
    assert movie["genres"] == ["Crime", "Drama"]
    rated = truth["ratings"].filter(truth["ratings"].column("movie_id").to_numpy() == 3)
    assert movie["rating_count"] == rated.num_rows
    similar = client.get("/v1/movies/3/similar", params={"k": 4}).json()
    assert len(similar["similar"]) == 4 and all(s["movie"]["movie_id"] != 3 for s in similar["similar"])
    sims = [s["similarity"] for s in similar["similar"]]
    assert sims == sorted(sims, reverse=True)


def test_user_recommendations_exclude_seen_and_say_why(lake):
    client, truth, _ = lake
    body = client.get("/v1/users/5/recommendations", params={"k": 5}).json()
    assert body["cold_start"] is False and body["model_name"] == "als-ranking" and body["model_version"] == "1"
    assert body["updated_at"].startswith("2020-01-01")
    ratings = truth["ratings"]
    mine = ratings.filter(ratings.column("user_id").to_numpy() == 5)
    seen = dict(zip(mine.column("movie_id").to_pylist(), mine.column("rating").to_pylist()))
    recs = body["recommendations"]
    assert len(recs) == 5 and not {r["movie"]["movie_id"] for r in recs} & set(seen)
    # The reason: the user's highly rated (>= 4 on 1-5) movie nearest in the item space.
    unit = truth["factors"] / np.linalg.norm(truth["factors"], axis=1, keepdims=True)
    liked = [m for m, r in seen.items() if r >= min(4.0, max(seen.values()))]
    for rec in recs:
        nearest = max(liked, key=lambda m: float(unit[m - 1] @ unit[rec["movie"]["movie_id"] - 1]))
        assert rec["because"]["movie_id"] == nearest
        assert rec["reason"] == f"because you rated {truth['titles'][nearest - 1]} {seen[nearest]:g}"


def test_a_user_the_model_never_saw_gets_the_cold_start_list(lake):
    client, _, _ = lake
    body = client.get("/v1/users/4242/recommendations", params={"k": 3}).json()
    assert body["cold_start"] is True and body["model_version"] is None
    scores = [r["movie"]["bayesian_rating"] for r in body["recommendations"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_title_flow(lake):
    client, _, _ = lake
    body = client.get("/v1/recommendations", params={"title": "star wars", "k": 5})
    assert body.status_code == 200, body.text
    found = body.json()
    assert found["movie"]["title"] == "Star Wars" and "log2" in found["scoring"]
    assert found["recommendations"] and all(r["movie"]["movie_id"] != 5 for r in found["recommendations"])
    scores = [r["score"] for r in found["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    ambiguous = client.get("/v1/recommendations", params={"title": "hamlet"})
    assert ambiguous.status_code == 300
    assert {(c["title"], c["year"]) for c in ambiguous.json()["candidates"]} >= {("Hamlet", 1990), ("Hamlet", 1996)}
    assert client.get("/v1/recommendations", params={"title": "hamlet", "year": 1996}).json()["movie"]["year"] == 1996
    assert client.get("/v1/recommendations", params={"title": "qqqqqq zzzzzz"}).status_code == 404


def test_neighbours(lake):
    client, _, _ = lake
    body = client.get("/v1/users/7/neighbours", params={"k": 3}).json()
    assert [n["rank"] for n in body["neighbours"]] == [1, 2, 3]
    assert all(n["user_id"] != 7 for n in body["neighbours"])
    assert client.get("/v1/users/4242/neighbours").status_code == 404


@pytest.mark.parametrize("url", [
    "/v1/movies/0", "/v1/movies/-3", "/v1/movies/abc", "/v1/movies/99999999999", "/v1/users/x/recommendations",
    "/v1/users/1/recommendations?k=0", "/v1/users/1/recommendations?k=101", "/v1/movies/1/similar?k=1000",
    "/v1/movies/search?q=", "/v1/movies/search?q=%20%20%09", f"/v1/movies/search?q={'a' * 201}",
    "/v1/movies/search", "/v1/movies/search?q=toy&limit=0", "/v1/recommendations?title=",
    # pydantic's lax int would read these as 7, 10 and 7; the schema says integer
    "/v1/movies/50/similar?k=7%0C", "/v1/movies/50/similar?k=1_0", "/v1/users/1/recommendations?k=%2B7",
    "/v1/movies/%2050", "/v1/movies/search?q=toy&year=1995%20",
])
def test_malformed_input_is_a_422_with_a_message(lake, url):
    client, _, _ = lake
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]


def test_a_query_of_only_punctuation_finds_nothing(lake):
    client, _, _ = lake
    assert client.get("/v1/movies/search", params={"q": "?!"}).json()["results"] == []
    assert client.get("/v1/recommendations", params={"title": "?!"}).status_code == 404


def test_unknown_movie_is_a_404(lake):
    client, _, _ = lake
    response = client.get("/v1/movies/9999")
    assert response.status_code == 404 and "9999" in response.json()["detail"]


def inbox(home: Path) -> list[Path]:
    folder = settings_for(home).stream_inbox_dir
    return sorted(folder.iterdir()) if folder.exists() else []


def test_post_ratings_lands_one_file_in_the_inbox(lake):
    client, _, home = lake
    before = inbox(home)
    one = client.post("/v1/ratings", json={"user_id": 5, "movie_id": 2, "rating": 4})
    assert one.status_code == 202, one.text
    batch = client.post("/v1/ratings", json={"ratings": [
        {"user_id": 9000, "movie_id": 1, "rating": 5.0, "timestamp": 1_600_000_000},
        {"user_id": 9000, "movie_id": 3, "rating": 2}]})
    assert batch.status_code == 202 and batch.json()["ratings"] == 2
    landed = [p for p in inbox(home) if p not in before]
    assert sorted(p.name for p in landed) == sorted([one.json()["file"], batch.json()["file"]])
    text = (settings_for(home).stream_inbox_dir / batch.json()["file"]).read_text()
    assert text == "user_id,movie_id,rating,timestamp\n9000,1,5.0,1600000000\n9000,3,2.0," + text.rsplit(",", 1)[1]
    assert batch.json()["event_id"] in batch.json()["file"]


@pytest.mark.parametrize("body, status, says", [
    ({"user_id": 5, "movie_id": 2, "rating": 4.5}, 422, "rating '4.5' is off the 1-5 scale (step 1)"),
    ({"user_id": 5, "movie_id": 999, "rating": 4}, 422, "movie_id 999 is not in the movie catalogue"),
    ({"user_id": 5, "movie_id": 2, "rating": 4, "timestamp": 100}, 422, "timestamp 100 is before 1995-01-01"),
    ({"user_id": 5, "movie_id": 2, "rating": 4, "timestamp": 4_000_000_000}, 422, "is in the future"),
    ({"user_id": 5, "movie_id": 2, "rating": 4, "comment": "hi"}, 422, "Extra inputs are not permitted"),
    ({"user_id": 0, "movie_id": 2, "rating": 4}, 422, "greater than 0"),
    ({"user_id": "five", "movie_id": 2, "rating": 4}, 422, "must be a JSON number"),
    ({"ratings": []}, 422, "at least 1"),
    ({"ratings": [{"user_id": 5, "movie_id": 2, "rating": 4}] * 1001}, 422, "at most 1000"),
])
def test_a_rating_the_stream_would_reject_is_refused_and_nothing_lands(lake, body, status, says):
    client, _, home = lake
    before = inbox(home)
    response = client.post("/v1/ratings", json=body)
    assert response.status_code == status, response.text
    assert says in response.text
    assert inbox(home) == before


def test_bodies_over_the_limit_and_without_a_length_are_refused(lake):
    client, _, home = lake
    before = inbox(home)
    huge = b'{"ratings": [' + b" " * MAX_BODY_BYTES + b"]}"
    assert client.post("/v1/ratings", content=huge, headers={"content-type": "application/json"}).status_code == 413
    chunked = client.post("/v1/ratings", content=iter([b'{"user_id": 1, ', b'"movie_id": 1, "rating": 4}']),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 411
    assert client.post("/v1/ratings", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert inbox(home) == before


def test_ready_reports_versions_and_data_age(lake):
    client, _, _ = lake
    body = client.get("/ready").json()
    assert body["ready"] is True and body["model_version"] == "1"
    assert body["tables"]["ml.recommendations"] == 0 and body["tables"]["gold.movies"] == 0
    assert body["updated_at"].startswith("2020-01-01") and body["movies"] == 60 and body["users"] == fx.USERS
    assert client.get("/health").json() == {"status": "ok"}


def test_nothing_to_serve_is_a_503_until_the_tables_exist(tmp_path):
    with TestClient(create_app(settings_for(tmp_path))) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "gold.movies does not exist yet" in ready.json()["detail"]
        assert client.get("/v1/movies/1").status_code == 503
        assert client.get("/health").status_code == 200


def test_a_new_champion_and_a_fold_in_are_served_without_restart_and_no_request_fails(tmp_path):
    truth = fx.build(tmp_path)
    live = Live(tmp_path / "warehouse", poll_seconds=0.05)
    failures, stop = [], threading.Event()
    answers: list[list[str]] = [[], []]  # the model versions each client saw, in order
    with TestClient(create_app(settings_for(tmp_path), live=live)) as client:
        def hammer(seen: list[str]):
            while not stop.is_set():
                response = client.get("/v1/users/5/recommendations")
                if response.status_code != 200 or not response.json()["recommendations"]:
                    failures.append((response.status_code, response.text))
                else:
                    seen.append(response.json()["model_version"])
        threads = [threading.Thread(target=hammer, args=(seen,)) for seen in answers]
        for t in threads:
            t.start()
        try:
            first = live.refreshes
            # A new champion: new item factors and recommendations (model version 2).
            factors = np.random.default_rng(2).normal(size=truth["factors"].shape).astype(np.float32)
            fx.write("ml.item_factors", tmp_path, fx.item_factors(truth["ids"], factors, "als-ranking", "2"))
            fx.write("ml.recommendations", tmp_path,
                     fx.recommendations(truth["ratings"], truth["ids"], factors, "2", fx.T0 + timedelta(days=1)))
            wait_for(lambda: client.get("/ready").json()["model_version"] == "2")
            assert live.refreshes > first
            # A fold-in: user 5 rates a movie (a stream event) and gets a new list, updated_at later.
            top = client.get("/v1/users/5/recommendations").json()["recommendations"][0]["movie"]["movie_id"]
            folded_at = fx.T0 + timedelta(days=2)
            fx.write("bronze.rating_events", tmp_path, fx.rating_events([(5, top, 5.0, folded_at)]), mode="append")
            wait_for(lambda: top not in {r["movie"]["movie_id"] for r in
                                         client.get("/v1/users/5/recommendations").json()["recommendations"]})
            # One commit, as the fold-in's MERGE is: user 5's list replaced, everyone else's kept.
            before = fx.recommendations(truth["ratings"], truth["ids"], factors, "2", fx.T0 + timedelta(days=1))
            others = before.filter(pa.compute.not_equal(before.column("user_id"), 5))
            mine = fx.recommendations(truth["ratings"], truth["ids"], factors, "2", folded_at, users=[5])
            fx.write("ml.recommendations", tmp_path, pa.concat_tables([others, mine]))
            wait_for(lambda: client.get("/v1/users/5/recommendations").json()["updated_at"].startswith("2020-01-03"))
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert not failures, failures[:3]
    for seen in answers:
        # The model version moved once, forward: never back to an older snapshot.
        assert seen[0] == "1" and seen[-1] == "2"
        assert sum(a != b for a, b in zip(seen, seen[1:])) == 1


def wait_for(condition, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_stream_batch_rereads_only_the_tables_it_changed(tmp_path):
    from api import catalog

    fx.build(tmp_path)
    first = catalog.load(tmp_path / "warehouse")
    fx.write("bronze.rating_events", tmp_path, fx.rating_events([(5, 1, 5.0, fx.T0 + timedelta(days=3))]), mode="append")
    second = catalog.load(tmp_path / "warehouse", first)
    assert second.versions["bronze.rating_events"] == first.versions["bronze.rating_events"] + 1
    assert second.ratings is first.ratings and second.index is first.index and second.recommendations is first.recommendations
    assert second.events is not first.events
    movies, ratings = second.user_ratings(5)
    assert dict(zip(movies.tolist(), ratings.tolist()))[1] == 5.0  # the streamed rating wins over gold's
    assert {k: v for k, v in second.versions.items() if k != "bronze.rating_events"} == \
        {k: v for k, v in first.versions.items() if k != "bronze.rating_events"}


def test_a_fold_in_cold_start_list_is_served_as_one(tmp_path):
    """A new user with too few ratings gets the fold-in's cold-start list: not the champion's."""
    truth = fx.build(tmp_path)
    cold = fx.recommendations(truth["ratings"], truth["ids"], truth["factors"], "1", fx.T0, users=[777])
    cold = cold.set_column(cold.schema.get_field_index("model_name"), "model_name",
                           pa.array(["cold-start: popular in the user's first genres"] * cold.num_rows))
    fx.write("ml.recommendations", tmp_path, cold, mode="append")
    with TestClient(create_app(settings_for(tmp_path))) as client:
        body = client.get("/v1/users/777/recommendations").json()
        assert body["cold_start"] is True and body["model_name"].startswith("cold-start")
        assert body["model_version"] is None and body["recommendations"]
        champion = client.get("/v1/users/5/recommendations").json()
        assert champion["cold_start"] is False and champion["model_name"] == "als-ranking"


def test_delete_user_needs_the_admin_token_and_starts_one_erasure(tmp_path):
    from lakehouse import secrets

    fx.build(tmp_path)
    settings = settings_for(tmp_path)
    started: list[int] = []

    def erase(_, user_id: int):
        started.append(user_id)
        return "r1", tmp_path / "logs" / "erasure-r1.log"

    with TestClient(create_app(settings, erase=erase)) as client:
        token = secrets.admin_token(settings)
        assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token},
                        {"Authorization": f"Basic {token}"}):
            response = client.delete("/v1/users/7", headers=headers)
            assert response.status_code == 401 and "admin token" in response.json()["detail"], headers
        assert started == []
        assert client.delete("/v1/users/0", headers={"Authorization": f"Bearer {token}"}).status_code == 422
        response = client.delete("/v1/users/7", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202, response.text
        assert response.json()["request_id"] == "r1" and response.json()["user_id"] == 7
        assert started == [7]
