"""The streaming job on the real server: bad input conserved per file, exactly once across kill -9
of the stream and of the server, and the fold-in agreeing with MLlib."""
from __future__ import annotations

import dataclasses
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.stream import job
from tests.conftest import free_port
from tests.integration.conftest import ingest
from tests.integration.helpers import fresh_stream, kill_group, land, wait_for

VALID_TS = 1_600_000_000  # 2020-09-13
SYNTHETIC_MOVIES = 400  # movie ids 1..400 exist in the synthetic dataset


def committed_files(spark, settings) -> dict[str, object]:
    spark.catalog.refreshTable(tables.STREAM_FILES.name)
    sid = job.stream_id(settings)
    rows = spark.table(tables.STREAM_FILES.name).where(F.col("load_id").startswith(f"stream-{sid}-")).collect()
    return {r.source_file: r for r in rows}


@pytest.fixture(scope="module")
def synthetic_bronze(spark, lakehouse_server, synthetic_100k_layout):
    ingest(spark, lakehouse_server, "ml-100k", synthetic_100k_layout, replace=True)
    return lakehouse_server


def bad_input_files() -> dict[str, tuple[bytes, int, int, list[str]]]:
    """name -> (bytes, rows accepted, rows quarantined, reasons expected among the rejects)."""
    future = int(time.time()) + 10 * 86400
    big_line = b"%d,%d,4,%d\n"
    big = b"".join(big_line % (100_000 + i % 5000, 1 + i % SYNTHETIC_MOVIES, VALID_TS + i) for i in range(2_400_000))
    values = ("\n".join([
        f"x,1,5,{VALID_TS}", f"1,1,NaN,{VALID_TS}", f"1,1,6,{VALID_TS}", f"1,1,3.5,{VALID_TS}", f"0,1,4,{VALID_TS}",
        "1,1,4,700000000", f"1,1,4,{future}", f"1,99999,4,{VALID_TS}", "1,1,4,soon",
        f"777777,1,4,{VALID_TS}",  # a brand-new user: welcome
    ]) + "\n").encode()
    return {
        "plain.csv": (f"1,1,5,{VALID_TS}\n2,2,4,{VALID_TS}\n3,3,3,{VALID_TS}\n".encode(), 3, 0, []),
        "header-reordered.csv": (f"movieId,userId,rating,timestamp\r\n7,1,4,{VALID_TS}\r\n8,1,2,{VALID_TS}\r\n".encode(), 2, 0, []),
        "header-only.csv": (b"user_id,movie_id,rating,timestamp\n", 0, 0, []),
        "blank-lines.csv": (f"\n1,9,5,{VALID_TS}\n\n\n".encode(), 1, 0, []),
        "semicolons.csv": (f"1;1;5;{VALID_TS}\n2;2;4;{VALID_TS}\n".encode(), 0, 2, ["wrong delimiter?"]),
        "columns.csv": (f"1,1,5\n1,1,5,{VALID_TS},extra\n".encode(), 0, 2, ["found 3", "found 5"]),
        "bad-header.csv": (f"user_id,movie,rating,timestamp\n1,1,5,{VALID_TS}\n".encode(), 0, 1, ["header has columns"]),
        "values.csv": (values, 1, 9, ["is not an integer", "not a finite number", "off the 1-5 scale", "must be positive",
                                      "before 1995", "in the future", "not in the movie catalogue"]),
        "latin1.csv": (b"1,1,5," + str(VALID_TS).encode() + b"\n1,2,\xe9\xff," + str(VALID_TS).encode() + b"\n", 1, 1,
                       ["not valid UTF-8"]),
        "events.json": ((f'{{"user_id": 5, "movie_id": 6, "rating": 4, "timestamp": {VALID_TS}}}\n'
                         f'{{"user_id": 5, "movie_id": 6}}\n'
                         f'{{"user_id": 5, "movie_id": 6, "rating": 4, "timestamp": {VALID_TS}, "mood": "happy"}}\n'
                         '{"user_id": 5,\n').encode(), 1, 3,
                        ["missing JSON key(s) rating,timestamp", "unexpected JSON key(s) mood", "malformed JSON"]),
        "fifty-megabytes.csv": (big, 2_400_000, 0, []),
    }


