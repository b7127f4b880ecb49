"""The champions as MLflow pyfunc models: reloadable anywhere with pandas and NumPy, no Spark.

A fitted Spark model is exported as small Parquet files among the model's MLflow artifacts
(biases, factors, neighbour lists, blend weights; files pandas reads, not lakehouse tables); `mlflow.pyfunc.load_model(...).predict(df)` reproduces the Spark predictions
(a test checks they agree). `export_*` runs on the Spark side; the classes below are what MLflow
pickles and reloads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow.pyfunc
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ml.ranking_model import RankingModel
    from ml.rating_model import RatingModel


def _local(frame) -> pd.DataFrame:
    """A Spark DataFrame as pandas, without the Spark Connect plan metrics pandas cannot serialise."""
    local = frame.toPandas()
    local.attrs = {}
    return local


def user_columns(file_name: str, columns: list[str]) -> list[str]:
    """The columns of an exported artifact file that hold user ids (what `lakehouse forget-user`
    erases by): ALS's factor files name them `id`, the rest `user_id`; a k-NN model's
    neighbours are users only in a user-based model."""
    if file_name.endswith("users.parquet"):
        return ["id"]
    if file_name.endswith("_neighbours.parquet"):
        return ["user_id", "neighbour_id"] if "user_id" in columns else []
    return ["user_id"] if "user_id" in columns else []


def export_rating_model(model: RatingModel, folder: Path) -> dict[str, str]:
    """Write the artifacts of a fitted rating model; returns MLflow's {name: path} map."""
    from ml.knn import FittedKnn
    from ml.rating_model import FittedAls

    folder.mkdir(parents=True, exist_ok=True)
    b = model.baseline
    _local(b.user_bias).to_parquet(folder / "user_bias.parquet")
    _local(b.item_bias).to_parquet(folder / "item_bias.parquet")
    blend = model.blend
    spec = {"global_mean": b.global_mean, "scale": list(model.scale), "components": [],
            "blend": {"components": list(blend.components), "support_aware": blend.support_aware,
                      "weights": list(blend.weights)} if blend else None}
    for component in model.components:
        if isinstance(component, FittedAls):
            _local(component.model.userFactors).to_parquet(folder / f"{component.name}_users.parquet")
            _local(component.model.itemFactors).to_parquet(folder / f"{component.name}_items.parquet")
            spec["components"].append({"name": component.name, "kind": "als", "on_residuals": component.on_residuals})
        elif isinstance(component, FittedKnn):
            _local(component.neighbours).to_parquet(folder / f"{component.name}_neighbours.parquet")
            spec["components"].append({"name": component.name, "kind": "knn", "by": component.params.by, "k": component.params.k})
            if not (folder / "residuals.parquet").exists():
                _local(component.residuals).to_parquet(folder / "residuals.parquet")
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    return {"model": str(folder)}


