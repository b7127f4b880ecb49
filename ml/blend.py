"""Linear blending of component predictions, fitted by least squares on validation data.

Features: the baseline and each component's departure from it (component - baseline); with
`support_aware`, also log(1 + ratings of the user) and log(1 + ratings of the movie) and their
products with every feature, so the blend can trust neighbourhood models more for well-supported
users and factor models more for sparse ones (the "support" blending of the Netflix Prize teams).

The normal equations need only sums of products (X'X and X'y), which Spark aggregates in one
pass; the tiny solve happens on the driver. A small ridge keeps it stable when two components
predict almost the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

SUPPORTS = ("user_support", "item_support")


def feature_columns(components: Sequence[str], support_aware: bool) -> dict[str, Column]:
    """Name -> expression of every blend feature (the intercept excepted), in a fixed order."""
    from pyspark.sql import functions as F

    base = {"baseline": F.col("baseline"), **{f"d_{c}": F.col(c) - F.col("baseline") for c in components}}
    features = dict(base)
    if support_aware:
        for support in SUPPORTS:
            log_support = F.log1p(F.col(support))
            features[f"log_{support}"] = log_support
            features.update({f"{name}:log_{support}": column * log_support for name, column in base.items()})
    return features


@dataclass(frozen=True)
class Blend:
    components: tuple[str, ...]
    support_aware: bool
    weights: tuple[float, ...]  # intercept first, then one per feature in `feature_columns` order

    def expression(self) -> Column:
        from pyspark.sql import functions as F

        total = F.lit(self.weights[0])
        for column, weight in zip(feature_columns(self.components, self.support_aware).values(), self.weights[1:]):
            total = total + F.lit(weight) * column
        return total

    def as_params(self) -> dict[str, object]:
        names = ["intercept", *feature_columns(self.components, self.support_aware)]
        return {"blend.support_aware": self.support_aware, **{f"blend.w.{n}": round(w, 6) for n, w in zip(names, self.weights)}}


def fit_blend(validation: DataFrame, components: Sequence[str], support_aware: bool, label: str = "rating", ridge: float = 1e-4) -> Blend:
    import numpy as np
    from pyspark.sql import functions as F

    columns = [F.lit(1.0), *feature_columns(components, support_aware).values()]
    n = len(columns)
    sums = [F.sum(columns[i] * columns[j]).alias(f"xx_{i}_{j}") for i in range(n) for j in range(i, n)]
    sums += [F.sum(columns[i] * F.col(label)).alias(f"xy_{i}") for i in range(n)]
    row = validation.agg(*sums).first()
    xtx = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            xtx[i, j] = xtx[j, i] = row[f"xx_{i}_{j}"]
    xty = np.array([row[f"xy_{i}"] for i in range(n)])
    penalty = ridge * np.diag(np.diag(xtx))  # scale-free ridge on every feature
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    weights = np.linalg.solve(xtx + penalty, xty)
    return Blend(tuple(components), support_aware, tuple(float(w) for w in weights))


def average(blends: Sequence[Blend]) -> Blend:
    """The blend whose weights are the mean of several (one per fold) of the same shape."""
    first = blends[0]
    weights = tuple(sum(w) / len(blends) for w in zip(*(b.weights for b in blends)))
    return Blend(first.components, first.support_aware, weights)
