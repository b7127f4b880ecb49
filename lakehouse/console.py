"""Terminal output shared by the CLI commands: one rich console, tables and stage timing."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from rich.console import Console
from rich.table import Table

# Logs and CI are not terminals: give their tables room instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A rich table; numeric columns right-aligned."""
    out = Table(title=title, title_justify="left", show_lines=False)
    for index, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[index], (int, float)) for r in rows)
        out.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        out.add_row(*(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in row))
    return out


def key_values(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table of labelled values, without a header row."""
    out = Table(title=title, title_justify="left", show_header=False)
    out.add_column(style="bold")
    out.add_column()
    for key, value in rows:
        out.add_row(key, value)
    return out


@dataclass
class Stages:
    """Per-stage lines with timings, kept for the final summary."""

    timings: list[tuple[str, float, str]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        """Time a stage; the body may append a short outcome note to the yielded list."""
        console.rule(f"[bold]{name}")
        notes: list[str] = []
        started = time.monotonic()
        try:
            yield notes
        except BaseException:
            self.timings.append((name, time.monotonic() - started, "FAILED"))
            raise
        elapsed = time.monotonic() - started
        self.timings.append((name, elapsed, "; ".join(notes) or "ok"))
        console.print(f"[green]✓[/] {name} ({elapsed:.1f}s)")

    def summary(self) -> Table:
        return table("Stages", ["stage", "seconds", "outcome"], [(n, f"{s:.1f}", o) for n, s, o in self.timings])
