"""The MovieLens datasets the lakehouse knows: where to get them and how their files are laid out.

One registry, so the downloader, the parsers and the CLI agree on file names, encodings and the
rating scale of every dataset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

FileKind = Literal["ratings", "movies", "users"]
Layout = Literal["tab", "pipe", "double_colon", "csv"]

FILE_KINDS: tuple[FileKind, ...] = ("ratings", "movies", "users")

# What a valid rating is, for the batch ingest and the stream alike:
# MovieLens ratings start in 1995; anything earlier is a broken timestamp.
EARLIEST_TIMESTAMP = datetime(1995, 1, 1, tzinfo=timezone.utc)
# Clocks differ; a rating made "tomorrow" by a few hours is not an error.
FUTURE_SLACK = timedelta(days=1)
# Ids are 32-bit integers in the bronze tables; a larger one must be a rejected row, not a crash.
MAX_ID = 2**31 - 1

# The held-out ratings `ingest --holdout-fraction` writes and `lakehouse replay` reads.
HOLDOUT_HEADER = ("user_id", "movie_id", "rating", "timestamp")


def holdout_file(holdout_dir: Path, dataset: str) -> Path:
    return holdout_dir / dataset / "ratings.csv"


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class RatingScale:
    """The ratings a dataset allows: minimum..maximum in steps of `step`."""

    minimum: float
    maximum: float
    step: float

    def contains(self, value: float) -> bool:
        """True for a finite value within [minimum, maximum] that is a whole number of steps
        above the minimum (with a little tolerance for binary floating point)."""
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            return False
        steps = (value - self.minimum) / self.step
        return abs(steps - round(steps)) < 1e-9

    def values(self) -> tuple[float, ...]:
        """Every rating on the scale, lowest first."""
        count = round((self.maximum - self.minimum) / self.step)
        return tuple(self.minimum + i * self.step for i in range(count + 1))

    def describe(self) -> str:
        """Human form for messages: "1-5 scale (step 1)"."""
        return f"{self.minimum:g}-{self.maximum:g} scale (step {self.step:g})"


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset and how to read it."""

    kind: FileKind
    name: str  # file name inside the dataset folder: "u.data", "ratings.dat", "ratings.csv"
    layout: Layout
    encoding: str  # "latin-1" or "utf-8"
    header: bool


@dataclass(frozen=True)
class DatasetSpec:
    """A MovieLens release: its official zip, its checksum, its rating scale and its files."""

    name: str
    url: str
    md5: str | None  # None: verify against the published "<url>.md5" at download time
    scale: RatingScale
    files: tuple[FileSpec, ...]  # ratings first, then movies, then users when there are users

    def file(self, kind: FileKind) -> FileSpec | None:
        """The spec of the file of that kind, None when the dataset has no such file."""
        for spec in self.files:
            if spec.kind == kind:
                return spec
        return None


WHOLE_STARS = RatingScale(minimum=1.0, maximum=5.0, step=1.0)
HALF_STARS = RatingScale(minimum=0.5, maximum=5.0, step=0.5)


def _official_url(name: str) -> str:
    return f"{_GROUPLENS}/{name}.zip"


def _ml_100k() -> DatasetSpec:
    return DatasetSpec(
        name="ml-100k",
        url=_official_url("ml-100k"),
        md5="0e33842e24a9c977be4e0107933c0723",
        scale=WHOLE_STARS,
        files=(
            FileSpec("ratings", "u.data", "tab", "latin-1", header=False),
            FileSpec("movies", "u.item", "pipe", "latin-1", header=False),
            FileSpec("users", "u.user", "pipe", "latin-1", header=False),
        ),
    )


def _ml_1m() -> DatasetSpec:
    return DatasetSpec(
        name="ml-1m",
        url=_official_url("ml-1m"),
        md5="c4d9eecfca2ab87c1945afe126590906",
        scale=WHOLE_STARS,
        files=(
            FileSpec("ratings", "ratings.dat", "double_colon", "latin-1", header=False),
            FileSpec("movies", "movies.dat", "double_colon", "latin-1", header=False),
            FileSpec("users", "users.dat", "double_colon", "latin-1", header=False),
        ),
    )


def _ml_latest_style(name: str, md5: str | None) -> DatasetSpec:
    """ml-latest-small, ml-25m and ml-32m share one CSV layout and have no users file."""
    return DatasetSpec(
        name=name,
        url=_official_url(name),
        md5=md5,
        scale=HALF_STARS,
        files=(
            FileSpec("ratings", "ratings.csv", "csv", "utf-8", header=True),
            FileSpec("movies", "movies.csv", "csv", "utf-8", header=True),
        ),
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _ml_100k(),
        # ml-latest-small is refreshed now and then, so its checksum is not pinned.
        _ml_latest_style("ml-latest-small", md5=None),
        _ml_1m(),
        _ml_latest_style("ml-25m", md5="6b51fb2759a8657d3bfcbfc42b592ada"),
        _ml_latest_style("ml-32m", md5=None),
    )
}


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a dataset by name; ValueError naming the valid ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        valid = ", ".join(DATASETS)
        raise ValueError(f"unknown MovieLens dataset {name!r}: expected one of {valid}") from None
