"""Work beside the pipeline's stages: `make run` starts the MLflow UI and Superset (tens of seconds
of waiting on their own processes: Superset's metadata migrations, gunicorn importing the app)
while the first stages run, the stream while the similarity graph is built, the housekeeping
while the dashboards are imported."""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from lakehouse.console import console


class Beside:
    """Work started in a thread while the stages go on, each awaited by name in the stage that
    needs it. Its messages are printed then, not inside another stage's lines; its failure is
    raised there."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="beside")
        self._futures: dict[str, Future] = {}

    def start(self, name: str, up: Callable[[Callable[[str], None]], object]) -> None:
        def timed():
            messages: list[str] = []  # printed by the stage that waits: no lines inside another stage's
            started = time.monotonic()
            outcome = up(messages.append)
            return outcome, time.monotonic() - started, messages

        self._futures[name] = self._pool.submit(timed)

    def wait(self, name: str, notes: list[str], label: str, started: Callable[[object], bool] = bool,
             done: str = "started"):
        """What `up` returned, once it has; a note of how long it took and how much of that this
        stage waited for."""
        waited = time.monotonic()
        outcome, seconds, messages = self._futures.pop(name).result()
        for message in messages:
            console.print(message)
        state = f"{done} in {seconds:.1f}s beside the stages before" if started(outcome) else "already running"
        notes.append(f"{label} {state} (waited {time.monotonic() - waited:.1f}s)")
        return outcome
