"""Settings from the environment."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakehouse.settings import Settings, load_settings


def test_settings_round_trip_through_the_environment(monkeypatch, tmp_path):
    original = Settings(
        home=tmp_path, thrift_port=11000, connect_port=16000, master="local[2]",
        driver_memory="2g", delta_jars=tmp_path / "jars", jar_cache=tmp_path / "jar-cache",
        mlflow_dir=tmp_path / "mlflow", mlflow_tracking_uri="http://127.0.0.1:5999",
        stream_dir=tmp_path / "landing", superset_port=8999, superset_env_file=tmp_path / ".env",
        docs_port=8185,
    )
    for key, value in original.as_env().items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original


def test_defaults_and_bad_values(monkeypatch):
    for key in [k for k in os.environ if k.startswith("LAKEHOUSE_")]:
        monkeypatch.delenv(key)
    settings = load_settings()
    assert (settings.host, settings.thrift_port, settings.connect_port) == ("127.0.0.1", 10000, 15002)
    assert settings.home == Path(".lakehouse").resolve()
    assert settings.jar_cache_dir == settings.home / "cache" / "jars"
    assert settings.tracking_uri == f"sqlite:///{Path('mlflow').resolve() / 'mlflow.db'}"
    assert settings.stream_dir == Path("stream/ratings").resolve()
    assert settings.holdout_dir == settings.home / "holdout"
    assert (settings.docs_port, settings.docs_dir) == (8085, settings.home / "docs")
    monkeypatch.setenv("LAKEHOUSE_TABLE_FORMAT", "parquet")  # the retired switch: said loudly, not ignored
    with pytest.raises(SystemExit, match="retired: every table is a Delta table"):
        load_settings()
    monkeypatch.setenv("LAKEHOUSE_TABLE_FORMAT", "delta")
    assert load_settings().home == Path(".lakehouse").resolve()
    monkeypatch.setenv("LAKEHOUSE_THRIFT_PORT", "ten")
    with pytest.raises(SystemExit, match="not an integer"):
        load_settings()


def test_binding_beyond_loopback_warns_what_is_exposed(tmp_path):
    import dataclasses

    from lakehouse.settings import Settings, exposure_warning

    base = Settings(home=tmp_path)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert exposure_warning(dataclasses.replace(base, host=host)) is None, host
    for host in ("0.0.0.0", "192.168.1.20", "lakehouse.example.org"):
        warning = exposure_warning(dataclasses.replace(base, host=host))
        assert warning and "NO authentication" in warning and "Spark Connect (:15002)" in warning, host
