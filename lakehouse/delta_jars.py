"""Delta Lake's jars: which ones (pinned with their SHA-256, the JVM side of the lock), where they
come from, and how the server's driver gets them.

Resolved once by `lakehouse up` into a cache the project owns (`<data dir>/cache/jars`, or
`LAKEHOUSE_JAR_CACHE`), with Maven and a local repository inside that cache, so the user's
`~/.m2` never matters (a POM there without its jar breaks Spark's own Ivy resolution). Later
starts find the jars there, check their hashes, and need no network. `LAKEHOUSE_DELTA_JARS` (a
folder holding the two jars) is the offline way in.

Why the jars go on `spark.driver.extraClassPath` and not `spark.jars` / `spark.jars.packages`:
those land in spark-submit's class loader, which Hive's `SessionState.close()` closes when a
synchronous Thrift session ends; the next connection then has no Delta (DATA_SOURCE_NOT_FOUND).
The JVM's start-up class path is never closed. Executors in other processes (a cluster) need
them too: `spark.executor.extraClassPath`, with the same paths on every worker.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

from lakehouse.settings import Settings

# pyspark 4.1.0 exactly: on 4.1.4, Delta 4.1.0's ALTER TABLE, COMMENT ON and REORG fail with
# NoClassDefFoundError (IgnoreCachedData, a class 4.1.4 no longer ships). tests/integration/
# test_delta.py runs each of those statements, so a bump of either pin cannot break them silently.
PYSPARK_VERSION = "4.1.0"
DELTA_VERSION = "4.1.0"

# As delta-spark documents it: the SQL extension plus Delta's catalog in place of the session catalog.
SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


@dataclass(frozen=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"


# delta-spark and delta-storage are all Delta needs on a pyspark class path: the rest of what
# Ivy pulls with them (unitycatalog-client, log4j, slf4j) pyspark ships or Delta does not use.
JARS = (
    Jar("io.delta", "delta-spark_4.1_2.13", DELTA_VERSION,
        "9b05d7a82196ee1f1073733a45a2faae59161e52b86ae918fe6742fad6eaf036"),
    Jar("io.delta", "delta-storage", DELTA_VERSION,
        "6d0520ffcc35b582369f92c23fa24e14a5bb935cf6e31ed7f47c5046ae17cb25"),
)


class DeltaJarsError(RuntimeError):
    """The jars cannot be had; the message names them and the way in that needs no network."""


def _artifacts() -> str:
    return " and ".join(j.coordinates for j in JARS)


def check_pins() -> None:
    """The Python packages must be the versions the jars are pinned with."""
    found = {"pyspark": version("pyspark"), "delta-spark": version("delta-spark")}
    wanted = {"pyspark": PYSPARK_VERSION, "delta-spark": DELTA_VERSION}
    wrong = [f"{name} {found[name]} (needs {wanted[name]})" for name in wanted if found[name] != wanted[name]]
    if wrong:
        raise DeltaJarsError(
            f"This environment has {', '.join(wrong)}: the Delta jars are pinned for pyspark "
            f"{PYSPARK_VERSION} + delta-spark {DELTA_VERSION}. Run `make setup` to install the locked versions."
        )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, jar: Jar) -> bool:
    return path.is_file() and sha256(path) == jar.sha256


def _from_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DeltaJarsError(f"LAKEHOUSE_DELTA_JARS={folder} is not a folder")
    paths = []
    for jar in JARS:
        path = folder / jar.file_name
        if not path.is_file():
            raise DeltaJarsError(
                f"LAKEHOUSE_DELTA_JARS={folder} must hold {jar.file_name} ({jar.coordinates}); "
                f"found: {', '.join(sorted(p.name for p in folder.glob('*.jar'))) or 'no jars'}"
            )
        if not _verified(path, jar):
            raise DeltaJarsError(f"{path} is not {jar.coordinates}: its SHA-256 differs from the pinned {jar.sha256}")
        paths.append(path)
    return paths


def cached(settings: Settings) -> list[Path] | None:
    """The jars if they are all in the cache with the pinned hashes, else None. No network."""
    if settings.delta_jars is not None:
        return _from_folder(settings.delta_jars)
    paths = [settings.jar_cache_dir / jar.file_name for jar in JARS]
    return paths if all(_verified(p, j) for p, j in zip(paths, JARS)) else None


def _fetch(jar: Jar, cache: Path) -> None:
    """One jar into `cache` with Maven (the user's Maven settings and mirrors apply), its local
    repository inside the cache: never the user's ~/.m2."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DeltaJarsError(
            f"Delta Lake's jars ({_artifacts()}) are not in {cache} and Maven (`mvn`) is not installed "
            "to fetch them. Install Maven (e.g. `apt-get install maven`), or download the two jars and "
            "set LAKEHOUSE_DELTA_JARS to their folder."
        )
    command = [mvn, "-B", "-q", f"-Dmaven.repo.local={cache / 'm2'}", "dependency:copy",
               f"-Dartifact={jar.coordinates}", f"-DoutputDirectory={cache}", "-Dmdep.overWriteReleases=true"]
    # cwd: the cache, so a pom.xml in the user's working directory is not taken for a project.
    result = subprocess.run(command, cwd=cache, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
        raise DeltaJarsError(
            f"Maven could not fetch {jar.coordinates} (exit {result.returncode}):\n{tail}\n"
            f"Without network access, download {_artifacts()} by hand and set LAKEHOUSE_DELTA_JARS "
            "to the folder holding them."
        )


def resolve(settings: Settings, say: Callable[[str], None] = print) -> list[Path]:
    """The jars, fetched into the cache on first use (with a line per jar and the time taken)."""
    check_pins()
    found = cached(settings)
    if found is not None:
        return found
    cache = settings.jar_cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for jar in JARS:
        path = cache / jar.file_name
        if _verified(path, jar):
            continue
        say(f"fetching {jar.coordinates} into {cache} (first start only) ...")
        _fetch(jar, cache)
        if not _verified(path, jar):
            got = sha256(path) if path.is_file() else "no file"
            raise DeltaJarsError(f"{path}: SHA-256 {got}, expected the pinned {jar.sha256}; not using it")
    say(f"Delta Lake {DELTA_VERSION} jars ready in {time.monotonic() - started:.1f}s (cached for later starts)")
    return [cache / jar.file_name for jar in JARS]


def spark_conf(paths: list[Path]) -> dict[str, str]:
    """What the driver needs for Delta: the SQL extension and catalog, the jars on the class paths."""
    class_path = ":".join(str(p) for p in paths)
    return {**SQL_CONF, "spark.driver.extraClassPath": class_path, "spark.executor.extraClassPath": class_path}