class RatingPyfunc(mlflow.pyfunc.PythonModel):
    """predict(DataFrame[user_id, movie_id]) -> predicted ratings (cold start: the baseline)."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"])
        self.spec = json.loads((folder / "spec.json").read_text())
        self.users = pd.read_parquet(folder / "user_bias.parquet").set_index("user_id")
        self.items = pd.read_parquet(folder / "item_bias.parquet").set_index("movie_id")
        self.factors, self.neighbours = {}, {}
        for c in self.spec["components"]:
            if c["kind"] == "als":
                self.factors[c["name"]] = (
                    _vectors(pd.read_parquet(folder / f"{c['name']}_users.parquet")),
                    _vectors(pd.read_parquet(folder / f"{c['name']}_items.parquet")),
                )
            else:
                self.neighbours[c["name"]] = pd.read_parquet(folder / f"{c['name']}_neighbours.parquet")
                self.residuals = pd.read_parquet(folder / "residuals.parquet")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        pairs = model_input[["user_id", "movie_id"]].astype("int64").reset_index(drop=True)
        users, items = pairs["user_id"], pairs["movie_id"]
        baseline = (self.spec["global_mean"] + users.map(self.users["user_bias"]).fillna(0.0).to_numpy()
                    + items.map(self.items["item_bias"]).fillna(0.0).to_numpy())
        columns = {"baseline": baseline,
                   "user_support": users.map(self.users["user_support"]).fillna(0).to_numpy(dtype=float),
                   "item_support": items.map(self.items["item_support"]).fillna(0).to_numpy(dtype=float)}
        for c in self.spec["components"]:
            if c["kind"] == "als":
                score = _dot(*self.factors[c["name"]], pairs)
                offset = baseline if c["on_residuals"] else 0.0
                columns[c["name"]] = np.where(np.isnan(score), baseline, offset + np.nan_to_num(score))
            else:
                columns[c["name"]] = baseline + self._knn_term(pairs, c)
        blend = self.spec["blend"]
        raw = _blend(blend, columns) if blend else columns[self.spec["components"][-1]["name"]]
        low, high = self.spec["scale"]
        return pd.Series(np.clip(raw, low, high), name="prediction")

    def _knn_term(self, pairs: pd.DataFrame, component: dict) -> np.ndarray:
        """The same neighbourhood average as ml.knn.FittedKnn.predict, in pandas."""
        entity, other = ("movie_id", "user_id") if component["by"] == "item" else ("user_id", "movie_id")
        rated = self.residuals[[other, entity, "residual"]].rename(columns={entity: "neighbour_id"})
        candidates = pairs.reset_index().merge(rated, on=other).merge(self.neighbours[component["name"]], on=[entity, "neighbour_id"])
        candidates = candidates.sort_values(["index", "similarity", "neighbour_id"], ascending=[True, False, True])
        top = candidates.groupby("index").head(component["k"])
        weighted = top.assign(w=top["similarity"] * top["residual"]).groupby("index")[["w", "similarity"]].sum()
        return (weighted["w"] / weighted["similarity"]).reindex(range(len(pairs))).fillna(0.0).to_numpy()


def _blend(blend: dict, columns: dict[str, np.ndarray]) -> np.ndarray:
    """ml.blend.Blend.expression in NumPy: the same features, in the same order."""
    base = {"baseline": columns["baseline"], **{f"d_{c}": columns[c] - columns["baseline"] for c in blend["components"]}}
    features = list(base.values())
    if blend["support_aware"]:
        for support in ("user_support", "item_support"):
            log_support = np.log1p(columns[support])
            features += [log_support, *(f * log_support for f in base.values())]
    weights = blend["weights"]
    return weights[0] + sum(w * f for w, f in zip(weights[1:], features))


def export_ranking_model(model: RankingModel, ratings, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    _local(model.als.userFactors).to_parquet(folder / "users.parquet")
    _local(model.als.itemFactors).to_parquet(folder / "items.parquet")
    _local(model.popularity).to_parquet(folder / "popularity.parquet")
    _local(ratings.select("user_id", "movie_id")).to_parquet(folder / "seen.parquet")
    return {"model": str(folder)}


class RankingPyfunc(mlflow.pyfunc.PythonModel):
    """predict(DataFrame[user_id]) -> top-N unseen movies per user (params: {"n": 10})."""

    def load_context(self, context) -> None:
        folder = Path(context.artifacts["model"])
        self.users = _vectors(pd.read_parquet(folder / "users.parquet"))
        self.items = _vectors(pd.read_parquet(folder / "items.parquet"))
        popularity = pd.read_parquet(folder / "popularity.parquet").set_index("movie_id")["offset"]
        self.offset = popularity.reindex(self.items.index).fillna(0.0).to_numpy()
        self.seen = pd.read_parquet(folder / "seen.parquet").groupby("user_id")["movie_id"].apply(set)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        n = int((params or {}).get("n", 10))
        matrix = np.stack(self.items.to_numpy())
        rows = []
        for user in model_input["user_id"].astype("int64").unique():
            if user not in self.users.index:
                continue
            scores = matrix @ np.asarray(self.users.loc[user]) + self.offset
            seen = self.seen.get(user, set())
            order = [i for i in np.argsort(-scores, kind="stable") if self.items.index[i] not in seen][:n]
            rows += [(user, int(self.items.index[i]), float(scores[i]), rank) for rank, i in enumerate(order, 1)]
        return pd.DataFrame(rows, columns=["user_id", "movie_id", "score", "rank"])


def _vectors(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index("id")["features"].map(np.asarray)


def _dot(users: pd.Series, items: pd.Series, pairs: pd.DataFrame) -> np.ndarray:
    u = pairs["user_id"].map(users)
    i = pairs["movie_id"].map(items)
    return np.array([float(np.dot(a, b)) if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) else np.nan
                     for a, b in zip(u, i)])
