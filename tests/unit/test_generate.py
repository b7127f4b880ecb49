"""Tests for lakehouse.generate: formats, determinism, shape, scale and edge cases."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lakehouse.generate as gen
from lakehouse.generate import GenerateResult, SyntheticSpec, generate

ML100K_TS = (
    int(dt.datetime(1997, 9, 20, tzinfo=dt.timezone.utc).timestamp()),
    int(dt.datetime(1998, 4, 24, tzinfo=dt.timezone.utc).timestamp()) - 1,
)
ML_LATEST_TS = (
    int(dt.datetime(1996, 3, 29, tzinfo=dt.timezone.utc).timestamp()),
    int(dt.datetime(2018, 9, 25, tzinfo=dt.timezone.utc).timestamp()) - 1,
)
ML100K_TARGET = {1: 6.0, 2: 11.0, 3: 27.0, 4: 34.0, 5: 21.0}
ML_LATEST_TARGET = {
    0.5: 1.4, 1.0: 2.8, 1.5: 1.8, 2.0: 7.5, 2.5: 5.5,
    3.0: 19.9, 3.5: 13.0, 4.0: 26.6, 4.5: 8.5, 5.0: 13.2,
}  # fmt: skip


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def read_ratings(result: GenerateResult) -> pd.DataFrame:
    """Ratings as a frame with columns user, movie, rating, timestamp (either layout)."""
    path = result.files[0].path
    if path.name == "u.data":
        return pd.read_csv(path, sep="\t", header=None, names=["user", "movie", "rating", "timestamp"])
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["userId", "movieId", "rating", "timestamp"]
    return frame.rename(columns={"userId": "user", "movieId": "movie"})


def movie_ids(result: GenerateResult) -> np.ndarray:
    if (result.out_dir / "u.item").exists():
        lines = (result.out_dir / "u.item").read_bytes().decode("latin-1").splitlines()
        return np.array([int(line.split("|", 1)[0]) for line in lines])
    with open(result.out_dir / "movies.csv", encoding="utf-8", newline="") as handle:
        return np.array([int(row["movieId"]) for row in csv.DictReader(handle)])


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def histogram_percent(ratings: pd.Series) -> dict[float, float]:
    return (ratings.value_counts(normalize=True) * 100).to_dict()


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    spec = SyntheticSpec(layout="ml-100k", ratings=100_000, seed=7)
    return generate(spec, tmp_path_factory.mktemp("ml100k"))


@pytest.fixture(scope="module")
def latest(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    spec = SyntheticSpec(layout="ml-latest", ratings=100_000, seed=7)
    return generate(spec, tmp_path_factory.mktemp("latest"))


@pytest.fixture(params=["ml100k", "latest"])
def dataset(request: pytest.FixtureRequest) -> GenerateResult:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------- #
# Determinism
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("layout", ["ml-100k", "ml-latest"])
def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path, layout: str) -> None:
    spec = SyntheticSpec(layout=layout, ratings=30_000, seed=3)
    first = digests(generate(spec, tmp_path / "a").out_dir)
    second = digests(generate(spec, tmp_path / "b").out_dir)
    other = digests(generate(SyntheticSpec(layout=layout, ratings=30_000, seed=4), tmp_path / "c").out_dir)
    assert first == second
    ratings_file = "u.data" if layout == "ml-100k" else "ratings.csv"
    movies_file = "u.item" if layout == "ml-100k" else "movies.csv"
    assert first[ratings_file] != other[ratings_file]
    assert first[movies_file] != other[movies_file]


def test_determinism_does_not_depend_on_chunking_state_or_progress(tmp_path: Path) -> None:
    spec = SyntheticSpec(layout="ml-latest", ratings=5_000, seed=11)
    calls: list[tuple[int, int]] = []
    with_progress = generate(spec, tmp_path / "a", progress=lambda done, total: calls.append((done, total)))
    without = generate(spec, tmp_path / "b")
    assert calls and digests(with_progress.out_dir) == digests(without.out_dir)


# --------------------------------------------------------------------------- #
# Counts, ids, ranges
# --------------------------------------------------------------------------- #
def test_result_describes_written_files(dataset: GenerateResult) -> None:
    for generated in dataset.files:
        data = generated.path.read_bytes()
        assert b"\r" not in data, f"{generated.path.name} must use LF line endings"
        lines = data.decode("latin-1").split("\n")
        assert lines[-1] == "", f"{generated.path.name} must end with a newline"
        content = [line for line in lines[:-1] if line]
        has_header = generated.path.suffix == ".csv"
        assert len(content) - has_header == generated.rows, generated.path.name
    assert not list(dataset.out_dir.glob("*.partial"))


def test_exact_counts(dataset: GenerateResult) -> None:
    ratings = read_ratings(dataset)
    assert len(ratings) == dataset.ratings == 100_000
    assert dataset.files[0].rows == 100_000
    assert len(movie_ids(dataset)) == dataset.movies
    # Default sizes follow ml-100k at 100k ratings.
    assert (dataset.users, dataset.movies) == (943, 1682)
    assert ratings["user"].nunique() == dataset.users


def test_no_duplicate_user_movie_pairs(dataset: GenerateResult) -> None:
    ratings = read_ratings(dataset)
    assert not ratings.duplicated(["user", "movie"]).any()


def test_ids_and_ranges(dataset: GenerateResult) -> None:
    ratings = read_ratings(dataset)
    ids = movie_ids(dataset)
    assert np.all(np.diff(ids) > 0) and ids[0] == 1
    assert ratings["movie"].isin(ids).all(), "every rated movie must exist in the movies file"
    assert ratings["user"].min() == 1 and ratings["user"].max() == dataset.users
    if dataset.files[0].path.name == "u.data":
        assert np.array_equal(ids, np.arange(1, dataset.movies + 1))
        levels, (lo, hi) = set(ML100K_TARGET), ML100K_TS
    else:
        levels, (lo, hi) = set(ML_LATEST_TARGET), ML_LATEST_TS
    assert set(ratings["rating"].unique()) == levels
    assert ratings["timestamp"].between(lo, hi).all()
    assert ratings["timestamp"].max() < time.time()


def test_every_user_has_at_least_20_ratings_and_activity_is_long_tailed(dataset: GenerateResult) -> None:
    per_user = read_ratings(dataset)["user"].value_counts()
    assert per_user.min() >= 20
    assert per_user.max() > 5 * per_user.median()


def test_movie_popularity_is_long_tailed(dataset: GenerateResult) -> None:
    per_movie = read_ratings(dataset)["movie"].value_counts()
    assert per_movie.iloc[0] > 10 * per_movie.median()
    assert (per_movie <= 3).sum() > 0.01 * dataset.movies


def test_users_rate_within_a_window(ml100k: GenerateResult) -> None:
    spans = read_ratings(ml100k).groupby("user")["timestamp"].agg(lambda ts: ts.max() - ts.min())
    full_range = ML100K_TS[1] - ML100K_TS[0]
    assert spans.median() < 0.25 * full_range


# --------------------------------------------------------------------------- #
# Rating distribution and learnable structure
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(("name", "target"), [("ml100k", ML100K_TARGET), ("latest", ML_LATEST_TARGET)])
def test_histogram_close_to_movielens(request: pytest.FixtureRequest, name: str, target: dict) -> None:
    observed = histogram_percent(read_ratings(request.getfixturevalue(name))["rating"])
    for level, percent in target.items():
        assert abs(observed[level] - percent) < 1.5, (level, observed[level], percent)


def test_ratings_carry_user_and_movie_structure(ml100k: GenerateResult) -> None:
    """Bias terms must explain a real share of variance (shuffled ratings explain ~none)."""

    def explained(frame: pd.DataFrame) -> float:
        centred = frame["rating"] - frame["rating"].mean()
        user = centred.groupby(frame["user"]).transform("mean")
        movie = (centred - user).groupby(frame["movie"]).transform("mean")
        return 1.0 - float(((centred - user - movie) ** 2).mean() / (centred**2).mean())

    ratings = read_ratings(ml100k)
    shuffled = ratings.assign(rating=np.random.default_rng(0).permutation(ratings["rating"].to_numpy()))
    assert explained(ratings) > 0.3
    assert explained(ratings) > explained(shuffled) + 0.15


def test_ratings_csv_text_format(latest: GenerateResult) -> None:
    lines = latest.files[0].path.read_text(encoding="ascii").splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp"
    pattern = re.compile(r"^[1-9]\d*,[1-9]\d*,[0-5]\.[05],\d{9,10}$")
    assert all(pattern.match(line) for line in lines[1:])
    keys = [tuple(map(int, line.split(",")[:2])) for line in lines[1:]]
    assert keys == sorted(keys), "ratings.csv is sorted by userId, movieId like the real file"


def test_u_data_text_format(ml100k: GenerateResult) -> None:
    lines = ml100k.files[0].path.read_text(encoding="ascii").splitlines()
    pattern = re.compile(r"^[1-9]\d*\t[1-9]\d*\t[1-5]\t\d{9}$")
    assert all(pattern.match(line) for line in lines)
    users = [int(line.split("\t", 1)[0]) for line in lines[:1000]]
    assert users != sorted(users), "u.data is not ordered, like the real file"


# --------------------------------------------------------------------------- #
# Movie and side files
# --------------------------------------------------------------------------- #
def test_movies_csv_round_trips_through_csv_module(latest: GenerateResult) -> None:
    raw = (latest.out_dir / "movies.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert rows[0] == ["movieId", "title", "genres"]
    body = rows[1:]
    assert len(body) == latest.movies and all(len(row) == 3 for row in body)
    titles = [row[1] for row in body]
    assert any("," in t for t in titles) and any('"' in t for t in titles)
    assert any(t.endswith(", The (" + t[-5:]) for t in titles)
    assert all(re.search(r" \((19[2-9]\d|200\d|201[0-8])\)$", t) for t in titles)
    # Writing the parsed rows back must reproduce the file byte for byte.
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    assert out.getvalue().encode("utf-8") == raw
    allowed = set(gen.ML_LATEST_GENRES)
    for _, _, genres in body:
        parts = genres.split("|")
        assert genres == gen.NO_GENRES or (1 <= len(parts) <= 3 and set(parts) <= allowed)


def test_u_item_is_latin1_with_24_fields(ml100k: GenerateResult) -> None:
    raw = (ml100k.out_dir / "u.item").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # accented letters are single latin-1 bytes, as in the real file
    text = raw.decode("latin-1")
    assert any(ch in text for ch in "éüñ")
    date = re.compile(r"^\d{2}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(19[2-9]\d)$")
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("|")
        assert len(fields) == 24, line
        assert int(fields[0]) == number
        assert fields[1].endswith(f"({fields[2][-4:]})"), "release year matches the title year"
        assert date.match(fields[2]) and fields[3] == ""
        assert fields[4].startswith("http://us.imdb.com/M/title-exact?")
        flags = fields[5:]
        assert set(flags) <= {"0", "1"} and 1 <= flags.count("1") <= 3


def test_u_user_u_genre_u_occupation(ml100k: GenerateResult) -> None:
    users = (ml100k.out_dir / "u.user").read_text(encoding="ascii").splitlines()
    assert len(users) == ml100k.users
    for number, line in enumerate(users, start=1):
        user_id, age, gender, occupation, zip_code = line.split("|")
        assert int(user_id) == number and 7 <= int(age) <= 73
        assert gender in {"M", "F"} and occupation in gen.OCCUPATIONS
        assert re.fullmatch(r"\d{5}|[A-Z]\d[A-Z]\d[A-Z]", zip_code)
    genre_text = (ml100k.out_dir / "u.genre").read_text(encoding="ascii")
    assert genre_text == "".join(f"{g}|{i}\n" for i, g in enumerate(gen.ML100K_GENRES)) + "\n"
    assert gen.ML100K_GENRES[:5] == ("unknown", "Action", "Adventure", "Animation", "Children's")
    assert (ml100k.out_dir / "u.occupation").read_text(encoding="ascii").splitlines() == list(gen.OCCUPATIONS)
    assert len(gen.OCCUPATIONS) == 21


# --------------------------------------------------------------------------- #
# Sizes, edge cases, validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("layout", ["ml-100k", "ml-latest"])
@pytest.mark.parametrize("ratings", [1, 7, 300])
def test_tiny_sizes_work(tmp_path: Path, layout: str, ratings: int) -> None:
    result = generate(SyntheticSpec(layout=layout, ratings=ratings), tmp_path)
    frame = read_ratings(result)
    assert len(frame) == ratings and not frame.duplicated(["user", "movie"]).any()
    assert frame["movie"].isin(movie_ids(result)).all()


def test_fully_dense_matrix(tmp_path: Path) -> None:
    result = generate(SyntheticSpec(ratings=12, users=3, movies=4), tmp_path)
    pairs = set(map(tuple, read_ratings(result)[["user", "movie"]].to_numpy().tolist()))
    assert pairs == {(u, m) for u in range(1, 4) for m in range(1, 5)}


def test_derived_sizes_grow_sublinearly() -> None:
    small = gen._resolve_sizes(SyntheticSpec(ratings=100_000))
    large = gen._resolve_sizes(SyntheticSpec(ratings=25_000_000))
    assert small == (943, 1682)
    assert abs(large[0] - 162_541) < 100 and abs(large[1] - 62_423) < 100


def test_too_many_ratings_for_matrix_raises() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        SyntheticSpec(ratings=13, users=3, movies=4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratings": 0},
        {"ratings": -5},
        {"ratings": 10.5},
        {"ratings": "100"},
        {"ratings": True},
        {"users": 0},
        {"movies": 0},
        {"ratings": 10, "users": 11},
        {"seed": -1},
        {"layout": "ml-1m"},
    ],
)
def test_invalid_spec_values_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SyntheticSpec(**kwargs)


def test_progress_is_called_per_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "_CHUNK_RATINGS", 2_000)
    calls: list[tuple[int, int]] = []
    generate(SyntheticSpec(ratings=10_000), tmp_path, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert len(calls) >= 4 and done == sorted(done) and calls[-1] == (10_000, 10_000)
    assert {t for _, t in calls} == {10_000}


def test_memory_stays_bounded_for_large_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2M ratings with small chunks must peak far below what holding them would take.

    Holding just the four rating columns of 2M rows as int64 needs 61 MiB, so a
    peak under 32 MiB shows ratings are streamed chunk by chunk.
    """
    monkeypatch.setattr(gen, "_CHUNK_RATINGS", 50_000)
    monkeypatch.setattr(gen, "_PILOT_SAMPLES", 50_000)
    tracemalloc.start()
    try:
        result = generate(SyntheticSpec(layout="ml-latest", ratings=2_000_000), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.files[0].rows == 2_000_000
    assert peak < 32 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- #
# Property-based: any feasible small spec
# --------------------------------------------------------------------------- #
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.sampled_from(["ml-100k", "ml-latest"]),
    ratings=st.integers(1, 3_000),
    users=st.one_of(st.none(), st.integers(1, 200)),
    movies=st.one_of(st.none(), st.integers(1, 400)),
    seed=st.integers(0, 2**32),
)
def test_any_small_spec_gives_exact_unique_ratings(
    tmp_path_factory: pytest.TempPathFactory,
    layout: str,
    ratings: int,
    users: int | None,
    movies: int | None,
    seed: int,
) -> None:
    assume(users is None or users <= ratings)
    assume(users is None or movies is None or ratings <= users * movies)
    spec = SyntheticSpec(layout=layout, ratings=ratings, users=users, movies=movies, seed=seed)
    result = generate(spec, tmp_path_factory.mktemp("prop"))
    frame = read_ratings(result)
    assert len(frame) == ratings == result.files[0].rows
    assert not frame.duplicated(["user", "movie"]).any()
    assert frame["user"].between(1, result.users).all() and frame["user"].nunique() == result.users
    assert frame["movie"].isin(movie_ids(result)).all()
    per_user = frame["user"].value_counts()
    assert per_user.min() >= min(20, ratings // result.users)
    assert per_user.max() <= result.movies
    if users is not None:
        assert result.users == users
    if movies is not None:
        assert result.movies == movies
