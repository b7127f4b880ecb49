"""Run dbt (the project at the repository root) against the lakehouse server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lakehouse.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The nodes that read the recommender jobs' tables (the `ml` source and everything downstream):
# they can only build once `lakehouse train` and `lakehouse similarity` have run.
ML_NODES = "source:ml+"
# The nodes that read the stream's tables: rebuilt after new ratings stream in, so gold has them.
LIVE_NODES = "source:stream+"


@dataclass(frozen=True)
class DbtOutcome:
    returncode: int
    statuses: dict[str, int]  # e.g. {"success": 20, "pass": 60, "fail": 0}
    failures: list[str]       # unique ids of nodes that errored or failed

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


def run_dbt(settings: Settings, *args: str, project_dir: Path = PROJECT_DIR) -> DbtOutcome:
    """`dbt <args>` in the project, its output streamed to the terminal; results from run_results.json."""
    target_dir = Path(os.environ.get("DBT_TARGET_PATH", project_dir / "target"))
    results_file = target_dir / "run_results.json"
    results_file.unlink(missing_ok=True)
    proc = subprocess.run(  # noqa: S603
        [dbt_executable(), *args, "--project-dir", str(project_dir)],
        cwd=project_dir,
        env=dbt_env(settings),
        check=False,
    )
    statuses: Counter[str] = Counter()
    failures = []
    if results_file.exists():
        for result in json.loads(results_file.read_text()).get("results", []):
            statuses[result["status"]] += 1
            if result["status"] in ("error", "fail"):
                failures.append(result["unique_id"])
    return DbtOutcome(proc.returncode, dict(statuses), failures)
