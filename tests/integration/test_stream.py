"""The streaming job on the real server: bad input conserved per file, the landing folder's
contract (files written in place, reused names, old mtimes, poison files), one stream per landing
folder, and the fold-in agreeing with MLlib. The kill -9 tests, with the fold-in on, are in
test_crash_delta.py (they need a champion)."""
from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from pyspark.sql import functions as F

from lakehouse import tables
from lakehouse.stream import job
from tests.integration.conftest import ingest
from tests.integration.helpers import fresh_stream, land, wait_for

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
        land(settings.stream_inbox_dir, name, data)  # no gate runs here: straight into the inbox
    land(settings.stream_inbox_dir, "empty.csv", b"")
    query = job.start_query(spark, settings)
    try:
        def all_committed():
            assert query.exception() is None, f"the stream failed: {query.exception()}"
            return (c := committed_files(spark, settings)) and len(c) >= len(files) and c

        seen = wait_for(all_committed, 600, "every landed file in bronze.stream_files")
        assert query.isActive and query.exception() is None  # bad data never stops the stream
        # Processed files leave the landing folder for the archive, the empty one too. Spark's
        # file source archives a batch's files when the next batch starts: land one more.
        land(settings.stream_inbox_dir, "next.csv", f"1,1,5,{VALID_TS}\n")
        wait_for(lambda: set(os.listdir(settings.stream_inbox_dir)) <= {"next.csv"}, 120, "the inbox to empty")
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


# ---- the landing folder's contract, with the stream's own process (its gate) running ----------


def inbox_name_of(settings, name: str) -> str:
    """The name the gate gave a landed file (the log says `took X as Y` when it renamed it)."""
    taken = re.findall(rf"landing: took {re.escape(name)}(?: as (\S+))? \(", settings.stream_log.read_text())
    return [t or name for t in taken]


def quarantined_rows(spark, load_prefix: str):
    spark.catalog.refreshTable(tables.QUARANTINE.name)
    return spark.table(tables.QUARANTINE.name).where(F.col("load_id").startswith(load_prefix)).collect()


