"""`lakehouse train --task rating`: sweep, blend, evaluate and register the rating-prediction model.

For every split of the protocol a validation set is carved out of the training data. Each model
family (baseline damping, plain ALS, ALS on baseline residuals, item neighbourhood) is swept on
it, one MLflow child run per configuration; the best of each family by validation RMSE joins the
blend, whose weights are fitted on the same validation predictions. The chosen recipe is then
refitted on the whole training split and scored once on the test split: that is the champion's
RMSE. Finally the recipe is refitted on all ratings for serving, logged and registered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ml import tracking
from ml.als import AlsParams
from ml.baseline import Baseline, fit_baseline, fit_mean_of_means
from ml.blend import average, fit_blend
from ml.knn import KnnParams, fit_knn
from ml.metrics import rating_metrics
from ml.protocols import Split, validation_split
from ml.rating_model import RatingModel, fit_als_component, rating_scale, with_cold_start
from ml.sweep import Candidate, best

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class RatingGrid:
    """Configurations swept per family; the best of each family by validation RMSE joins the blend."""

    damping: tuple[tuple[float, float], ...] = ((5.0, 2.0),)
    plain_als: tuple[AlsParams, ...] = (AlsParams(rank=50, reg_param=0.12),)
    residual_als: tuple[AlsParams, ...] = (AlsParams(rank=10, reg_param=0.15),)
    item_knn: tuple[KnnParams, ...] = (KnnParams(by="item", k=40, shrinkage=400.0),)
    user_knn: tuple[KnnParams, ...] = ()  # an empty family is left out of the sweep and the blend
    support_aware_blend: bool = True


@dataclass
class RatingResult:
    candidates: list[Candidate]
    champion: Candidate
    parent_run_id: str
    champion_run_id: str
    predictions: DataFrame | None = None
    serving: RatingModel | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Fold:
    split: Split
    fit: DataFrame
    validation: DataFrame
    test: DataFrame  # with cold_start


def _folds(splits: list[Split], protocol: str, fraction: float, seed: int) -> list[_Fold]:
    folds = []
    for split in splits:
        train = split.train.localCheckpoint()
        fit, validation = validation_split(train, protocol, fraction, seed)
        fit = fit.localCheckpoint()
        folds.append(_Fold(Split(split.name, train, split.test), fit,
                           with_cold_start(validation, fit).localCheckpoint(),
                           with_cold_start(split.test, train).localCheckpoint()))
    return folds


def _evaluate(candidate: Candidate, fold: _Fold, model: RatingModel) -> None:
    """Validation and test metrics of a model fitted on the fold's fit part."""
    for which, frame in (("validation", fold.validation), ("test", fold.test)):
        scored = model.predict(frame)
        metrics = rating_metrics(scored)
        metrics["cold_start_rows"] = float(frame.where("cold_start != 'none'").count())
        getattr(candidate, which)[fold.split.name] = metrics