def test_bad_input_is_quarantined_and_every_file_conserves_its_rows(spark, synthetic_bronze, tmp_path):
    settings = fresh_stream(synthetic_bronze, tmp_path / "landing")
    files = bad_input_files()
    assert len(files["fifty-megabytes.csv"][0]) > 50 * 2**20
    for name, (data, *_rest) in files.items():
        land(settings.stream_dir, name, data)
    land(settings.stream_dir, "empty.csv", b"")
    query = job.start_query(spark, settings)
    try:
        seen = wait_for(lambda: (c := committed_files(spark, settings)) and len(c) >= len(files) and c, 600,
                        "every landed file in bronze.stream_files")
        assert query.isActive and query.exception() is None  # bad data never stops the stream
        # Processed files leave the landing folder for the archive, the empty one too. Spark's
        # file source archives a batch's files when the next batch starts: land one more.
        land(settings.stream_dir, "next.csv", f"1,1,5,{VALID_TS}\n")
        wait_for(lambda: set(os.listdir(settings.stream_dir)) <= {"next.csv"}, 120, "the landing folder to empty")
        archived = {p.name for p in settings.stream_archive_dir.rglob("*") if p.is_file()}
        assert set(files) | {"empty.csv"} <= archived
    finally:
        query.stop()

    spark.catalog.refreshTable(tables.RATING_EVENTS.name)
    spark.catalog.refreshTable(tables.QUARANTINE.name)
    events = spark.table(tables.RATING_EVENTS.name).where(F.col("load_id").startswith(f"stream-{job.stream_id(settings)}-"))
    quarantine = spark.table(tables.QUARANTINE.name).where(F.col("target_table") == tables.RATING_EVENTS.name)
    accepted_by_file = {r.source_file: r["count"] for r in events.groupBy("source_file").count().collect()}
    rejected = quarantine.where(F.col("load_id").startswith(f"stream-{job.stream_id(settings)}-")).collect()
    for name, (_, accepted, quarantined, reasons) in files.items():
        row = seen[name]
        assert row.rows_read == row.rows_accepted + row.rows_quarantined, name
        assert (row.rows_accepted, row.rows_quarantined) == (accepted, quarantined), name
        assert accepted_by_file.get(name, 0) == accepted, name  # the ledger matches the table
        file_reasons = [r.reason for r in rejected if r.source_file == name]
        assert len(file_reasons) == quarantined, name
        for reason in reasons:
            assert any(reason in r for r in file_reasons), (name, reason, file_reasons)
    assert all(r.raw_line and r.line_number >= 1 for r in rejected)  # raw line and where it was
    assert seen["header-reordered.csv"].file_format == "csv+header"
    assert seen["events.json"].file_format == "jsonl"
    new_user = events.where(F.col("user_id") == 777777).collect()
    assert len(new_user) == 1 and new_user[0].line_number == 10


def land_numbered_files(folder: Path, count: int, rows: int, first_user: int) -> int:
    """`count` files of `rows` distinct valid ratings each; returns the number of ratings."""
    for index in range(count):
        lines = [f"{first_user + index},{1 + (index * rows + r) % SYNTHETIC_MOVIES},{1 + r % 5},{VALID_TS + r}"
                 for r in range(rows)]
        land(folder, f"numbered-{index:03d}.csv", "\n".join(lines) + "\n")
    return count * rows


def exactly_once(spark, settings, expected: int, first_user: int) -> None:
    spark.catalog.refreshTable(tables.RATING_EVENTS.name)
    mine = spark.table(tables.RATING_EVENTS.name).where(F.col("source_file").startswith("numbered-")
                                                   & (F.col("user_id") >= first_user))
    assert mine.count() == expected
    assert mine.select("source_file", "line_number").distinct().count() == expected  # nothing twice


def wait_for_batch_start(settings, after: int) -> None:
    """Block until the stream log reports a batch starting (the log may hold older lines)."""
    def started():
        text = settings.stream_log.read_text() if settings.stream_log.exists() else ""
        return len(re.findall(r"batch \d+: started", text)) > after
    wait_for(started, 300, "a micro-batch to start", step=0.1)


def batch_starts(settings) -> int:
    text = settings.stream_log.read_text() if settings.stream_log.exists() else ""
    return len(re.findall(r"batch \d+: started", text))


