"""End to end on the real MovieLens 100K (when the shared copy is present): what `make run` does."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lakehouse.pipeline import REPLAYED_RATINGS, run_pipeline
from tests.integration.conftest import count, fresh, pipeline_built


@pytest.fixture(scope="module", autouse=True)
def stop_the_services_afterwards(lakehouse_server):
    """The pipeline leaves the stream, the API and the MLflow UI running, as `make run` does; later
    modules start their own stream, and no later module needs the others (the API would reload
    every table each of them rewrites, beside their work)."""
    yield
    from lakehouse import api_service, mlflow_ui
    from lakehouse.stream import job

    job.stop(lakehouse_server)
    api_service.down(lakehouse_server)
    mlflow_ui.down(lakehouse_server)


def test_make_run_pipeline_on_ml_100k(spark, lakehouse_server, shared_ml_100k, capsys):
    from lakehouse.ingest.load import drop_bronze

    drop_bronze(spark)
    assert run_pipeline(lakehouse_server, "ml-100k", shared_ml_100k) == 0
    out = capsys.readouterr().out
    assert "every dbt test passed" in out and "read = loaded + quarantined" in out
    assert "Champions beside the baselines" in out
    # The latest 10% by time are held out of the load; the stream stage replays 1,000 of them.
    assert count(spark, "bronze.ratings") == 90_000
    assert count(spark, "bronze.quarantine") == 0
    assert count(spark, "bronze.rating_events") == REPLAYED_RATINGS
    assert count(spark, "gold.ratings") == 90_000 + REPLAYED_RATINGS  # gold has batch and streamed ratings
    assert count(spark, "gold.movies") == 1682
    top = spark.table("gold.top_movies_by_count").orderBy("rank").first()
    assert top.title == "Star Wars" and 500 < top.rating_count <= 583  # 583 with every rating
    assert "recommendations changed" in out

    # The recommender stages: champions registered, every ml table filled, the UI serving.
    import urllib.request

    import mlflow

    from lakehouse import mlflow_ui
    from ml import tracking

    client = tracking.configure(lakehouse_server)
    for name in (tracking.RATING_MODEL, tracking.RANKING_MODEL):
        assert client.get_model_version_by_alias(name, tracking.CHAMPION)
    champion = mlflow.search_runs(experiment_names=[tracking.EXPERIMENTS["rating"]], filter_string="tags.champion = 'true'")
    assert champion["metrics.rmse"].iloc[0] < 0.93  # plain ALS gets ~0.93 on a random 20% holdout
    for table in ("recommendations", "predictions", "user_factors", "item_factors", "similar_movies", "model_runs",
                  "user_similarity", "user_similarity_matrix", "user_communities", "community_summary"):
        assert count(spark, f"ml.{table}") > 0, table
    recommended_users = fresh(spark, "ml.recommendations").select("user_id").distinct().count()
    # Users whose every rating is in the held-out latest 10% were not trained on: no list yet.
    assert count(spark, "ml.recommendations") == recommended_users * 10 and recommended_users > 800
    with urllib.request.urlopen(mlflow_ui.url(lakehouse_server) + "/health", timeout=10) as response:
        assert response.status == 200
    pipeline_built(lakehouse_server)  # test_superset reads this lakehouse next


def test_the_api_serves_ml_100k(spark, lakehouse_server, shared_ml_100k):
    """The REST API the pipeline left running (`lakehouse api up`, on LAKEHOUSE_API_PORT), over
    HTTP: typo-tolerant search, "people who liked this title", an ambiguous title, a stranger."""
    import httpx
    from pyspark.sql import functions as F

    from lakehouse import api_service, tables

    assert (api_service.readiness(lakehouse_server) or {}).get("ready") is True, "the pipeline left no API up"
    with httpx.Client(base_url=api_service.url(lakehouse_server), timeout=30) as client:
        ready = client.get("/ready").json()
        assert ready["ready"] is True and ready["movies"] == 1682, ready

        def top3(query: str) -> list[tuple[str, int]]:
            response = client.get("/v1/movies/search", params={"q": query, "limit": 3})
            assert response.status_code == 200, response.text
            return [(hit["title"], hit["year"]) for hit in response.json()["results"]]

        assert ("Toy Story", 1995) in top3("toy stroy")
        assert ("Godfather, The", 1972) in top3("godfater")
        assert top3("star wars 1977")[0] == ("Star Wars", 1977)

        response = client.get("/v1/recommendations", params={"title": "star wars"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["movie"]["movie_id"] == 50 and body["liked_by"] > 100
        recommended = [r["movie"]["movie_id"] for r in body["recommendations"]]
        assert len(recommended) == 10 and 50 not in recommended

        # ml-100k has two Cape Fears (1962, 1991): the bare title asks which.
        response = client.get("/v1/recommendations", params={"title": "cape fear"})
        assert response.status_code == 300, response.text
        candidates = {(c["movie_id"], c["year"]) for c in response.json()["candidates"]}
        assert {(673, 1962), (218, 1991)} <= candidates
        response = client.get("/v1/recommendations", params={"title": "cape fear", "year": 1962})
        assert response.status_code == 200 and response.json()["movie"]["movie_id"] == 673

        stranger = 6000  # ml-100k's users are 1..943; the stream tests here use 5000
        for table in (tables.GOLD_RATINGS, tables.RATING_EVENTS, tables.RECOMMENDATIONS):
            assert fresh(spark, table.name).where(F.col("user_id") == stranger).count() == 0, table.name
        body = client.get(f"/v1/users/{stranger}/recommendations").json()
        assert body["cold_start"] is True and body["model_name"] is None and len(body["recommendations"]) == 10


def genre_share(spark, user_id: int, genre: str) -> float:
    """The share of `genre` in the user's served top 10."""
    from pyspark.sql import functions as F

    recs = fresh(spark, "ml.recommendations").where(F.col("user_id") == user_id).join(spark.table("gold.movies"), "movie_id")
    rows = recs.select(F.array_contains("genres", genre).alias("hit")).collect()
    assert len(rows) == 10
    return sum(r.hit for r in rows) / len(rows)