def run_rating_sweep(
    ratings: DataFrame,
    splits: list[Split],
    *,
    settings,
    input_table,
    protocol: str,
    protocol_description: str,
    validation_fraction: float,
    seed: int,
    grid: RatingGrid,
    progress: Callable[[str], None],
    serve: bool = True,
) -> RatingResult:
    import mlflow

    tracking.configure(settings)
    experiment = tracking.experiment_id(settings, "rating")
    folds = _folds(splits, protocol, validation_fraction, seed)
    scale = rating_scale(ratings)
    tags = lambda model_type: tracking.run_tags(input_table, protocol, protocol_description, model_type)  # noqa: E731
    candidates: list[Candidate] = []

    with mlflow.start_run(experiment_id=experiment, run_name=f"rating sweep ({protocol})", tags=tags("sweep")) as parent:
        mlflow.log_params({"protocol": protocol, "validation_fraction": validation_fraction, "seed": seed,
                           "splits": ",".join(f.split.name for f in folds)})

        def log_child(candidate: Candidate) -> None:
            with mlflow.start_run(experiment_id=experiment, run_name=candidate.name, nested=True,
                                  tags=tags(candidate.family)):
                mlflow.log_params(candidate.params)
                mlflow.log_metrics(candidate.metrics())
            candidates.append(candidate)
            progress(f"{candidate.name}: validation RMSE {candidate.mean('validation', 'rmse'):.4f}, "
                     f"test RMSE {candidate.mean('test', 'rmse'):.4f}")

        # 0. For comparison only: the seed projects' method.
        reference = Candidate("mean_of_means", "(user mean + movie mean) / 2, the seed projects' method", {})
        for fold in folds:
            with reference.timed():
                model = RatingModel(fit_mean_of_means(fold.fit), scale=scale)
            _evaluate(reference, fold, model)
        log_child(reference)

        # 1. Baseline damping: everything else is stacked on the chosen baseline.
        baselines: list[Candidate] = []
        for damping_user, damping_item in grid.damping:
            candidate = Candidate("baseline", f"baseline damping user={damping_user:g} item={damping_item:g}",
                                  {"baseline.damping_user": damping_user, "baseline.damping_item": damping_item})
            for fold in folds:
                with candidate.timed():
                    baseline = fit_baseline(fold.fit, damping_user, damping_item)
                candidate.fitted[fold.split.name] = baseline
                _evaluate(candidate, fold, RatingModel(baseline, scale=scale))
            log_child(candidate)
            baselines.append(candidate)
        chosen_baseline = best(baselines, "rmse", lower_is_better=True)

        # 2. Components on top of the chosen baseline.
        families: list[tuple[str, list[tuple[str, dict, Callable[[Baseline, DataFrame], object]]]]] = [
            ("als", [(f"als rank={p.rank} reg={p.reg_param:g} iter={p.max_iter}", p.as_params(),
                      lambda b, t, p=p: fit_als_component(b, t, p, on_residuals=False)) for p in grid.plain_als]),
            ("als_residual", [(f"als_residual rank={p.rank} reg={p.reg_param:g} iter={p.max_iter}", p.as_params(),
                               lambda b, t, p=p: fit_als_component(b, t, p, on_residuals=True)) for p in grid.residual_als]),
            *((by, [(f"{by} k={p.k} shrink={p.shrinkage:g}", p.as_params(),
                     lambda b, t, p=p: fit_knn(b, t, p)) for p in knn_grid])
              for by, knn_grid in (("item_knn", grid.item_knn), ("user_knn", grid.user_knn))),
        ]
        chosen: dict[str, Candidate] = {}
        for family, configs in families:
            family_candidates = []
            for name, params, fit in configs:
                candidate = Candidate(family, name, {**chosen_baseline.params, **params})
                for fold in folds:
                    baseline = chosen_baseline.fitted[fold.split.name]
                    with candidate.timed():
                        component = fit(baseline, fold.fit)
                    candidate.fitted[fold.split.name] = component
                    _evaluate(candidate, fold, RatingModel(baseline, [component], scale=scale))
                log_child(candidate)
                family_candidates.append(candidate)
            if family_candidates:
                chosen[family] = best(family_candidates, "rmse", lower_is_better=True)

        # 3. The blend: weights fitted on each fold's validation predictions.
        members = list(chosen.values())
        features = tuple(c.family for c in members)
        blend_candidate = Candidate("blend", "blend of " + " + ".join(c.name for c in members),
                                    {k: v for c in members for k, v in c.params.items()})
        blends = {}
        for fold in folds:
            baseline = chosen_baseline.fitted[fold.split.name]
            components = [c.fitted[fold.split.name] for c in members]
            scored = RatingModel(baseline, components, scale=scale).predict(fold.validation)
            blends[fold.split.name] = fit_blend(scored, features, grid.support_aware_blend)
            _evaluate(blend_candidate, fold, RatingModel(baseline, components, blends[fold.split.name], scale))
        blend_candidate.params.update({f"{k}_{name}": v for name, b in blends.items() for k, v in b.as_params().items()}
                                      if len(folds) > 1 else next(iter(blends.values())).as_params())
        log_child(blend_candidate)

        # 4. The champion: the recipe refitted on each whole training split, scored once on its test split.
        champion = Candidate("champion", "champion: " + blend_candidate.name, dict(blend_candidate.params))
        predictions = []
        for fold in folds:
            train = fold.split.train
            with champion.timed():
                model = _refit(train, chosen_baseline, members, blends[fold.split.name], scale)
            scored = model.predict(fold.test).localCheckpoint()
            metrics = rating_metrics(scored)
            metrics["cold_start_rows"] = float(fold.test.where("cold_start != 'none'").count())
            champion.test[fold.split.name] = metrics
            champion.validation[fold.split.name] = blend_candidate.validation[fold.split.name]
            predictions.append(scored.withColumn("split", _lit(fold.split.name)))
        with mlflow.start_run(experiment_id=experiment, run_name=champion.name, nested=True,
                              tags={**tags("blend"), "champion": "true"}) as champion_run:
            mlflow.log_params(champion.params)
            mlflow.log_metrics(champion.metrics())
        candidates.append(champion)
        mlflow.log_metrics(champion.metrics())  # the sweep's figures are its champion's: compare sweeps by RMSE
        progress(f"champion: test RMSE {champion.mean('test', 'rmse'):.4f}, MAE {champion.mean('test', 'mae'):.4f}")

    union = predictions[0]
    for frame in predictions[1:]:
        union = union.unionByName(frame)
    result = RatingResult(candidates, champion, parent.info.run_id, champion_run.info.run_id, union)
    if serve:  # the recipe refitted on all ratings, with the blend weights averaged over the splits
        result.serving = _refit(ratings, chosen_baseline, members, average(list(blends.values())), scale)
    return result


def _refit(train: DataFrame, baseline_choice: Candidate, members: list[Candidate], blend, scale) -> RatingModel:
    baseline = fit_baseline(train, baseline_choice.params["baseline.damping_user"], baseline_choice.params["baseline.damping_item"])
    components = []
    for member in members:
        if member.family in ("item_knn", "user_knn"):
            by = member.family.removesuffix("_knn")
            components.append(fit_knn(baseline, train, KnnParams.from_params(member.params, by)))
        else:
            params = AlsParams.from_params(member.params)
            components.append(fit_als_component(baseline, train, params, on_residuals=member.family == "als_residual"))
    return RatingModel(baseline, components, blend, scale)


def _lit(value: str):
    from pyspark.sql import functions as F

    return F.lit(value)
