"""`lakehouse train --task ranking`: sweep, evaluate and register the top-N ranking model.

The protocol is the per-user stratified split (each user's ratings, 25% held out, seeded); the
validation set is carved out of the training part the same way. Every configuration is a child
run scored on validation (chosen by NDCG@10) and, for reference, on the test split; the chosen
one is refitted on the whole training split and scored once on test: the champion. It is then
refitted on all ratings to produce the served recommendations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ml import tracking
from ml.metrics import ranking_metrics
from ml.protocols import Split, validation_split
from ml.ranking_model import PopularityModel, RankingModel, RankingParams, Recommender, fit_ranking
from ml.sweep import Candidate, best

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

K = 10
SELECT_BY = f"ndcg_at_{K}"


@dataclass
class RankingResult:
    candidates: list[Candidate]
    champion: Candidate
    parent_run_id: str
    champion_run_id: str
    serving: RankingModel | None  # None when not asked for (evaluate only)


def run_ranking_sweep(
    ratings: DataFrame,
    splits: list[Split],
    *,
    settings,
    input_table,
    protocol: str,
    protocol_description: str,
    validation_fraction: float,
    seed: int,
    grid: tuple[RankingParams, ...],
    progress: Callable[[str], None],
    serve: bool = True,
) -> RankingResult:
    import mlflow

    tracking.configure(settings)
    experiment = tracking.experiment_id(settings, "ranking")
    tags = lambda model_type: tracking.run_tags(input_table, protocol, protocol_description, model_type)  # noqa: E731
    folds = []
    for split in splits:
        train = split.train.localCheckpoint()
        fit, validation = validation_split(train, protocol, validation_fraction, seed)
        folds.append((split.name, train, fit.localCheckpoint(), validation.localCheckpoint(), split.test.localCheckpoint()))

    candidates: list[Candidate] = []
    with mlflow.start_run(experiment_id=experiment, run_name=f"ranking sweep ({protocol})", tags=tags("sweep")) as parent:
        mlflow.log_params({"protocol": protocol, "validation_fraction": validation_fraction, "seed": seed, "k": K})

        def evaluate(candidate: Candidate, fit_model: Callable[[DataFrame], Recommender]) -> None:
            for name, train, fit, validation, test in folds:
                with candidate.timed():
                    model = fit_model(fit)
                candidate.validation[name] = ranking_metrics(model.recommend(validation, fit, K), validation, K)
                # For reference only (selection uses validation): the same model, test candidates.
                candidate.test[name] = ranking_metrics(model.recommend(test, train, K), test, K)
            with mlflow.start_run(experiment_id=experiment, run_name=candidate.name, nested=True, tags=tags(candidate.family)):
                mlflow.log_params(candidate.params)
                mlflow.log_metrics(candidate.metrics())
            candidates.append(candidate)
            progress(f"{candidate.name}: validation NDCG@{K} {candidate.mean('validation', SELECT_BY):.4f}, "
                     f"test precision@{K} {candidate.mean('test', f'precision_at_{K}'):.4f}")

        evaluate(Candidate("popularity", "popularity (most-rated unseen movies)", {"model": "popularity"}), PopularityModel)
        als_candidates = []
        for params in grid:
            candidate = Candidate("implicit_als", params.describe(), params.as_params())
            evaluate(candidate, lambda fit, params=params: fit_ranking(fit, params))
            als_candidates.append(candidate)
        chosen = best(als_candidates, SELECT_BY, lower_is_better=False)

        champion = Candidate("champion", "champion: " + chosen.name, dict(chosen.params))
        params = RankingParams.from_params(chosen.params)
        for name, train, fit, validation, test in folds:
            with champion.timed():
                model = fit_ranking(train, params)
            champion.test[name] = ranking_metrics(model.recommend(test, train, K), test, K)
            champion.validation[name] = chosen.validation[name]
        with mlflow.start_run(experiment_id=experiment, run_name=champion.name, nested=True,
                              tags={**tags("implicit_als"), "champion": "true"}) as champion_run:
            mlflow.log_params(champion.params)
            mlflow.log_metrics(champion.metrics())
        mlflow.log_metrics(champion.metrics())
        candidates.append(champion)
        progress(f"champion: test precision@{K} {champion.mean('test', f'precision_at_{K}'):.4f}, "
                 f"NDCG@{K} {champion.mean('test', f'ndcg_at_{K}'):.4f}")

    serving = fit_ranking(ratings, params) if serve else None
    return RankingResult(candidates, champion, parent.info.run_id, champion_run.info.run_id, serving)
