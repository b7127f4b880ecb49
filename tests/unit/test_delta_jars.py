"""Delta Lake's jars (lakehouse/delta_jars.py), without a Spark server: the folder and the cache
are checked by name and SHA-256, a filled cache needs no Maven, and a missing Maven says how to
get the jars offline."""
from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from lakehouse import delta_jars
from lakehouse.delta_jars import JARS, DeltaJarsError
from lakehouse.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
REAL_JARS = REPO / ".cache" / "jars"  # the verified jars `make test-jars` resolved here
DELTA_SPARK, DELTA_STORAGE = JARS


@pytest.fixture
def real_jars() -> Path:
    missing = [j.file_name for j in JARS if not (REAL_JARS / j.file_name).is_file()]
    if missing:
        reason = f"the real Delta jars are not in {REAL_JARS} (missing {', '.join(missing)}): run `make test-jars` (or `lakehouse jars`) once"
        print(reason)
        pytest.skip(reason)
    for jar in JARS:
        if delta_jars.sha256(REAL_JARS / jar.file_name) != jar.sha256:
            reason = f"{REAL_JARS / jar.file_name} is not the pinned {jar.coordinates}"
            print(reason)
            pytest.skip(reason)
    return REAL_JARS


@pytest.fixture
def no_maven(tmp_path, monkeypatch) -> Path:
    """PATH is an empty folder: `mvn` (and everything else) cannot be found."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("mvn") is None
    return empty


def settings_with(tmp_path: Path, **kwargs) -> Settings:
    return Settings(home=tmp_path / "home", **kwargs)


def copy_jars(source: Path, destination: Path, jars=JARS) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for jar in jars:
        shutil.copyfile(source / jar.file_name, destination / jar.file_name)
    return destination


# ---- LAKEHOUSE_DELTA_JARS ------------------------------------------------------------------


def test_delta_jars_folder_missing_a_jar_names_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "jars"
    folder.mkdir()
    (folder / "something-else.jar").write_bytes(b"PK")
    monkeypatch.setenv("LAKEHOUSE_DELTA_JARS", str(folder))
    settings = load_settings()
    assert settings.delta_jars == folder.resolve()
    with pytest.raises(DeltaJarsError) as error:
        delta_jars.cached(settings)
    message = str(error.value)
    assert DELTA_SPARK.file_name in message and DELTA_SPARK.coordinates in message
    assert "LAKEHOUSE_DELTA_JARS" in message
    assert "something-else.jar" in message  # what it found instead


def test_delta_jars_folder_missing_the_second_jar_names_it(tmp_path, real_jars, no_maven):
    folder = copy_jars(real_jars, tmp_path / "jars", jars=(DELTA_SPARK,))
    settings = settings_with(tmp_path, delta_jars=folder)
    with pytest.raises(DeltaJarsError, match=DELTA_STORAGE.file_name.replace(".", r"\.")):
        delta_jars.resolve(settings, say=lambda _m: None)


def test_delta_jars_folder_that_is_not_a_folder(tmp_path):
    settings = settings_with(tmp_path, delta_jars=tmp_path / "nowhere")
    with pytest.raises(DeltaJarsError, match="is not a folder"):
        delta_jars.cached(settings)


def test_a_jar_with_wrong_bytes_is_refused_by_its_sha256(tmp_path):
    folder = tmp_path / "jars"
    folder.mkdir()
    for jar in JARS:
        (folder / jar.file_name).write_bytes(b"PK\x03\x04 not the real jar")
    settings = settings_with(tmp_path, delta_jars=folder)
    with pytest.raises(DeltaJarsError) as error:
        delta_jars.cached(settings)
    message = str(error.value)
    assert "SHA-256" in message
    assert str(folder / DELTA_SPARK.file_name) in message and DELTA_SPARK.sha256 in message


def test_delta_jars_folder_with_the_right_jars(tmp_path, real_jars, no_maven):
    folder = copy_jars(real_jars, tmp_path / "jars")
    settings = settings_with(tmp_path, delta_jars=folder)
    assert delta_jars.resolve(settings, say=lambda _m: None) == [folder / j.file_name for j in JARS]


# ---- the cache -----------------------------------------------------------------------------


def test_cached_is_none_for_an_empty_or_missing_cache(tmp_path):
    assert delta_jars.cached(settings_with(tmp_path, jar_cache=tmp_path / "not-there")) is None
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    assert delta_jars.cached(settings_with(tmp_path, jar_cache=empty)) is None
    # the default cache is under the data directory
    assert settings_with(tmp_path).jar_cache_dir == tmp_path / "home" / "cache" / "jars"
    assert delta_jars.cached(settings_with(tmp_path)) is None


def test_cached_is_none_when_a_cached_jar_is_corrupt(tmp_path, real_jars):
    cache = copy_jars(real_jars, tmp_path / "cache")
    settings = settings_with(tmp_path, jar_cache=cache)
    assert delta_jars.cached(settings) == [cache / j.file_name for j in JARS]
    with (cache / DELTA_STORAGE.file_name).open("ab") as jar:
        jar.write(b"\0")
    assert delta_jars.cached(settings) is None


def test_resolve_with_a_filled_cache_runs_no_maven(tmp_path, real_jars, no_maven, monkeypatch):
    def no_fetch(jar, cache):
        raise AssertionError(f"resolve() tried to fetch {jar.coordinates} although the cache holds it")

    monkeypatch.setattr(delta_jars, "_fetch", no_fetch)
    monkeypatch.setattr(delta_jars.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a!r}"))
    cache = copy_jars(real_jars, tmp_path / "cache")
    said: list[str] = []
    found = delta_jars.resolve(settings_with(tmp_path, jar_cache=cache), say=said.append)
    assert found == [cache / j.file_name for j in JARS]
    assert said == []  # nothing fetched, nothing to report


def test_resolve_with_an_empty_cache_and_no_maven_says_how_to_get_the_jars(tmp_path, no_maven):
    cache = tmp_path / "cache"
    with pytest.raises(DeltaJarsError) as error:
        delta_jars.resolve(settings_with(tmp_path, jar_cache=cache), say=lambda _m: None)
    message = str(error.value)
    for jar in JARS:
        assert jar.coordinates in message
    assert "LAKEHOUSE_DELTA_JARS" in message
    assert "mvn" in message or "Maven" in message
    assert not any(cache.glob("*.jar"))


def fake_maven(bin_dir: Path, jar_source: Path | None, log: Path) -> None:
    """An `mvn` that records its arguments and copies the named jar from `jar_source` (or writes
    junk when None) into -DoutputDirectory."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "mvn"
    copy = (f'cp "{jar_source}/$name" "$out/$name"' if jar_source is not None
            else 'printf "junk" > "$out/$name"')
    script.write_text(f"""#!/bin/sh
echo "$@" >> "{log}"
for arg in "$@"; do
  case "$arg" in
    -Dartifact=*) coords="${{arg#-Dartifact=}}" ;;
    -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}" ;;
  esac
done
artifact=$(echo "$coords" | cut -d: -f2)
version=$(echo "$coords" | cut -d: -f3)
name="$artifact-$version.jar"
{copy}
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_resolve_fetches_with_maven_into_its_own_repository(tmp_path, real_jars, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "mvn.log"
    fake_maven(bin_dir, real_jars, log)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # sh, cp, cut
    cache = tmp_path / "cache"
    said: list[str] = []
    found = delta_jars.resolve(settings_with(tmp_path, jar_cache=cache), say=said.append)
    assert found == [cache / j.file_name for j in JARS]
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    for jar, call in zip(JARS, calls):
        assert f"-Dartifact={jar.coordinates}" in call
        assert f"-Dmaven.repo.local={cache / 'm2'}" in call  # never the user's ~/.m2
    assert any("fetching" in line for line in said) and "ready" in said[-1]
    # a second resolve finds them cached: Maven is not run again
    assert delta_jars.resolve(settings_with(tmp_path, jar_cache=cache), say=said.append) == found
    assert len(log.read_text().splitlines()) == 2


def test_resolve_refuses_what_maven_fetched_if_its_hash_differs(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "mvn.log"
    fake_maven(bin_dir, None, log)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    cache = tmp_path / "cache"
    with pytest.raises(DeltaJarsError, match="SHA-256") as error:
        delta_jars.resolve(settings_with(tmp_path, jar_cache=cache), say=lambda _m: None)
    assert DELTA_SPARK.sha256 in str(error.value) and "not using it" in str(error.value)
    assert delta_jars.cached(settings_with(tmp_path, jar_cache=cache)) is None


# ---- pins and Spark conf -------------------------------------------------------------------


def test_check_pins_passes_in_this_environment():
    delta_jars.check_pins()
    assert (delta_jars.PYSPARK_VERSION, delta_jars.DELTA_VERSION) == ("4.1.0", "4.1.0")


def test_check_pins_refuses_another_pyspark(monkeypatch):
    real = delta_jars.version
    monkeypatch.setattr(delta_jars, "version", lambda name: "4.1.4" if name == "pyspark" else real(name))
    with pytest.raises(DeltaJarsError, match=r"pyspark 4\.1\.4 \(needs 4\.1\.0\)"):
        delta_jars.check_pins()


def test_spark_conf_puts_both_jars_on_the_start_up_class_paths(tmp_path):
    paths = [tmp_path / j.file_name for j in JARS]
    conf = delta_jars.spark_conf(paths)
    for key in ("spark.driver.extraClassPath", "spark.executor.extraClassPath"):
        assert conf[key].split(":") == [str(p) for p in paths], key
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    # never the loaders a closing Thrift session closes
    assert not {"spark.jars", "spark.jars.packages"} & set(conf)
