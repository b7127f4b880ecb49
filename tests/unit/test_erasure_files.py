"""The parts of `lakehouse forget-user` that need no Spark: how a user's record is recognised in
text and Parquet files, the rewriting of files without it, the salted hash, the locks that keep
an erasure's purge away from a commit in flight, and the secrets file's mode."""
from __future__ import annotations

import os
import re
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse import locks, secrets
from lakehouse.governance import erasure
from lakehouse.governance.records import line_pattern, user_hash
from lakehouse.settings import Settings


@pytest.mark.parametrize("line, mine", [
    ("196\t242\t3\t881250949", True),  # u.data
    ("196|49|M|writer|55105", True),  # u.user
    ("196::1193::5::978300760", True),  # ml-1m
    ('196,31,2.5,1260759144', True),  # ml-latest ratings.csv
    ('"196","31","4","1"', True),
    ('{"user_id": 196, "movie_id": 1, "rating": 4}', True),
    ('{"userId":"196","movieId":1}', True),
    ("1960\t242\t3\t881250949", False),
    ("19\t196\t3\t881250949", False),  # 196 is the movie
    ('{"user_id": 1960}', False),
    ("user_id,movie_id,rating,timestamp", False),
    ("", False),
])
def test_a_line_is_the_user_s_record_only_when_their_id_leads_it(line, mine):
    assert bool(re.search(line_pattern(196), line)) is mine


def test_the_hash_is_salted_and_keeps_no_id():
    assert user_hash("a", 196) == user_hash("a", 196) != user_hash("b", 196) != user_hash("a", 197)
    assert re.fullmatch("[0-9a-f]{64}", user_hash("a", 196))


def settings_in(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", stream_dir=tmp_path / "landing", superset_env_file=tmp_path / ".env",
                    mlflow_dir=tmp_path / "mlflow")


def test_files_are_rewritten_without_the_user_keeping_everything_else(tmp_path):
    settings = settings_in(tmp_path)
    landing = settings.stream_dir
    landing.mkdir(parents=True)
    csv = landing / "ratings-1.csv"
    csv.write_text("user_id,movie_id,rating,timestamp\n196,1,4,1\n7,196,5,2\n196,2,3,3\n")
    jsonl = landing / "ratings-2.jsonl"
    jsonl.write_text('{"user_id": 7, "movie_id": 1, "rating": 4}\n{"user_id": 196, "movie_id": 2, "rating": 1}\n')
    untouched = landing / "ratings-3.csv"
    untouched.write_text("user_id,movie_id,rating,timestamp\n7,1,4,1\n")
    os.utime(csv, (1_000_000, 1_000_000))  # the stream reads a landed file's mtime as its landing time
    artifacts = settings.artifacts_dir / "1" / "abc" / "artifacts" / "model"
    artifacts.mkdir(parents=True)
    pq.write_table(pa.table({"id": [7, 196], "features": [[0.1], [0.2]]}), artifacts / "users.parquet")
    pq.write_table(pa.table({"id": [196, 7], "features": [[0.1], [0.2]]}), artifacts / "items.parquet")  # movies
    pq.write_table(pa.table({"user_id": [196, 196, 7], "movie_id": [1, 2, 3]}), artifacts / "seen.parquet")
    holdout = settings.holdout_dir / "ml-100k" / "ratings.csv"
    holdout.parent.mkdir(parents=True)
    holdout.write_text("user_id,movie_id,rating,timestamp\n196,9,4,9\n")

    found = dict(erasure._user_files(settings, 196, rewrite=False))
    assert found == {csv: 2, jsonl: 1, artifacts / "users.parquet": 1, artifacts / "seen.parquet": 2, holdout: 1}
    assert csv.read_text() == "user_id,movie_id,rating,timestamp\n196,1,4,1\n7,196,5,2\n196,2,3,3\n"  # a scan changes nothing

    assert dict(erasure._user_files(settings, 196, rewrite=True)) == found
    assert csv.read_text() == "user_id,movie_id,rating,timestamp\n7,196,5,2\n"
    assert csv.stat().st_mtime == 1_000_000
    assert jsonl.read_text() == '{"user_id": 7, "movie_id": 1, "rating": 4}\n'
    assert untouched.read_text() == "user_id,movie_id,rating,timestamp\n7,1,4,1\n"
    assert pq.read_table(artifacts / "users.parquet")["id"].to_pylist() == [7]
    assert pq.read_table(artifacts / "items.parquet")["id"].to_pylist() == [196, 7]
    assert pq.read_table(artifacts / "seen.parquet").to_pydict() == {"user_id": [7], "movie_id": [3]}
    assert holdout.read_text() == "user_id,movie_id,rating,timestamp\n"
    assert not list(erasure._user_files(settings, 196, rewrite=False))


def test_an_erasure_waits_for_the_writers_and_the_writers_for_it(tmp_path):
    folder = tmp_path / "locks"
    with locks.shared_in(folder, locks.TABLES), locks.shared_in(folder, locks.TABLES):  # writers side by side
        with pytest.raises(locks.LockHeld):
            with locks.exclusive_in(folder, locks.TABLES):
                pass
    entered = threading.Event()
    release = threading.Event()

    def erase():
        with locks.exclusive_in(folder, locks.TABLES):
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=erase)
    worker.start()
    assert entered.wait(10)
    with pytest.raises(locks.LockHeld):
        with locks.shared_in(folder, locks.TABLES, wait=0.3):
            pass
    release.set()
    with locks.shared_in(folder, locks.TABLES, wait=10):  # a batch goes on once the erasure is done
        pass
    worker.join()


def test_secrets_are_private_from_the_first_byte(tmp_path):
    settings = settings_in(tmp_path)
    (tmp_path / ".env").write_text("OTHER=1\n")
    os.chmod(tmp_path / ".env", 0o644)
    salt = secrets.erasure_salt(settings)
    token = secrets.admin_token(settings)
    assert len(salt) >= 32 and len(token) >= 32 and salt != token
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    assert secrets.erasure_salt(settings) == salt  # generated once
    assert (tmp_path / ".env").read_text().startswith("OTHER=1\n")
    assert not list(tmp_path.glob(".*.tmp"))


def test_processes_starting_at_once_agree_on_one_salt(tmp_path):
    """API workers, the stream and an erasure may all ask for the salt first: one is generated."""
    import multiprocessing

    settings = settings_in(tmp_path)
    with multiprocessing.get_context("fork").Pool(6) as pool:
        salts = pool.map(secrets.erasure_salt, [settings] * 12)
    assert len(set(salts)) == 1 and (tmp_path / ".env").read_text().count(secrets.ERASURE_SALT_VAR) == 1