def test_killing_the_stream_process_mid_batch_loses_and_duplicates_nothing(spark, synthetic_bronze, tmp_path):
    settings = fresh_stream(synthetic_bronze, tmp_path / "landing", stream_max_files_per_trigger=3)
    expected = land_numbered_files(settings.stream_dir, 12, 2000, first_user=200_000)
    for round_ in range(2):
        before = batch_starts(settings)
        pid = job.detach(settings, fold_in=False)
        wait_for_batch_start(settings, before)
        time.sleep(random.uniform(0.0, 1.5))
        kill_group(pid)  # kill -9: no clean stop
    job.detach(settings, fold_in=False)
    try:
        wait_for(lambda: sum(f.rows_read for f in committed_files(spark, settings).values()) >= expected, 600,
                 "every numbered file committed")
    finally:
        job.stop(settings)
    exactly_once(spark, settings, expected, first_user=200_000)


def own_session(settings):
    """A new Spark Connect session on this server (one made before a restart died with it)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(settings.connect_url).create()


@pytest.fixture(scope="module")
def second_server(tmp_path_factory, synthetic_100k_layout):
    """A server of its own, so killing it does not disturb the session's server."""
    from lakehouse import server
    from lakehouse.settings import load_settings

    home = tmp_path_factory.mktemp("crash-home")
    settings = dataclasses.replace(load_settings(), home=home, thrift_port=free_port(), connect_port=free_port(),
                                   driver_memory="2g")
    server.up(settings, timeout=240)
    session = own_session(settings)
    ingest(session, settings, "ml-100k", synthetic_100k_layout, replace=True)
    session.stop()
    yield settings
    server.down(settings)


def test_each_server_gets_its_own_session(spark, second_server):
    from lakehouse.session import connect

    other = connect(second_server)
    try:
        assert other is not spark and connect(second_server) is other
        other.sql("create database if not exists only_on_the_second_server")
        assert other.catalog.databaseExists("only_on_the_second_server")
        assert not spark.catalog.databaseExists("only_on_the_second_server")
    finally:
        other.sql("drop database if exists only_on_the_second_server")
        other.stop()


def test_killing_the_server_mid_batch_loses_and_duplicates_nothing(second_server, tmp_path):
    from lakehouse import server

    settings = fresh_stream(second_server, tmp_path / "landing", stream_max_files_per_trigger=3)
    expected = land_numbered_files(settings.stream_dir, 9, 2000, first_user=300_000)
    job.detach(settings, fold_in=False)
    wait_for_batch_start(settings, 0)
    time.sleep(random.uniform(0.2, 1.5))
    kill_group(server.running_pid(settings))  # the JVM, the server process and the batch's Python worker
    job.stop(settings, grace=10)  # its client has lost the server
    server.up(settings, timeout=240)
    job.detach(settings, fold_in=False)
    spark = own_session(settings)
    try:
        wait_for(lambda: sum(f.rows_read for f in committed_files(spark, settings).values()) >= expected, 600,
                 "every numbered file committed after the restart")
    finally:
        job.stop(settings)
    exactly_once(spark, settings, expected, first_user=300_000)
    spark.stop()


def test_fold_in_reproduces_the_user_factors_mllib_trained(spark, synthetic_bronze):
    from ml.als import AlsParams
    from ml.fold_in import FoldInModel
    from ml.ranking_model import RankingParams, fit_ranking

    ratings = spark.table(tables.RATINGS.name).select("user_id", "movie_id", "rating")
    params = RankingParams(AlsParams(rank=6, reg_param=0.1, max_iter=10, alpha=0.5), value="rating")
    model = fit_ranking(ratings, params)
    items = model.als.itemFactors.orderBy("id").collect()
    folded = FoldInModel(np.array([r.id for r in items]), np.array([r.features for r in items]),
                         params.als.reg_param, params.als.alpha, binary=False)
    users = {r.id: np.array(r.features) for r in model.als.userFactors.collect()}
    by_user: dict[int, list[tuple[int, float]]] = {}
    for r in ratings.collect():
        by_user.setdefault(r.user_id, []).append((r.movie_id, r.rating))
    for user_id in sorted(by_user)[:25]:
        rated = by_user[user_id]
        vector = folded.user_vector(np.array([m for m, _ in rated]), np.array([v for _, v in rated]))
        # MLlib's last step solved exactly this system (in float32)
        assert np.allclose(vector, users[user_id], rtol=1e-3, atol=1e-4), user_id
