"""`delta.per_table` (one operation over many tables, a few at a time) and the retention check
that concurrent short VACUUMs of one session share."""
from __future__ import annotations

import threading
import time

import pytest

from lakehouse import delta


def test_results_come_in_the_items_order_and_run_concurrently():
    running, peak, lock = [0], [0], threading.Lock()

    def slow_square(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 * (6 - n))  # the first items finish last
        with lock:
            running[0] -= 1
        return n * n

    assert delta.per_table(slow_square, range(6)) == [0, 1, 4, 9, 16, 25]
    assert peak[0] == 4  # four threads, never more
    assert delta.per_table(slow_square, []) == []


def test_the_first_error_is_raised():
    def fails_on_two(n: int) -> int:
        if n == 2:
            raise ValueError("table 2 is gone")
        return n

    with pytest.raises(ValueError, match="table 2 is gone"):
        delta.per_table(fails_on_two, range(5))


class FakeSession:
    """The two Spark Connect calls `vacuum` makes, with the retention check as a real session keeps it."""

    def __init__(self):
        self.check_on = True
        self.seen_on: list[str] = []
        self.conf = self

    def set(self, key, value):
        assert key == delta.RETENTION_CHECK and value == "false"
        self.check_on = False

    def unset(self, key):
        assert key == delta.RETENTION_CHECK
        self.check_on = True

    def sql(self, statement):
        if statement.startswith("vacuum") and "retain 0 hours" in statement:
            time.sleep(0.05)  # the statement runs while other threads set and unset the check
            if self.check_on:
                self.seen_on.append(statement)
        return self

    def collect(self):
        return []


def test_concurrent_short_vacuums_of_one_session_all_run_with_the_check_off(monkeypatch):
    session = FakeSession()
    monkeypatch.setattr(delta, "history", lambda spark, table, limit=1: [])
    names = [f"gold.t{i}" for i in range(12)]
    results = delta.per_table(lambda name: delta.vacuum(session, name, 0), names)
    assert results == [(0, 0)] * len(names)
    assert session.seen_on == []  # no VACUUM ran after another thread turned the check back on
    assert session.check_on  # and it is on again once they are all done