def wait_until_committed(spark, settings, name: str, timeout: float = 180.0) -> None:
    from lakehouse.stream.showcase import committed_rows

    deadline = time.monotonic() + timeout
    while committed_rows(spark, {name}) == 0:
        assert time.monotonic() < deadline, f"{name} was not committed by the stream"
        time.sleep(1.0)


def genre_lift(spark, user_id: int, genre: str) -> float:
    """How much higher the champion scores the user's unseen movies of `genre` than their unseen
    movies overall (in standard deviations), from the user's ratings as the stream sees them."""
    import numpy as np

    from ml.refresh import load_state, users_ratings

    state = load_state(spark)
    rated = users_ratings(spark, [user_id])[user_id]
    vector = state.model.user_vector(np.array([m for m, _ in rated]), np.array([r for _, r in rated]))
    scores = state.model.factors @ vector
    genres = {r.movie_id: set(r.genres or ()) for r in spark.table("gold.movies").select("movie_id", "genres").collect()}
    seen = {m for m, _ in rated}
    unseen = np.array([int(m) not in seen for m in state.model.movie_ids])
    in_genre = np.array([genre in genres.get(int(m), set()) for m in state.model.movie_ids])
    return float((scores[unseen & in_genre].mean() - scores[unseen].mean()) / scores[unseen].std())


