"""Settings from the environment, and the table-format candidates the server tries."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakehouse import table_format
from lakehouse.settings import Settings, load_settings


def test_settings_round_trip_through_the_environment(monkeypatch, tmp_path):
    original = Settings(
        home=tmp_path, thrift_port=11000, connect_port=16000, master="local[2]",
        driver_memory="2g", table_format="parquet", delta_jars=tmp_path / "jars",
        mlflow_dir=tmp_path / "mlflow", mlflow_tracking_uri="http://127.0.0.1:5999",
        stream_dir=tmp_path / "landing", superset_port=8999, superset_env_file=tmp_path / ".env",
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
    assert settings.table_format == "auto"
    assert settings.tracking_uri == f"sqlite:///{Path('mlflow').resolve() / 'mlflow.db'}"
    assert settings.stream_dir == Path("stream/ratings").resolve()
    assert settings.holdout_dir == settings.home / "holdout"
    monkeypatch.setenv("LAKEHOUSE_TABLE_FORMAT", "iceberg")
    with pytest.raises(SystemExit, match="expected one of auto, delta, parquet"):
        load_settings()
    monkeypatch.setenv("LAKEHOUSE_TABLE_FORMAT", "auto")
    monkeypatch.setenv("LAKEHOUSE_THRIFT_PORT", "ten")
    with pytest.raises(SystemExit, match="not an integer"):
        load_settings()


def test_auto_tries_delta_through_the_pip_helper_then_parquet(tmp_path):
    first, second = table_format.candidates(Settings(home=tmp_path))
    assert first.name == "delta" and second.name == "parquet"
    assert first.conf["spark.jars.packages"].startswith("io.delta:delta-spark_")
    assert first.conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert first.conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert "Maven Central is unreachable" in first.fallback_reason


def test_forced_formats(tmp_path):
    (only,) = table_format.candidates(Settings(home=tmp_path, table_format="parquet"))
    assert only.name == "parquet" and only.conf == {}
    (only,) = table_format.candidates(Settings(home=tmp_path, table_format="delta"))
    assert only.name == "delta"  # no Parquet fallback: explicit delta fails fast


def test_local_jar_folder(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    with pytest.raises(table_format.TableFormatError, match="must hold delta-spark"):
        table_format.candidates(Settings(home=tmp_path, delta_jars=jars))
    (jars / "delta-spark_4.2_2.13-4.4.1.jar").touch()
    (jars / "delta-storage-4.4.1.jar").touch()
    delta, parquet = table_format.candidates(Settings(home=tmp_path, delta_jars=jars))
    assert delta.conf["spark.jars"].count(".jar") == 2
    assert "spark.jars.packages" not in delta.conf
