"""MLflow in one place: where runs go, the tags every run carries, and model registration.

The default store is SQLite plus an artifact folder under `mlflow/` (LAKEHOUSE_MLFLOW_DIR); point
LAKEHOUSE_MLFLOW_TRACKING_URI at any MLflow server to use that instead.
"""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ml.data import InputTable

EXPERIMENTS = {
    "rating": "movielens-rating-prediction",
    "ranking": "movielens-top-n-ranking",
    "similarity": "movielens-user-similarity",
}
RATING_MODEL = "als-rating"
RANKING_MODEL = "als-ranking"
CHAMPION = "champion"
REPO_ROOT = Path(__file__).resolve().parent.parent


def pip_requirements() -> list[str]:
    """What a reloaded model needs, pinned to the versions that produced it."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", "pyarrow")]


def configure(settings: Settings) -> MlflowClient:
    import mlflow

    if not settings.mlflow_tracking_uri:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    # The SQLite store logs its schema migrations at INFO on first use: noise for job output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient()


def experiment_id(settings: Settings, kind: str) -> str:
    import mlflow

    name = EXPERIMENTS[kind]
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None if settings.mlflow_tracking_uri else (settings.artifacts_dir / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def code_version() -> str:
    """The git commit of this code, with `-dirty` when it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        from importlib.metadata import version

        return f"movielens-lakehouse {version('movielens-lakehouse')} (not a git checkout)"
    return commit + ("-dirty" if dirty else "")


def run_tags(input_table: InputTable, protocol: str, protocol_description: str, model_type: str) -> dict[str, str]:
    """The tags every run carries: what data, which protocol, which code."""
    version = code_version()
    return {
        **input_table.as_tags(),
        "protocol": protocol,
        "protocol.description": protocol_description,
        "model_type": model_type,
        "code_version": version,
        "mlflow.source.git.commit": version.removesuffix("-dirty"),
    }


def register_champion(client: MlflowClient, model_uri: str, name: str, run_id: str, description: str) -> str:
    """Register `model_uri` as a new version of `name` and point the `champion` alias at it."""
    import mlflow

    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id}).version
    client.update_model_version(name, version, description)
    client.set_registered_model_alias(name, CHAMPION, version)
    return str(version)
