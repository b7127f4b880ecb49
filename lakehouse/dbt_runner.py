"""Run dbt (the project at the repository root) against the lakehouse server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The nodes that read the recommender jobs' tables (the `ml` source and everything downstream):
# they can only build once `lakehouse train` and `lakehouse similarity` have run.
ML_NODES = "source:ml+"
# The nodes that read the stream's tables: rebuilt after new ratings stream in, so gold has them.
LIVE_NODES = "source:stream+"
# The data tests that check what the stream adds: its sources, its staging and singular tests, the
# union with the batch ratings, gold.ratings and the live marts. The aggregates' own tests (31 of
# the 63 downstream of the stream) ran in the full build; a rebuild after the stream skips them.
STREAM_TESTS = (
    "source:stream,resource_type:test",
    f"{LIVE_NODES},resource_type:test,path:models/staging",
    f"{LIVE_NODES},resource_type:test,path:models/marts/stream",
    f"{LIVE_NODES},resource_type:test,path:data_tests",
    "int_ratings_unioned_with_stream+1,resource_type:test",  # +1: the tests on the model itself
    "ratings+1,resource_type:test",
)
# `dbt build` arguments for the rebuild after the stream: the models downstream of it, and those
# tests only (`empty`: a selected model brings none of its tests along).
LIVE_BUILD = ("--select", f"{LIVE_NODES},resource_type:model", *STREAM_TESTS, "--indirect-selection", "empty")


@dataclass(frozen=True)
class DbtOutcome:
    returncode: int
    statuses: dict[str, int]  # e.g. {"success": 20, "pass": 60, "fail": 0}
    failures: list[str]       # unique ids of nodes that errored or failed
    succeeded: list[str] = field(default_factory=list)  # unique ids of the nodes built or passed

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """'21 built, 101 tests passed, 0 failed' in the words of dbt's statuses."""
        words = {"success": "built", "pass": "tests passed", "warn": "warned", "fail": "tests failed",
                 "error": "errors", "skipped": "skipped"}
        parts = [f"{self.statuses.get(status, 0)} {word}" for status, word in words.items()
                 if self.statuses.get(status, 0) or status in ("success", "pass")]
        return ", ".join(parts)


def dbt_executable() -> str:
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


def dbt_env(settings: Settings) -> dict[str, str]:
    """profiles.yml reads host and port from these; dbt's own log goes under the data directory."""
    return {
        **os.environ,
        **settings.as_env(),
        "DBT_LOG_PATH": str(settings.logs_dir / "dbt"),
        "DBT_PROFILES_DIR": str(PROJECT_DIR),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def run_dbt(settings: Settings, *args: str, project_dir: Path = PROJECT_DIR,
            target_dir: Path | None = None) -> DbtOutcome:
    """`dbt <args>` in the project, its output streamed to the terminal; results from run_results.json.
    `target_dir` overrides where dbt writes its artifacts (else DBT_TARGET_PATH, else target/)."""
    env = dbt_env(settings)
    if target_dir is not None:
        env["DBT_TARGET_PATH"] = str(target_dir)
    target_dir = Path(env.get("DBT_TARGET_PATH", project_dir / "target"))
    results_file = target_dir / "run_results.json"
    results_file.unlink(missing_ok=True)
    proc = subprocess.run(  # noqa: S603
        [dbt_executable(), *args, "--project-dir", str(project_dir)],
        cwd=project_dir,
        env=env,
        check=False,
    )
    statuses: Counter[str] = Counter()
    failures, succeeded = [], []
    if results_file.exists():
        for result in json.loads(results_file.read_text()).get("results", []):
            statuses[result["status"]] += 1
            if result["status"] in ("error", "fail"):
                failures.append(result["unique_id"])
            elif result["status"] in ("success", "pass"):
                succeeded.append(result["unique_id"])
    return DbtOutcome(proc.returncode, dict(statuses), failures, succeeded)


@dataclass(frozen=True)
class SourceFreshness:
    """One source table's `dbt source freshness` result."""

    source: str  # <source>.<table>, e.g. stream.stream_batches
    status: str  # pass, warn, error or runtime error
    age_seconds: float | None  # since its latest loaded_at_field value
    message: str = ""  # dbt's error, for a runtime error

    @property
    def stale(self) -> bool:
        return self.status in ("warn", "error")

    def describe(self) -> str:
        if self.status == "runtime error":
            return f"{self.source}: could not be checked ({self.message.splitlines()[0][:200] if self.message else 'see the dbt log'})"
        age = "never loaded" if self.age_seconds is None else f"last load {_age(self.age_seconds)} ago"
        return f"{self.source}: {age}" + (" (stale)" if self.stale else "")


@dataclass(frozen=True)
class FreshnessOutcome:
    returncode: int
    sources: list[SourceFreshness]

    @property
    def stale(self) -> list[SourceFreshness]:
        return [s for s in self.sources if s.stale or s.status == "runtime error"]

    def describe(self) -> str:
        """'4 fresh' or '3 fresh, 1 stale: stream.stream_batches (last load 2.1 h ago)'."""
        fresh = sum(1 for s in self.sources if s.status == "pass")
        if not self.sources:
            return "no source with a freshness check answered (see the dbt log)"
        stale = self.stale
        return f"{fresh} fresh" + (f", {len(stale)} stale: " + "; ".join(s.describe() for s in stale) if stale else "")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def read_freshness(sources_file: Path) -> list[SourceFreshness]:
    """The results in dbt's sources.json (what `dbt source freshness` writes)."""
    if not sources_file.exists():
        return []
    results = []
    for result in json.loads(sources_file.read_text()).get("results", []):
        unique_id = result.get("unique_id", "")
        source = ".".join(unique_id.split(".")[-2:])  # source.<project>.<source>.<table>
        results.append(SourceFreshness(source, result.get("status", "runtime error"),
                                       result.get("max_loaded_at_time_ago_in_s"), result.get("error") or ""))
    return results


def source_freshness(settings: Settings, *args: str, project_dir: Path = PROJECT_DIR) -> FreshnessOutcome:
    """`dbt source freshness` over the sources that declare a `freshness` (models/staging/
    _*__sources.yml): how long since each was last loaded, and which are past their warn_after.
    Only warn_after thresholds are declared, so staleness is a warning: the caller reports it."""
    target_dir = Path(os.environ.get("DBT_TARGET_PATH", project_dir / "target"))
    sources_file = target_dir / "sources.json"
    sources_file.unlink(missing_ok=True)
    proc = subprocess.run(  # noqa: S603
        [dbt_executable(), "source", "freshness", *args, "--project-dir", str(project_dir)],
        cwd=project_dir,
        env=dbt_env(settings),
        check=False,
    )
    return FreshnessOutcome(proc.returncode, read_freshness(sources_file))
