"""Erasure requests from the REST API (`DELETE /v1/users/{id}`): each one runs
`lakehouse forget-user` as a process of its own (minutes of Spark work, which an API worker must
not hold a request open for), logging to <data dir>/logs/erasure-<request id>.log."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from lakehouse.settings import Settings


def start_erasure(settings: Settings, user_id: int) -> tuple[str, Path]:
    """Start `lakehouse forget-user USER_ID` in the background; (request id, its log file)."""
    request_id = uuid.uuid4().hex
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log = settings.logs_dir / f"erasure-{request_id}.log"
    with open(log, "ab") as out:
        subprocess.Popen(  # noqa: S603 - our own CLI, with an int argument
            [sys.executable, "-m", "lakehouse.cli", "forget-user", str(int(user_id))],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **settings.as_env()}, cwd=Path(__file__).resolve().parents[2],
        )
    return request_id, log