def test_rating_one_genre_moves_recommendations_toward_it(spark, lakehouse_server, shared_ml_100k):
    """The stream `make run` left running folds new ratings in: a user who rates ten horror movies
    has their list rewritten, and the champion now ranks horror higher for them."""
    from pyspark.sql import functions as F

    from lakehouse.stream.replay import Rating, replay

    # A light user (20-30 ratings), so that ten new ratings are a real share of their history.
    recommended = fresh(spark, "ml.recommendations").select("user_id").distinct()
    user = (spark.table("gold.ratings").join(recommended, "user_id").groupBy("user_id").count()
            .where("count between 20 and 30").orderBy("count", "user_id").first().user_id)
    seen = {r.movie_id for r in spark.table("gold.ratings").where(F.col("user_id") == user).select("movie_id").collect()}
    horror = [r.movie_id for r in spark.table("gold.movies").where(F.array_contains("genres", "Horror"))
              .orderBy(F.desc("rating_count")).collect() if r.movie_id not in seen][:10]
    before = genre_lift(spark, user, "Horror")
    report = replay(lakehouse_server, source=[Rating(user, m, 5.0, 0) for m in horror], burst=True)
    wait_until_committed(spark, lakehouse_server, report.files[0].name)
    after = genre_lift(spark, user, "Horror")
    assert after > before + 0.3, (before, after)
    rows = fresh(spark, "ml.recommendations").where(F.col("user_id") == user).collect()
    assert len(rows) == 10 and not {r.movie_id for r in rows} & set(horror)  # rewritten, rated ones excluded
    assert min(r.updated_at for r in rows) > max(r.generated_at for r in rows)


def test_a_brand_new_user_gets_a_cold_start_list_in_their_genres(spark, lakehouse_server, shared_ml_100k):
    from pyspark.sql import functions as F

    from lakehouse.stream.replay import Rating, replay
    from ml.refresh import COLD_START_MODEL

    newcomer = 5000
    westerns = [r.movie_id for r in spark.table("gold.movies").where(F.array_contains("genres", "Western"))
                .orderBy(F.desc("rating_count")).limit(2).collect()]
    report = replay(lakehouse_server, source=[Rating(newcomer, m, 5.0, 0) for m in westerns], burst=True)
    wait_until_committed(spark, lakehouse_server, report.files[0].name)
    recs = fresh(spark, "ml.recommendations").where(F.col("user_id") == newcomer).collect()
    assert len(recs) == 10 and {r.model_name for r in recs} == {COLD_START_MODEL}
    assert not {r.movie_id for r in recs} & set(westerns)  # nothing they rated
    assert genre_share(spark, newcomer, "Western") >= 0.5


# ---- the right to erasure, on everything the pipeline and the tests above left -----------------

def _scan_for(settings, user_id: int) -> list[str]:
    """An independent byte-level scan (not the erasure's own bookkeeping): every Parquet file
    under the warehouse and the MLflow artifacts, read directly (no Delta log, no deletion
    vector), and every text file of the landing folders, the holdout and the artifacts, line by
    line. Returns where a record of the user was found."""
    import json
    import re

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    found = []
    leading = re.compile(rf'^\s*"?{user_id}"?\s*(\t|,|\||::)')

    def text_hit(line: str) -> bool:
        if leading.search(line):
            return True
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                return False
            return isinstance(record, dict) and str(record.get("user_id", record.get("userId"))) == str(user_id)
        return False

    def parquet_columns(path) -> list[str]:
        names = pq.read_schema(path).names
        users = [c for c in names if c in ("user_id", "other_user_id")]
        if "neighbour_id" in names and ("user_similarity" in str(path) or "user_id" in names):
            users.append("neighbour_id")  # a user-based neighbour list (an item model's are movies)
        if "id" in names and path.name.endswith("users.parquet"):
            users.append("id")  # ALS's user factors
        return users

    for root in (settings.warehouse_dir, settings.artifacts_dir):
        for path in root.rglob("*.parquet"):
            if "_delta_log" in path.parts:
                continue
            table = pq.read_table(path)
            for column in parquet_columns(path):
                if pc.sum(pc.equal(table[column], user_id)).as_py():
                    found.append(f"{path} ({column})")
            if "raw_line" in table.column_names and any(text_hit(v) for v in table["raw_line"].to_pylist() if v):
                found.append(f"{path} (raw_line)")
    for root in (settings.stream_dir, settings.stream_inbox_dir.parent, settings.stream_archive_dir,
                 settings.stream_dead_letter_dir, settings.holdout_dir, settings.artifacts_dir):
        for path in root.rglob("*") if root.is_dir() else ():
            if path.is_file() and path.suffix != ".parquet" and path.stat().st_size < 50_000_000:
                text = path.read_bytes().decode("latin-1")
                if any(text_hit(line) for line in text.splitlines()):
                    found.append(str(path))
    return found


