"""Bookkeeping of a hyperparameter sweep: one candidate per configuration, its metrics per split,
and the MLflow child run that records it."""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


@dataclass
class Candidate:
    """One configuration of one model family, evaluated on every split."""

    family: str  # baseline, als, als_residual, item_knn, blend, popularity, implicit_als
    name: str  # readable run name, e.g. "als_residual rank=20 reg=0.05"
    params: dict[str, object]
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> metrics
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    fit_seconds: list[float] = field(default_factory=list)
    fitted: dict[str, object] = field(default_factory=dict)  # split -> fitted model (not logged)

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.fit_seconds.append(time.perf_counter() - started)

    def mean(self, which: str, metric: str) -> float:
        values = [m[metric] for m in (self.validation if which == "validation" else self.test).values()]
        return statistics.fmean(values) if values else float("nan")

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: per split (`rmse_u1`) and mean (`rmse`), validation prefixed `val_`."""
        out: dict[str, float] = {}
        for prefix, per_split in (("val_", self.validation), ("", self.test)):
            names = sorted({k for m in per_split.values() for k in m})
            for metric in names:
                for split, values in per_split.items():
                    if len(per_split) > 1 and metric in values:
                        out[f"{prefix}{metric}_{split}"] = values[metric]
                out[f"{prefix}{metric}"] = statistics.fmean(v[metric] for v in per_split.values() if metric in v)
        if self.fit_seconds:
            out["fit_seconds"] = statistics.fmean(self.fit_seconds)
        return out


def best(candidates: list[Candidate], metric: str, *, lower_is_better: bool) -> Candidate:
    """The candidate with the best mean validation `metric` (ties: the first listed)."""
    key = (lambda c: c.mean("validation", metric)) if lower_is_better else (lambda c: -c.mean("validation", metric))
    return min(candidates, key=key)
