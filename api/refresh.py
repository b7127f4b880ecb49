"""Keep the served Catalog current: poll the tables' Delta versions, rebuild on a change, swap.

The poll lists each served table's `_delta_log` (no data is read); only a new version triggers a
rebuild, which reads every table at its newest version into a fresh Catalog beside the old one.
The swap is one reference assignment, so a request sees the old snapshot or the new one, never a
mix; a failed rebuild keeps the old snapshot and is retried at the next poll.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from api import catalog
from api.catalog import Catalog

log = logging.getLogger("lakehouse.api")
if not log.handlers:  # uvicorn configures only its own loggers: refreshes go to the same log file
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)


class Live:
    def __init__(self, warehouse: Path, poll_seconds: float = 1.0) -> None:
        self.warehouse = warehouse
        self.poll_seconds = poll_seconds
        self.catalog: Catalog | None = None
        self.problem: str | None = "not loaded yet"
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one rebuild at a time (the thread, or a caller's refresh())

    def refresh(self) -> bool:
        """Rebuild if a served table has a new version; True when a new snapshot was swapped in."""
        with self._lock:
            now = catalog.current_versions(self.warehouse)
            old = self.catalog
            if old is not None and all(now.get(name) == version for name, version in old.versions.items()) \
                    and set(now) <= set(old.versions):
                return False
            try:
                new = catalog.load(self.warehouse, old)
            except catalog.NotReady as error:
                self.problem = str(error)
                return False
            except Exception as error:  # noqa: BLE001 - keep serving the old snapshot; retried next poll
                self.problem = f"refresh failed: {type(error).__name__}: {error}"
                log.exception("refresh failed; still serving %s", old.versions if old else "nothing")
                return False
            self.catalog, self.problem = new, None
            self.refreshes += 1
            log.info("serving %s (loaded in %.2fs, %.1f MB)", new.versions, new.load_seconds, new.nbytes / 1e6)
            return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="catalog-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.poll_seconds)