def test_forget_user_erases_them_everywhere_and_only_them(spark, lakehouse_server, shared_ml_100k):
    """`lakehouse forget-user`: no table (nor view) returns a row of the user, no file under the
    warehouse, the landing folders, the holdout or the MLflow artifacts holds a record of them, the
    aggregates lose exactly their contribution, the audit row holds no raw id, the API stops
    serving them, a later rating of theirs is quarantined, and a second erasure is a no-op."""
    import hashlib
    import re

    import httpx
    from pyspark.sql import functions as F

    from lakehouse import api_service, secrets
    from lakehouse.dbt_runner import run_dbt
    from lakehouse.delta import lakehouse_tables
    from lakehouse.governance.erasure import forget_user, user_columns
    from lakehouse.stream.replay import Rating, replay
    from ml import tracking

    settings = lakehouse_server
    # A user of every kind of place: the ml-100k users file, batch ratings, the held-out ratings
    # the stream replayed (the holdout file, the landing archive), the similarity heatmap.
    streamed = spark.table("bronze.rating_events").select("user_id").distinct()
    in_heatmap = streamed.join(spark.table("ml.user_similarity_matrix").select("user_id").distinct(), "user_id")
    user = (in_heatmap.orderBy("user_id").first() or streamed.orderBy("user_id").first()).user_id
    assert user in {r.user_id for r in spark.table("bronze.users").select("user_id").collect()}
    assert _scan_for(settings, user), "the user should be in the files before the erasure"

    # The marts as of now (the stream has added ratings since the pipeline's last build), so that
    # what changes below is the erasure's doing alone.
    assert run_dbt(settings, "run", "--select", "marts", "--exclude", "config.materialized:view").ok
    mine = spark.table("gold.ratings").where(F.col("user_id") == user)
    theirs = {r.movie_id: 1 for r in mine.select("movie_id").collect()}
    before_counts = {r.movie_id: r.rating_count for r in spark.table("gold.movies").select("movie_id", "rating_count").collect()}
    before_ratings, before_users = count(spark, "gold.ratings"), count(spark, "gold.users")
    before_activity = spark.table("gold.user_activity").agg(F.sum("user_count")).first()[0]

    held = {}
    for name in ("bronze.ratings", "bronze.users", "bronze.rating_events", "gold.ratings", "gold.users",
                 "ml.recommendations", "ml.user_factors", "ml.user_similarity", "ml.user_similarity_matrix"):
        columns = user_columns(name, spark.table(name).columns)
        held[name] = spark.table(name).where(" or ".join(f"{c} = {user}" for c in columns)).count()
    assert all(held[t] for t in ("bronze.ratings", "bronze.users", "bronze.rating_events", "gold.ratings")), held

    erasure = forget_user(spark, settings, user, log=print)
    assert not erasure.noop and erasure.lines_removed > 0, erasure
    assert {t: erasure.tables.get(t, 0) for t in held} == held, erasure.tables

    # No table or view of any layer returns a row for the user (views: silver's, over bronze).
    existing = {db.name for db in spark.catalog.listDatabases()}
    for schema in ("bronze", "silver", "gold", "ml"):
        for t in spark.catalog.listTables(schema) if schema in existing else ():
            name = f"{schema}.{t.name}"
            columns = user_columns(name, spark.table(name).columns)
            if columns:
                left = spark.table(name).where(" or ".join(f"{c} = {user}" for c in columns)).count()
                assert left == 0, f"{name} still returns {left} rows of user {user}"
    assert not _scan_for(settings, user)

    # The aggregates lost exactly the user's contribution, and nothing else.
    after_counts = {r.movie_id: r.rating_count for r in spark.table("gold.movies").select("movie_id", "rating_count").collect()}
    assert after_counts == {m: c - theirs.get(m, 0) for m, c in before_counts.items()}
    assert count(spark, "gold.ratings") == before_ratings - len(theirs)
    assert count(spark, "gold.users") == before_users - 1
    assert spark.table("gold.user_activity").agg(F.sum("user_count")).first()[0] == before_activity - 1

    # The audit row: the salted hash, what went where; never the raw id.
    salt = secrets.erasure_salt(settings)
    (audit,) = spark.table("governance.erasure_log").where(F.col("erasure_id") == erasure.erasure_id).collect()
    assert audit.user_hash == hashlib.sha256(f"{salt}:{user}".encode()).hexdigest() != str(user)
    assert audit.rows_removed == erasure.rows_removed and audit.tables == erasure.tables
    token = re.compile(rf"(?<![0-9a-f]){user}(?![0-9a-f])")
    for value in (audit.erasure_id, audit.user_hash, audit.purge, audit.retrain, *audit.tables):
        assert not token.search(value), value
    assert "RETAIN 0 HOURS" in audit.purge and "retentionDurationCheck" in audit.purge

    # MLflow: the runs that learnt from the user are tagged for retraining.
    client = tracking.configure(settings)
    assert erasure.retrain and client.get_run(erasure.retrain[0]).data.tags.get("lakehouse.retrain")

    # The API (refreshed from the new table versions) no longer knows them.
    def api_forgot() -> bool:
        response = httpx.get(f"{api_service.url(settings)}/v1/users/{user}/recommendations", timeout=10)
        return response.status_code == 200 and response.json()["cold_start"] is True
    deadline = time.monotonic() + 60
    while not api_forgot():
        assert time.monotonic() < deadline, "the API still serves the erased user's recommendations"
        time.sleep(1.0)

    # A second erasure, asked of the API this time, finds nothing and changes nothing.
    versions = {name: spark.sql(f"describe history {name} limit 1").first()["version"] for name in lakehouse_tables(spark)}
    url = f"{api_service.url(settings)}/v1/users/{user}"
    assert httpx.delete(url, timeout=10).status_code == 401
    accepted = httpx.delete(url, headers={"Authorization": f"Bearer {secrets.admin_token(settings)}"}, timeout=10)
    assert accepted.status_code == 202, accepted.text
    erasure_log = Path(accepted.json()["log"])
    deadline = time.monotonic() + 600
    while "nothing to do" not in (said := " ".join(erasure_log.read_text().split())):
        assert "Traceback" not in said and "Error" not in said, said
        assert time.monotonic() < deadline, f"DELETE {url}: no answer in {erasure_log} after 600 s: {said}"
        time.sleep(1.0)
    assert f"User {user} was erased on" in said
    assert {name: spark.sql(f"describe history {name} limit 1").first()["version"]
            for name in lakehouse_tables(spark)} == versions
    assert spark.table("governance.erasure_log").where(F.col("user_hash") == audit.user_hash).count() == 1

    # A rating of theirs arriving later is quarantined, not a new life for the user, and the
    # quarantine keeps the reason, not their line.
    movie = next(iter(theirs))
    report = replay(settings, source=[Rating(user, movie, 4.0, 0)], burst=True)
    name = report.files[0].name
    erased = F.col("source_file") == name
    deadline = time.monotonic() + 180
    while not spark.table("bronze.quarantine").where(erased).count():
        assert time.monotonic() < deadline, f"{name}: the erased user's new rating was not quarantined"
        time.sleep(1.0)
    (row,) = spark.table("bronze.quarantine").where(erased).collect()
    assert row.reason == "erased user" and str(user) not in row.raw_line, row
    assert fresh(spark, "bronze.rating_events").where(F.col("user_id") == user).count() == 0
