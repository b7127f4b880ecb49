"""`ingest --holdout-fraction`: the latest ratings stay out of bronze, in a file the replay streams.

Conservation per file: rows read = loaded + quarantined + held out.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import tables
from lakehouse.datasets import holdout_file
from lakehouse.ingest.load import IngestError
from lakehouse.stream.replay import read_ratings_file, replay
from lakehouse import delta
from tests.integration.conftest import copy_dataset, count

pytestmark = pytest.mark.integration

NEW_COLUMNS = ("rows_held_out", "holdout_fraction")


def ingest(spark, settings, source, fraction: float, replace: bool = False, dataset: str = "ml-100k"):
    from lakehouse.ingest.acquire import locate
    from lakehouse.datasets import get_dataset
    from lakehouse.ingest.load import ingest as run_ingest

    files = locate(get_dataset(dataset), source, settings.cache_dir)
    return run_ingest(
        spark, files, replace=replace, holdout_fraction=fraction, holdout_dir=settings.holdout_dir
    )


def ratings_report(report):
    return next(f for f in report.files if f.target_table == tables.RATINGS.name)


def u_data(folder) -> list[tuple[int, int, float, int]]:
    rows = []
    for line in (folder / "u.data").read_text().splitlines():
        user, movie, rating, ts = line.split("\t")
        rows.append((int(user), int(movie), float(rating), int(ts)))
    return rows


def held_file(settings) -> pd.DataFrame:
    return pd.read_csv(holdout_file(settings.holdout_dir, "ml-100k"))


def ledger(spark) -> dict[str, tuple]:
    spark.catalog.refreshTable(tables.INGEST_LOG.name)
    return {
        r.target_table: (r.rows_read, r.rows_loaded, r.rows_quarantined, r.rows_held_out, r.holdout_fraction)
        for r in spark.table(tables.INGEST_LOG.name).collect()
    }


@pytest.fixture(scope="module")
def held_100k(spark, lakehouse_server, synthetic_100k_layout):
    return ingest(spark, lakehouse_server, synthetic_100k_layout, 0.2, replace=True)


def test_the_latest_fifth_is_held_out_and_nothing_is_lost(spark, lakehouse_server, held_100k, synthetic_100k_layout):
    ratings = ratings_report(held_100k)
    assert (ratings.rows_read, ratings.rows_loaded, ratings.rows_quarantined, ratings.rows_held_out) == (6000, 4800, 0, 1200)
    assert all(f.conserved for f in held_100k.files)
    assert count(spark, tables.RATINGS.name) == 4800
    assert held_100k.holdout_file == holdout_file(lakehouse_server.holdout_dir, "ml-100k")

    held = held_file(lakehouse_server)
    assert list(held.columns) == ["user_id", "movie_id", "rating", "timestamp"]
    keys = list(zip(held.timestamp, held.user_id, held.movie_id))
    assert keys == sorted(keys) and len(keys) == 1200  # time order, ties by ids
    latest_loaded = (
        spark.table(tables.RATINGS.name)
        .orderBy(F.desc("epoch_seconds"), F.desc("user_id"), F.desc("movie_id"))
        .select("epoch_seconds", "user_id", "movie_id")
        .first()
    )
    assert tuple(latest_loaded) < keys[0]  # every held-out rating is later than every loaded one

    loaded = {tuple(r) for r in spark.table(tables.RATINGS.name).select("user_id", "movie_id", "rating", "epoch_seconds").collect()}
    held_rows = {(int(u), int(m), float(r), int(t)) for u, m, r, t in held.itertuples(index=False)}
    assert loaded | held_rows == set(u_data(synthetic_100k_layout)) and not loaded & held_rows

    log = ledger(spark)
    assert log[tables.RATINGS.name] == (6000, 4800, 0, 1200, 0.2)
    assert log[tables.MOVIES.name][3:] == (0, 0.0) and log[tables.USERS.name][3:] == (0, 0.0)


def test_same_fraction_skips_another_fraction_is_refused(spark, lakehouse_server, held_100k, synthetic_100k_layout):
    path = holdout_file(lakehouse_server.holdout_dir, "ml-100k")
    before = path.stat().st_mtime_ns
    again = ingest(spark, lakehouse_server, synthetic_100k_layout, 0.2)
    assert all(f.skipped_reason.startswith("unchanged since load") for f in again.files)
    assert path.stat().st_mtime_ns == before
    for other in (0.1, 0.0):
        with pytest.raises(IngestError, match=r"--holdout-fraction 0\.2.*--replace"):
            ingest(spark, lakehouse_server, synthetic_100k_layout, other)
    assert count(spark, tables.RATINGS.name) == 4800 and count(spark, tables.INGEST_LOG.name) == 3
    assert path.stat().st_mtime_ns == before


def test_the_replay_streams_the_held_out_ratings_in_time_order(lakehouse_server, held_100k, tmp_path):
    settings = dataclasses.replace(lakehouse_server, stream_dir=tmp_path / "landing")
    report = replay(settings, source="holdout", rate=0, rows_per_file=500, now=False)
    assert report.ratings == 1200 and len(report.files) == 3
    replayed = [tuple(r) for p in report.files for r in read_ratings_file(p)]
    held = held_file(lakehouse_server)
    assert replayed == [(int(u), int(m), float(r), int(t)) for u, m, r, t in held.itertuples(index=False)]


def test_rejected_rows_go_to_quarantine_not_to_the_holdout(spark, lakehouse_server, synthetic_100k_layout, tmp_path):
    folder = copy_dataset(synthetic_100k_layout, tmp_path / "ml-100k")
    original = u_data(folder)
    earliest = min(original, key=lambda r: (r[3], r[0], r[1]))
    last = max(r[3] for r in original)
    extra = [
        f"{earliest[0]}\t{earliest[1]}\t5\t{last + 200}",  # a later re-rating: held out, the old one quarantined
        f"1\t99999\t4\t{last + 300}",  # unknown movie, the very latest: quarantined, not held out
        "1\t1\t3\t4102444800",  # in the future: rejected while parsing
        "not a rating",
    ]
    (folder / "u.data").write_text((folder / "u.data").read_text() + "\n".join(extra) + "\n")
    report = ingest(spark, lakehouse_server, folder, 0.2, replace=True)
    ratings = ratings_report(report)
    # 6002 ratings pass the row-level checks: the latest round(0.2 * 6002) = 1200 are the two new
    # valid-looking lines and 1198 originals; the unknown movie drops out in the set-level checks.
    assert ratings.rows_read == 6004
    assert (ratings.rows_loaded, ratings.rows_quarantined, ratings.rows_held_out) == (4801, 4, 1199)
    assert ratings.rows_read == ratings.rows_loaded + ratings.rows_quarantined + ratings.rows_held_out
    assert ratings.conserved
    reasons = sorted(
        r.reason for r in spark.table(tables.QUARANTINE.name).where(F.col("target_table") == tables.RATINGS.name).collect()
    )
    assert len(reasons) == 4
    assert any("duplicate (user_id, movie_id)" in r for r in reasons)
    assert any("movie_id 99999 is not in the movies file" in r for r in reasons)
    assert any("in the future" in r for r in reasons)
    held = held_file(lakehouse_server)
    assert len(held) == 1199 and 99999 not in set(held.movie_id)
    assert tuple(held.iloc[-1]) == (earliest[0], earliest[1], 5.0, last + 200)
    assert ledger(spark)[tables.RATINGS.name][:4] == (6004, 4801, 4, 1199)


def test_replace_without_a_fraction_removes_the_stale_holdout(spark, lakehouse_server, synthetic_100k_layout):
    ingest(spark, lakehouse_server, synthetic_100k_layout, 0.2, replace=True)
    path = holdout_file(lakehouse_server.holdout_dir, "ml-100k")
    assert path.exists()
    report = ingest(spark, lakehouse_server, synthetic_100k_layout, 0.0, replace=True)
    assert ratings_report(report).rows_held_out == 0 and report.holdout_file is None
    assert not path.exists() and count(spark, tables.RATINGS.name) == 6000


def as_legacy_ledger(spark, keep) -> None:
    """Rewrite bronze.ingest_log as the version before the holdout columns made it."""
    legacy_schema = T.StructType([f for f in tables.INGEST_LOG.schema.fields if f.name not in NEW_COLUMNS])
    rows = [
        tuple(r[f.name] for f in legacy_schema.fields)
        for r in spark.table(tables.INGEST_LOG.name).collect()
        if r.target_table in keep
    ]
    spark.sql(f"drop table {tables.INGEST_LOG.name}")
    delta.append(spark.createDataFrame(rows, legacy_schema), tables.INGEST_LOG.name)
    assert not set(NEW_COLUMNS) & set(spark.table(tables.INGEST_LOG.name).columns)


def test_a_ledger_from_before_the_holdout_gets_its_columns(spark, lakehouse_server, synthetic_100k_layout):
    ingest(spark, lakehouse_server, synthetic_100k_layout, 0.0, replace=True)
    as_legacy_ledger(spark, keep={tables.RATINGS.name, tables.MOVIES.name, tables.USERS.name})

    # The old ledger's rows count as fraction 0: unchanged files are skipped, another fraction refused.
    again = ingest(spark, lakehouse_server, synthetic_100k_layout, 0.0)
    assert all(f.skipped_reason for f in again.files)
    assert spark.table(tables.INGEST_LOG.name).columns[-3:] == [*NEW_COLUMNS, "load_id"]
    assert {row[3:] for row in ledger(spark).values()} == {(None, None)}
    with pytest.raises(IngestError, match="--replace"):
        ingest(spark, lakehouse_server, synthetic_100k_layout, 0.2)

    # An old ledger that never committed the ratings: they load again, with a holdout, next to the old rows.
    as_legacy_ledger(spark, keep={tables.MOVIES.name, tables.USERS.name})
    report = ingest(spark, lakehouse_server, synthetic_100k_layout, 0.2)
    assert [entry.split(":")[0] for entry in report.recovered_loads] == [tables.RATINGS.name]
    assert ratings_report(report).rows_held_out == 1200 and all(f.conserved for f in report.files)
    log = ledger(spark)
    assert log[tables.RATINGS.name] == (6000, 4800, 0, 1200, 0.2)
    assert log[tables.MOVIES.name][3:] == (None, None)
    assert count(spark, tables.RATINGS.name) == 4800 and len(held_file(lakehouse_server)) == 1200