def test_the_landing_contract_files_written_in_place_reused_names_old_mtimes_poison(spark, synthetic_bronze, tmp_path):
    """What users do with a folder: `cp` a big file in (written in pieces, 3 s in all), drop the
    same name twice, copy with the mtime kept (30 days old), drop a binary file between two good
    ones, land a classic-Mac CR-only file. Every rating lands once; the binary file is dead-lettered
    with its reason; the stream never stops."""
    settings = fresh_stream(synthetic_bronze, tmp_path / "landing")
    landing_dir = settings.stream_dir
    landing_dir.mkdir(parents=True)
    now = int(time.time())
    recent = now - 86400  # a day ago: valid, and "in the future" only if compared with a month-old mtime
    pid = job.detach(settings, fold_in=False)
    expected: dict[str, int] = {}
    try:
        # 1. in place, in three pieces a second and a half apart, through one open file (as `cp`)
        copied = [f"{400_000 + i},{1 + i % SYNTHETIC_MOVIES},4,{VALID_TS}" for i in range(2000)]
        with open(landing_dir / "copied.csv", "w") as out:
            for part in range(3):
                out.write("\n".join(copied[part * 667:(part + 1) * 667]) + ("\n" if part < 2 else "\n"))
                out.flush()
                time.sleep(1.5)
        expected["copied.csv"] = 2000
        # 2. the same name twice, the second after the first was taken
        land(landing_dir, "daily.csv", f"410001,1,5,{VALID_TS}\n410001,2,4,{VALID_TS}\n")
        wait_for(lambda: inbox_name_of(settings, "daily.csv"), 60, "the first daily.csv to be taken", step=0.2)
        land(landing_dir, "daily.csv", f"410002,3,3,{VALID_TS}\n")
        # 3. a month-old mtime, holding yesterday's ratings
        old = land(landing_dir, "kept-mtime.csv", f"410003,4,5,{recent}\n410003,5,2,{recent}\n")
        os.utime(old, (now - 30 * 86400, now - 30 * 86400))
        expected["kept-mtime.csv"] = 2
        # 4. poison between two good files
        land(landing_dir, "before.csv", f"410004,6,4,{VALID_TS}\n")
        land(landing_dir, "binary.csv", b"\x00\x01\x02 not a ratings file \x00" * 100)
        land(landing_dir, "after.csv", f"410005,7,4,{VALID_TS}\n")
        expected.update({"before.csv": 1, "after.csv": 1})
        # 5. CR-only line endings
        land(landing_dir, "mac.csv", f"410006,8,4,{VALID_TS}\r410006,9,5,{VALID_TS}\r")
        expected["mac.csv"] = 2

        wait_for(lambda: len(inbox_name_of(settings, "daily.csv")) == 2, 60, "the second daily.csv", step=0.2)
        names = {name: inbox_name_of(settings, name) for name in expected}
        daily = inbox_name_of(settings, "daily.csv")
        assert daily == ["daily.csv", "daily~2.csv"], daily  # a reused name is read again, as new data
        expected.update({"daily.csv": 2, "daily~2.csv": 1})
        wanted = {n for n in expected}
        seen = wait_for(lambda: (c := committed_files(spark, settings)) and wanted <= set(c) and c, 300,
                        "every good file committed")
        status = job.read_status(settings)
        assert status["state"] == "running" and status["restarts"] == 0 and status["files_dead_lettered"] == 1
    finally:
        job.stop(settings)
    assert all(v == [k] for k, v in names.items() if k != "daily.csv"), names
    for name, rows in expected.items():
        row = seen[name]
        assert (row.rows_read, row.rows_accepted, row.rows_quarantined) == (rows, rows, 0), (name, row)
    # landed_at is when the stream took the file, not the month-old mtime it came with
    assert abs(seen["kept-mtime.csv"].landed_at.timestamp() - now) < 120
    sid = job.stream_id(settings)
    spark.catalog.refreshTable(tables.RATING_EVENTS.name)
    events = spark.table(tables.RATING_EVENTS.name).where(F.col("load_id").startswith(f"stream-{sid}-"))
    assert events.count() == sum(expected.values())
    assert events.select("source_file", "line_number").distinct().count() == sum(expected.values())
    assert events.where(F.col("source_file") == "copied.csv").agg(F.countDistinct("user_id")).first()[0] == 2000
    (dead,) = quarantined_rows(spark, f"dead-letter-{sid}-")
    assert dead.source_file == "binary.csv" and dead.line_number == 0
    assert dead.reason.startswith("dead-lettered: the file holds NUL bytes")
    assert [p.name.endswith("-binary.csv") for p in settings.stream_dead_letter_dir.iterdir()] == [True]
    assert not (settings.stream_dir / "binary.csv").exists()
    # nothing left behind: the landing folder is empty, and the stream's process is gone
    assert os.listdir(settings.stream_dir) == []
    assert job.running_pid(settings) is None and not psutil_alive(pid)


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_one_stream_per_landing_folder_and_sighup_stops_it_cleanly(spark, synthetic_bronze, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.integration.helpers import REPO

    settings = fresh_stream(synthetic_bronze, tmp_path / "landing")
    pid = job.detach(settings, fold_in=False)
    try:
        foreground = subprocess.run([sys.executable, "-m", "lakehouse.cli", "stream", "--no-fold-in"], cwd=REPO,
                                    env={**os.environ, **settings.as_env(), "COLUMNS": "200"},
                                    capture_output=True, text=True, timeout=120)
        said = " ".join(foreground.stdout.split())  # the console wraps long lines
        assert foreground.returncode == 2, foreground.stdout + foreground.stderr
        assert "is already running in this data directory" in said, said
        assert f"pid {pid}" in said, said  # who holds it
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: not psutil_alive(pid), 60, "the stream to stop on SIGHUP", step=0.2)
    finally:
        job.stop(settings)
    log = settings.stream_log.read_text()
    assert "Stream stopped." in log.split("Streaming ")[-1]  # a clean stop, not a kill
    assert not job.status_file(settings).exists()


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
