"""The retention policy's file side: landed files, dead letters and checkpoints expire by age,
and nothing a running or current stream needs, or a ratings file not yet read, goes."""
from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lakehouse import retention
from lakehouse.settings import Settings, load_settings

NOW = datetime(2026, 6, 1, 12, 0, 0)


def aged(path: Path, days: float, text: str = "1,2,3.0,900000000\n") -> Path:
    """A file whose modification time is `days` before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    when = retention.epoch(NOW - timedelta(days=days))
    os.utime(path, (when, when))
    return path


def age_tree(folder: Path, days: float) -> None:
    when = retention.epoch(NOW - timedelta(days=days))
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when), follow_symlinks=False)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", stream_dir=tmp_path / "landing", mlflow_dir=tmp_path / "mlflow",
                    superset_env_file=tmp_path / ".env")


def test_files_older_than_the_cutoff_go_and_the_folders_stay(tmp_path):
    archive = tmp_path / "archive"
    old = [aged(archive / "tmp" / "landing" / "a.csv", 31), aged(archive / "b.csv", 45, "x" * 100)]
    young = [aged(archive / "c.csv", 29), aged(archive / "tmp" / "other" / "d.csv", 1)]
    before = NOW - timedelta(days=30)

    assert retention.expire_files(archive, before, dry_run=True) == (2, sum(p.stat().st_size for p in old))
    assert all(p.exists() for p in old)  # a dry run removes nothing

    assert retention.expire_files(archive, before) == (2, 18 + 100)
    assert not any(p.exists() for p in old) and all(p.exists() for p in young)
    assert (archive / "tmp" / "landing").is_dir()  # Spark's archiver may be moving a file into it
    assert retention.expire_files(archive, before) == (0, 0)  # nothing left to do
    assert retention.expire_files(tmp_path / "missing", before) == (0, 0)


def test_zero_days_expires_everything_landed_before_now(tmp_path):
    aged(tmp_path / "a.csv", 0.001)
    assert retention.expire_files(tmp_path, NOW) == (1, 18)


def test_stale_checkpoints_go_the_current_and_the_running_streams_stay(settings, tmp_path, monkeypatch):
    root = settings.checkpoint_dir
    current = settings.stream_checkpoint
    aged(current / "offsets" / "0", 60)
    age_tree(current, 60)  # an idle stream's checkpoint is old too, and it is still this stream's
    former = root / "rating-events-inbox-0123456789"
    aged(former / "commits" / "0", 20)
    age_tree(former, 20)
    als = root / "3f1c9a0e-5d2b-4c8e-9f00-1a2b3c4d5e6f"  # ALS's RDD checkpoints of a finished fit
    aged(als / "rdd-12" / "part-00000", 8, "z" * 50)
    age_tree(als, 8)
    recent = root / "rating-events-inbox-recent"
    aged(recent / "offsets" / "3", 2)
    running = root / "rating-events-inbox-running"  # a stream on another landing folder, now running
    aged(running / "offsets" / "9", 30)
    age_tree(running, 30)
    before = NOW - timedelta(days=7)

    monkeypatch.setattr(retention, "running_checkpoint", lambda s: running)
    folders, size, kept = retention.expire_checkpoints(settings, before)
    assert (folders, size) == (2, 18 + 50)
    assert not former.exists() and not als.exists()
    assert current.is_dir() and recent.is_dir() and running.is_dir()

    # A stream that runs without having said where (its status file not written yet): keep all.
    monkeypatch.setattr(retention, "running_checkpoint", lambda s: root)
    age_tree(recent, 30)
    assert retention.expire_checkpoints(settings, before)[0] == 0 and recent.is_dir()


def test_a_former_streams_inbox_goes_only_when_empty(settings, monkeypatch):
    monkeypatch.setattr(retention, "running_checkpoint", lambda s: None)
    inboxes = settings.stream_inbox_dir.parent
    empty = inboxes / "aaaaaaaaaa"
    empty.mkdir(parents=True)
    age_tree(empty, 30)
    pending = inboxes / "bbbbbbbbbb"
    aged(pending / "api-1.csv", 30)
    age_tree(pending, 30)
    settings.stream_inbox_dir.mkdir(parents=True)
    age_tree(settings.stream_inbox_dir, 30)  # this stream's inbox, idle for a month

    folders, _, kept = retention.expire_checkpoints(settings, NOW - timedelta(days=7))
    assert folders == 1 and not empty.exists()
    assert pending.is_dir() and (pending / "api-1.csv").exists()
    assert kept == [f"1 unread files in {pending}"]
    assert settings.stream_inbox_dir.is_dir()


def test_running_checkpoint_reads_the_stream_status(settings, monkeypatch):
    from lakehouse.stream import job

    monkeypatch.setattr(job, "running_pid", lambda s: None)
    assert retention.running_checkpoint(settings) is None
    monkeypatch.setattr(job, "running_pid", lambda s: 4242)
    assert retention.running_checkpoint(settings) == settings.checkpoint_dir  # no status yet: all of them
    job.status_file(settings).parent.mkdir(parents=True)
    job.status_file(settings).write_text(json.dumps({"checkpoint": "/elsewhere/cp"}))
    assert retention.running_checkpoint(settings) == Path("/elsewhere/cp")


def test_retention_settings_from_the_environment(monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(key)
    defaults = load_settings()
    assert (defaults.retain_archive_days, defaults.retain_dead_letter_days, defaults.retain_quarantine_days,
            defaults.retain_checkpoint_days, defaults.retain_table_versions_hours) == (30, 30, 90, 7, 168)
    chosen = dataclasses.replace(defaults, retain_archive_days=0, retain_quarantine_days=0.5,
                                 retain_table_versions_hours=1.25)
    for key, value in chosen.as_env().items():
        monkeypatch.setenv(key, value)
    assert load_settings() == chosen
    for bad, message in (("-1", "zero or more"), ("soon", "not a number"), ("inf", "zero or more")):
        monkeypatch.setenv("LAKEHOUSE_RETAIN_QUARANTINE_DAYS", bad)
        with pytest.raises(SystemExit, match=message):
            load_settings()


def test_a_removal_reads_as_a_row_and_a_log_row():
    removed = retention.Removed("stream-archive/", "30 days (LAKEHOUSE_RETAIN_ARCHIVE_DAYS)", NOW, 1234, "files",
                                3 * 1024 * 1024)
    assert removed.row() == ("stream-archive/", "30 days", "2026-06-01 12:00",
                             "1,234 files", "3.0 MiB", "")
    assert removed.log_row("run", NOW) == ("run", NOW, "stream-archive/", "30 days (LAKEHOUSE_RETAIN_ARCHIVE_DAYS)",
                                           NOW, 1234, "files", 3 * 1024 * 1024)
