"""Deterministic synthetic MovieLens-shaped data.

Why this exists: the MovieLens licence forbids redistributing the real files, yet
the lakehouse (Spark ingestion, dbt models, ALS training) needs inputs with the
exact byte formats and a realistic statistical shape, at sizes from a few hundred
ratings (unit tests) to 25M+ (load tests).  This module writes such files.

Design choices (and why):

* Determinism: every random draw comes from a numpy ``Generator`` whose
  ``SeedSequence`` is keyed by ``(spec.seed, stream, chunk)``; nothing depends on
  time, dict order or hash randomisation, so the same spec gives byte-identical
  files and changing one stream does not reshuffle the others.
* Bounded memory: ratings are produced and written in chunks of consecutive
  users (about ``_CHUNK_RATINGS`` rows each).  Only per-user and per-movie
  arrays live for the whole run; nothing is ``O(users * movies)``.
* Learnable ratings: a latent score ``user bias + movie bias + <p_u, q_i> +
  noise`` is cut into rating levels at quantiles of the score distribution, so
  the rating histogram matches real MovieLens while ALS still has structure to
  find.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import index
from pathlib import Path
from typing import IO, Literal, get_args
from urllib.parse import quote

import numpy as np

Layout = Literal["ml-100k", "ml-latest"]
ProgressFn = Callable[[int, int], None]

__all__ = [
    "GenerateResult",
    "GeneratedFile",
    "Layout",
    "SyntheticSpec",
    "generate",
]


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    layout:  which MovieLens file set to imitate ("ml-100k": u.data/u.item/...,
             "ml-latest": ratings.csv/movies.csv).
    ratings: exact number of rating rows written.
    users, movies: default to sizes derived from ``ratings`` along the sublinear
             growth seen between ml-100k (943 users / 1682 movies for 100k
             ratings) and ml-25m (162k users / 62k movies for 25M), so one knob
             gives a plausibly shaped dataset at any scale.  Every user gets at
             least one rating (at least 20 when ratings allow, like MovieLens).
    seed:    the only source of randomness; same spec -> byte-identical files.

    Invalid values raise ValueError here, at construction, so a bad CLI flag is
    reported before any I/O.
    """

    layout: Layout = "ml-100k"
    ratings: int = 100_000
    users: int | None = None
    movies: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.layout not in get_args(Layout):
            raise ValueError(f"layout must be one of {get_args(Layout)}, got {self.layout!r}")
        # Normalise numpy integers etc. to int so results and messages are plain ints.
        object.__setattr__(self, "ratings", _require_int("ratings", self.ratings, minimum=1))
        object.__setattr__(self, "seed", _require_int("seed", self.seed, minimum=0))
        if self.users is not None:
            object.__setattr__(self, "users", _require_int("users", self.users, minimum=1))
            if self.users > self.ratings:
                raise ValueError(
                    f"users={self.users} exceeds ratings={self.ratings}: every user needs at least one rating"
                )
        if self.movies is not None:
            object.__setattr__(self, "movies", _require_int("movies", self.movies, minimum=1))
        _resolve_sizes(self)  # raises ValueError when ratings cannot fit


@dataclass(frozen=True)
class GeneratedFile:
    """One written file; ``rows`` counts data rows (no header, no trailing blank line)."""

    path: Path
    rows: int


@dataclass(frozen=True)
class GenerateResult:
    """What ``generate`` wrote, so callers can log/verify without re-reading files."""

    out_dir: Path
    files: tuple[GeneratedFile, ...]
    users: int
    movies: int
    ratings: int


def generate(spec: SyntheticSpec, out_dir: Path, progress: ProgressFn | None = None) -> GenerateResult:
    """Write a MovieLens-shaped dataset for ``spec`` into ``out_dir``.

    ``progress(done_ratings, total_ratings)`` is called after every chunk of
    ratings has been written (the last call has ``done == total``).
    Files are written under a temporary name and renamed when complete, so a
    crash never leaves a truncated file under the final name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_users, n_movies = _resolve_sizes(spec)
    layout = _LAYOUTS[spec.layout]

    catalog = _make_catalog(_rng(spec.seed, _Stream.MOVIES), layout, n_movies, spec.ratings)
    activity = _user_activity(_rng(spec.seed, _Stream.ACTIVITY), n_users, spec.ratings, n_movies)
    taste = _make_taste(_rng(spec.seed, _Stream.TASTE), n_users, catalog.popularity)
    model = _RatingModel(
        layout=layout,
        catalog=catalog,
        activity=activity,
        taste=taste,
        windows=_make_windows(_rng(spec.seed, _Stream.WINDOWS), layout, n_users),
        cuts=_cut_points(_rng(spec.seed, _Stream.PILOT), layout, taste, activity, catalog),
    )

    files = [_write_ratings(spec, model, out_dir, progress)]
    if spec.layout == "ml-100k":
        files += _write_ml100k_side_files(spec, out_dir, catalog, n_users)
    else:
        files.append(_write_movies_csv(out_dir / "movies.csv", catalog))
    return GenerateResult(
        out_dir=out_dir, files=tuple(files), users=n_users, movies=n_movies, ratings=spec.ratings
    )


# --------------------------------------------------------------------------- #
# Layout constants (taken from the real MovieLens files' documentation/shape)
# --------------------------------------------------------------------------- #
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ML_LATEST_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES = "(no genres listed)"
OCCUPATIONS: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment",
    "executive", "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none",
    "other", "programmer", "retired", "salesman", "scientist", "student", "technician",
    "writer",
)  # fmt: skip
# Relative frequencies of the occupations above in ml-100k's users.
_OCCUPATION_WEIGHTS = (79, 28, 7, 95, 67, 18, 32, 16, 7, 12, 51, 26, 9, 105, 66, 14, 12, 31, 196, 27, 45)
# Relative genre frequencies (ml-100k movie counts), keyed by name so both layouts share them.
_GENRE_WEIGHTS = {
    "Action": 251, "Adventure": 135, "Animation": 42, "Children's": 122, "Children": 122,
    "Comedy": 505, "Crime": 109, "Documentary": 50, "Drama": 725, "Fantasy": 22,
    "Film-Noir": 24, "Horror": 92, "IMAX": 15, "Musical": 56, "Mystery": 61, "Romance": 247,
    "Sci-Fi": 101, "Thriller": 251, "War": 71, "Western": 27, "unknown": 0,
}  # fmt: skip
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _utc(year: int, month: int, day: int, end_of_day: bool = False) -> int:
    t = (23, 59, 59) if end_of_day else (0, 0, 0)
    return calendar.timegm((year, month, day, *t))


@dataclass(frozen=True)
class _LayoutInfo:
    rating_values: tuple[float, ...]
    rating_probs: tuple[float, ...]  # target histogram, same order as rating_values
    ts_min: int
    ts_max: int
    max_year: int  # no movie released after the data was collected
    year_scale: float  # mean age (years) of a movie at collection time: skews years recent
    window_median_days: float  # typical span of one user's rating activity
    genres: tuple[str, ...]
    movie_id_gaps: bool  # real ml-latest ids skip numbers (removed/merged movies)


_LAYOUTS: dict[str, _LayoutInfo] = {
    "ml-100k": _LayoutInfo(
        rating_values=(1, 2, 3, 4, 5),
        rating_probs=(6.11, 11.37, 27.15, 34.17, 21.20),
        ts_min=_utc(1997, 9, 20),
        ts_max=_utc(1998, 4, 23, end_of_day=True),
        max_year=1998,
        year_scale=8.0,
        window_median_days=1.0,
        genres=ML100K_GENRES,
        movie_id_gaps=False,
    ),
    "ml-latest": _LayoutInfo(
        rating_values=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0),
        rating_probs=(1.4, 2.8, 1.8, 7.5, 5.5, 19.9, 13.0, 26.6, 8.5, 13.2),
        ts_min=_utc(1996, 3, 29),
        ts_max=_utc(2018, 9, 24, end_of_day=True),
        max_year=2018,
        year_scale=15.0,
        window_median_days=3.0,
        genres=ML_LATEST_GENRES,
        movie_id_gaps=True,
    ),
}

# --------------------------------------------------------------------------- #
# Tunables (calibrated against real MovieLens shapes)
# --------------------------------------------------------------------------- #
_CHUNK_RATINGS = 1 << 20  # ~1M rows per chunk: a few hundred MB peak at most
_MIN_RATINGS_PER_USER = 20  # MovieLens only keeps users with >= 20 ratings
_ACTIVITY_SIGMA = 1.0  # lognormal spread of per-user activity (mean/median ~1.6 as in ml-100k)
_MAX_DENSITY = 0.5  # derived sizes never need more than half of the user x movie matrix
# Growth exponents fitted through (100k: 943 users, 1682 movies) and (25M: 162541, 62423).
_USER_EXP = math.log(162_541 / 943) / math.log(250)
_MOVIE_EXP = math.log(62_423 / 1_682) / math.log(250)
_LATENT_DIM = 8
_NOISE_SD = 0.6
_PILOT_SAMPLES = 1 << 20  # pilot ratings used to place the rating cut points
_MAX_TOPUP_ROUNDS = 12  # then fall back to exact weighted sampling without replacement
_HEAVY_FRACTION = 0.25  # users wanting > this share of all movies are sampled exactly
_NO_GENRE_SHARE = 0.003


class _Stream:
    """Independent RNG streams, so e.g. title tweaks never change the ratings."""

    MOVIES, ACTIVITY, TASTE, WINDOWS, PILOT, USERS, CHUNK = range(7)


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, chunk)))


def _require_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= minimum; bools, floats and strings are rejected."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        number = index(value)  # accepts int and numpy integers
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


# --------------------------------------------------------------------------- #
# Sizes and per-user activity
# --------------------------------------------------------------------------- #
def _resolve_sizes(spec: SyntheticSpec) -> tuple[int, int]:
    """(users, movies) for the spec; derived values keep density <= _MAX_DENSITY."""
    ratings = int(spec.ratings)
    scale = ratings / 100_000
    users = spec.users
    movies = spec.movies
    if users is None:
        users = max(1, round(943 * scale**_USER_EXP))
        if movies is not None:
            users = max(users, math.ceil(ratings / (_MAX_DENSITY * movies)))
        users = min(users, ratings)
    if movies is None:
        movies = max(1, round(1682 * scale**_MOVIE_EXP), math.ceil(ratings / (_MAX_DENSITY * users)))
    users, movies = int(users), int(movies)
    if ratings > users * movies:
        raise ValueError(
            f"ratings={ratings} cannot fit: {users} users x {movies} movies allows at most "
            f"{users * movies} distinct (user, movie) pairs"
        )
    return users, movies


def _user_activity(rng: np.random.Generator, n_users: int, ratings: int, n_movies: int) -> np.ndarray:
    """Ratings per user: >= 20 when possible, long-tailed, <= n_movies, summing exactly to ratings."""
    floor = min(_MIN_RATINGS_PER_USER, ratings // n_users)
    weights = rng.lognormal(0.0, _ACTIVITY_SIGMA, n_users)
    extra = _allocate(ratings - floor * n_users, weights, cap=n_movies - floor)
    return floor + extra


def _allocate(total: int, weights: np.ndarray, cap: int) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` with each <= ``cap``.

    Water-filling (cap the largest shares, spread the excess over the rest), then
    largest-remainder rounding so the sum is exact.  Requires total <= n * cap.
    """
    n = weights.size
    share = np.zeros(n)
    free = np.ones(n, dtype=bool)
    while free.any():
        budget = total - cap * (n - int(free.sum()))
        share[free] = budget * weights[free] / weights[free].sum()
        over = free & (share > cap)
        if not over.any():
            break
        share[over] = cap
        free &= ~over
    counts = np.minimum(np.floor(share).astype(np.int64), cap)
    remainder = share - counts
    short = total - int(counts.sum())
    while short > 0:  # hand out the rounding leftovers, largest remainder first
        eligible = np.flatnonzero(counts < cap)
        pick = eligible[np.argsort(-remainder[eligible], kind="stable")[:short]]
        counts[pick] += 1
        remainder[pick] = 0.0
        short -= pick.size
    while short < 0:  # float rounding overshoot (practically never happens)
        eligible = np.flatnonzero(counts > 0)
        pick = eligible[np.argsort(remainder[eligible], kind="stable")[:-short]]
        counts[pick] -= 1
        short += pick.size
    return counts


# --------------------------------------------------------------------------- #
# Movies: popularity, titles, genres
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Catalog:
    ids: np.ndarray  # int64, strictly increasing
    titles: tuple[str, ...]  # with " (YYYY)"
    years: np.ndarray
    release_days: np.ndarray  # day offset within the release year (ml-100k release date)
    genre_flags: np.ndarray  # bool [movies, len(layout.genres)]
    no_genre: np.ndarray  # bool: "(no genres listed)" / only "unknown"
    popularity: np.ndarray  # float64 sampling weights, sum 1
    cdf: np.ndarray  # cumulative popularity for searchsorted sampling


def _popularity(rng: np.random.Generator, n_movies: int, ratings: int) -> np.ndarray:
    """Sampling weight per movie from its popularity rank x in (0, 1).

    log(weight) = -(head * x**head_shape + tail * x**4): a Zipf-like head that
    keeps falling through the catalogue, plus a cliff for the last-added movies
    (real rank curves have both).  Parameters are interpolated on log(ratings)
    between values tuned by simulating the full sampler against ml-100k (top
    movie ~540 ratings, median ~29, ~14% of movies with <= 3 ratings) and ml-25m
    (top movie ~81k ratings, ~5% of movies unrated); real data is similar.
    """
    t = (math.log(ratings) - math.log(1e5)) / (math.log(2.5e7) - math.log(1e5))
    head = min(16.0, max(2.0, 5.0 + 7.0 * t))
    head_shape = min(0.6, max(0.2, 0.4 - 0.12 * t))
    tail = min(5.0, max(0.0, 3.0 - 2.5 * t))
    rank = (np.arange(n_movies) + 0.5) / n_movies
    by_rank = np.exp(-(head * rank**head_shape + tail * rank**4))
    weights = by_rank[rng.permutation(n_movies)]  # popular movies spread over all ids
    return weights / weights.sum()


def _make_catalog(rng: np.random.Generator, layout: _LayoutInfo, n_movies: int, ratings: int) -> _Catalog:
    popularity = _popularity(rng, n_movies, ratings)
    cdf = np.cumsum(popularity)
    cdf /= cdf[-1]
    if layout.movie_id_gaps:
        # Increasing ids with occasional jumps, so nothing may assume id == row number.
        gaps = 1 + np.where(rng.random(n_movies) < 0.1, rng.geometric(0.05, n_movies), 0)
        ids = np.cumsum(gaps) - gaps[0] + 1
    else:
        ids = np.arange(1, n_movies + 1, dtype=np.int64)
    years = _release_years(rng, layout, n_movies)
    release_days = rng.integers(0, 365, n_movies)
    release_days[rng.random(n_movies) < 0.6] = 0  # most ml-100k dates are 01-Jan-YYYY
    titles = _make_titles(rng, years)
    flags, no_genre = _make_genres(rng, layout, n_movies)
    return _Catalog(
        ids=ids.astype(np.int64),
        titles=titles,
        years=years,
        release_days=release_days,
        genre_flags=flags,
        no_genre=no_genre,
        popularity=popularity,
        cdf=cdf,
    )


def _release_years(rng: np.random.Generator, layout: _LayoutInfo, n: int) -> np.ndarray:
    # Truncated exponential age: most movies are recent, a thin tail back to 1920.
    span = layout.max_year - 1920
    u = rng.random(n)
    age = -layout.year_scale * np.log1p(-u * (1.0 - math.exp(-span / layout.year_scale)))
    return layout.max_year - np.minimum(np.floor(age).astype(np.int64), span)


_ADJECTIVES = (
    "Silent", "Broken", "Golden", "Last", "Dark", "Lost", "Wild", "Hidden", "Crimson",
    "Forgotten", "Little", "Endless", "Frozen", "Burning", "Secret", "Electric", "Lonely",
    "Savage", "Quiet", "Midnight", "Hollow", "Brave", "Wicked", "Distant", "Bitter",
    "Sweet", "Final", "Second", "Eternal", "Restless", "Shattered", "Blue", "Red", "Black",
    "White", "Green", "Iron", "Silver", "Stolen", "Perfect", "Crazy", "Dangerous", "Fatal",
    "Great", "Invisible", "Long", "Mad", "Naked", "Private", "Sudden", "True", "Young",
    "Big", "Cold", "Dead", "Deep", "Happy", "Strange", "Twisted", "Violent",
)  # fmt: skip
_NOUNS = (
    "Escape", "River", "Garden", "Stranger", "Empire", "Horizon", "Mirror", "Storm",
    "Journey", "Kingdom", "Promise", "Shadow", "Island", "Heart", "Road", "Night", "Game",
    "Dream", "Hunter", "Witness", "Machine", "Summer", "Winter", "Voyage", "Soldier",
    "Angel", "Ghost", "Letter", "Secret", "Dance", "Wedding", "Window", "Circus", "Bridge",
    "Harbor", "Tower", "Planet", "Train", "Killer", "Doctor", "Detective", "Princess",
    "Cowboy", "Monster", "Lover", "Thief", "Family", "Father", "Mother", "Daughter", "Son",
    "Brother", "Sister", "City", "Town", "Valley", "Mountain", "Desert", "Ocean", "Sky",
    "Fire", "Rain", "Snow", "Wind", "Star", "Moon", "Sun", "Blood", "Money", "Truth",
    "Lies", "Love", "War", "Peace", "Time", "Memory", "Silence", "Music", "Song", "Story",
    "Legend", "Affair", "Return", "Revenge", "Code", "Line", "Edge", "Door", "House",
    "Room", "Hotel", "Party", "Club", "Beach", "Field", "Forest", "Castle", "Prison",
)  # fmt: skip
_PLACES = (
    "Paris", "Berlin", "Tokyo", "Chicago", "Texas", "Brooklyn", "Rome", "Vienna", "Cairo",
    "Havana", "Memphis", "Alaska", "Mars", "Venice", "Montana", "Shanghai", "Dublin",
    "Lisbon", "Manhattan", "Bombay", "the West", "the North", "the Sea", "Hollywood",
)  # fmt: skip
# Latin-1 encodable words: exercise the ml-100k latin-1 encoding (and UTF-8 in ml-latest).
_FOREIGN = (
    "Café", "Niño", "Mañana", "Über", "Crème", "Déjà Vu", "Señor", "Fräulein", "Garçon",
    "Noël", "Amélie", "Misérables", "Été", "Müller", "Corazón", "Mädchen", "Château",
    "Soupçon", "Año", "Élan", "Jalapeño", "Köln", "Forêt", "Rêve", "Pequeño", "Straße",
)  # fmt: skip
_FOREIGN_ARTICLES = ("Les", "La", "Le", "El", "Il", "Das", "Der", "Die")
_SEQUELS = ("2", "3", "II", "III", "Part II")


def _make_titles(rng: np.random.Generator, years: np.ndarray) -> tuple[str, ...]:
    """Titles with real MovieLens quirks: trailing articles after a comma, commas and
    double quotes inside titles (CSV quoting), accented latin-1 letters."""
    n = years.size
    pattern = rng.choice(10, size=n, p=(0.24, 0.16, 0.1, 0.05, 0.08, 0.04, 0.04, 0.1, 0.05, 0.14))
    a = rng.integers(0, len(_ADJECTIVES), n)
    n1 = rng.integers(0, len(_NOUNS), n)
    n2 = rng.integers(0, len(_NOUNS), n)
    pl = rng.integers(0, len(_PLACES), n)
    f1 = rng.integers(0, len(_FOREIGN), n)
    f2 = rng.integers(0, len(_FOREIGN), n)
    art = rng.integers(0, len(_FOREIGN_ARTICLES), n)
    seq = rng.integers(0, len(_SEQUELS), n)
    titles = []
    for i in range(n):
        adj, noun, noun2 = _ADJECTIVES[a[i]], _NOUNS[n1[i]], _NOUNS[n2[i]]
        p = pattern[i]
        if p == 0:
            base = f"{adj} {noun}"
        elif p == 1:
            base = f"{adj} {noun}, The"  # "The Great Escape" is listed as "Great Escape, The"
        elif p == 2:
            base = f"{noun} of {_PLACES[pl[i]]}"
        elif p == 3:
            base = f"{noun} in {_PLACES[pl[i]]}, A"
        elif p == 4:
            base = f"{noun} and the {noun2}"
        elif p == 5:
            base = f"{noun}, {noun2} and {adj} {_NOUNS[(n1[i] + n2[i]) % len(_NOUNS)]}"
        elif p == 6:
            base = f'"{adj} {noun}" {noun2}'  # like '"Great Performances" Cats (1998)'
        elif p == 7:
            base = f"{_FOREIGN[f1[i]]} {_FOREIGN[f2[i]]}"
        elif p == 8:
            base = f"{_FOREIGN[f1[i]]}, {_FOREIGN_ARTICLES[art[i]]}"
        else:
            base = f"{adj} {noun} {_SEQUELS[seq[i]]}"
        titles.append(f"{base} ({years[i]})")
    return tuple(titles)


def _make_genres(rng: np.random.Generator, layout: _LayoutInfo, n: int) -> tuple[np.ndarray, np.ndarray]:
    """1-3 genres per movie, frequency-weighted; a few movies get none."""
    weights = np.array([_GENRE_WEIGHTS[g] for g in layout.genres], dtype=np.float64)
    n_genres = rng.choice(3, size=n, p=(0.5, 0.35, 0.15)) + 1
    # Gumbel top-k: per-row weighted sampling without replacement, fully vectorised.
    with np.errstate(divide="ignore"):
        keys = np.log(weights)[None, :] + rng.gumbel(size=(n, weights.size))
    order = np.argsort(-keys, axis=1, kind="stable")
    flags = np.zeros((n, weights.size), dtype=bool)
    chosen = np.arange(3)[None, :] < n_genres[:, None]
    rows = np.repeat(np.arange(n), 3).reshape(n, 3)
    flags[rows[chosen], order[:, :3][chosen]] = True
    no_genre = rng.random(n) < _NO_GENRE_SHARE
    flags[no_genre] = False
    if layout.genres[0] == "unknown":  # ml-100k marks genre-less movies with the 'unknown' flag
        flags[no_genre, 0] = True
    return flags, no_genre


# --------------------------------------------------------------------------- #
# Users: taste (latent factors) and activity windows
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Taste:
    user_bias: np.ndarray
    user_factors: np.ndarray  # float32 [users, _LATENT_DIM]
    movie_bias: np.ndarray
    movie_factors: np.ndarray  # float32 [movies, _LATENT_DIM]


def _make_taste(rng: np.random.Generator, n_users: int, popularity: np.ndarray) -> _Taste:
    factor_sd = 0.4  # dot product sd ~0.45: comparable to the biases, learnable by ALS
    log_pop = np.log(popularity)
    pop_z = (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
    return _Taste(
        user_bias=rng.normal(0.0, 0.4, n_users),
        user_factors=rng.normal(0.0, factor_sd, (n_users, _LATENT_DIM)).astype(np.float32),
        # Popular movies are rated a bit higher, as in real MovieLens.
        movie_bias=rng.normal(0.0, 0.45, popularity.size) + 0.25 * pop_z,
        movie_factors=rng.normal(0.0, factor_sd, (popularity.size, _LATENT_DIM)).astype(np.float32),
    )


def _scores(rng: np.random.Generator, taste: _Taste, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    dot = np.einsum("ij,ij->i", taste.user_factors[users], taste.movie_factors[movies])
    noise = rng.normal(0.0, _NOISE_SD, users.size)
    return taste.user_bias[users] + taste.movie_bias[movies] + dot + noise


def _cut_points(
    rng: np.random.Generator,
    layout: _LayoutInfo,
    taste: _Taste,
    activity: np.ndarray,
    catalog: _Catalog,
) -> np.ndarray:
    """Score thresholds between rating levels.

    A pilot run of the real sampler over a random subset of users (about
    _PILOT_SAMPLES ratings) reproduces the score distribution of the final
    ratings, including the shift that per-user de-duplication causes; its
    quantiles at the target cumulative histogram become the cut points, so the
    streamed ratings match the histogram without holding all scores in memory.
    """
    order = rng.permutation(activity.size)
    taken = int(np.searchsorted(np.cumsum(activity[order]), _PILOT_SAMPLES)) + 1
    pilot_users = np.sort(order[:taken])
    local, movies = _sample_user_movies(rng, activity[pilot_users], catalog.popularity, catalog.cdf)
    scores = _scores(rng, taste, pilot_users[local], movies)
    probs = np.asarray(layout.rating_probs, dtype=np.float64)
    cumulative = np.cumsum(probs / probs.sum())[:-1]
    return np.quantile(scores, cumulative)


@dataclass(frozen=True)
class _Windows:
    start: np.ndarray  # int64 unix seconds
    length: np.ndarray  # int64 seconds, start + length <= layout.ts_max


def _make_windows(rng: np.random.Generator, layout: _LayoutInfo, n_users: int) -> _Windows:
    """Each user rates within one activity window: many in a single session, a few over years."""
    span = layout.ts_max - layout.ts_min
    median = layout.window_median_days * 86_400
    length = np.minimum(rng.lognormal(math.log(median), 2.0, n_users), span).astype(np.int64)
    start = layout.ts_min + (rng.random(n_users) * (span - length + 1)).astype(np.int64)
    return _Windows(start=start, length=length)


# --------------------------------------------------------------------------- #
# Distinct movie sampling per user
# --------------------------------------------------------------------------- #
def _draw_popular(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """Movie indices drawn with replacement from the popularity CDF (O(log M) each)."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), cdf.size - 1)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # np.unique is slow on large int64 arrays in recent numpy; sort + mask is ~10x faster.
    values = np.sort(values, kind="stable")
    if values.size:
        values = values[np.concatenate(([True], values[1:] != values[:-1]))]
    return values


def _merge_sorted_unique(held: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Union of two sorted-unique arrays; timsort merges the two runs in linear time."""
    return _sorted_unique(np.concatenate((held, new)))


def _contains(sorted_unique: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Membership test by binary search: O(len(values) * log N), no pass over the big array."""
    if sorted_unique.size == 0:
        return np.zeros(values.size, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_unique, values), sorted_unique.size - 1)
    return sorted_unique[pos] == values


def _sample_user_movies(
    rng: np.random.Generator, need: np.ndarray, popularity: np.ndarray, cdf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct, popularity-weighted movies for each user of a chunk.

    Returns (local user index, movie index) sorted by user then movie, with
    exactly ``need[u]`` rows for user ``u``.  Pairs are int64 keys
    ``user * n_movies + movie``, so de-duplication is one sort.  Light users draw
    with replacement and then top up only their shortfall (never overshoots;
    later rounds are small, so they are checked against the first round by
    binary search instead of re-sorting everything).  Users wanting a large share
    of the catalogue, or still short after a few rounds, are completed by exact
    weighted sampling without replacement: O(movies), but only for users whose
    own output is a sizeable fraction of O(movies) anyway.
    """
    n_movies = cdf.size
    light_need = np.where(need > _HEAVY_FRACTION * n_movies, 0, need)
    base = _draw_for(rng, light_need, cdf)  # bulk of the pairs, first round
    extra = np.empty(0, dtype=np.int64)  # pairs found by the top-up rounds
    have = np.bincount(base // n_movies, minlength=need.size)
    for _ in range(_MAX_TOPUP_ROUNDS):
        deficit = light_need - have
        if not deficit.any():
            break
        candidates = _draw_for(rng, deficit, cdf)
        fresh = candidates[~(_contains(base, candidates) | _contains(extra, candidates))]
        extra = _merge_sorted_unique(extra, fresh)
        have += np.bincount(fresh // n_movies, minlength=need.size)
    keys = _merge_sorted_unique(base, extra)
    short = np.flatnonzero(have < need)
    if short.size:
        keys = _complete_exactly(rng, keys, short, need - have, popularity)
    return keys // n_movies, keys % n_movies


def _draw_for(rng: np.random.Generator, counts: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """``counts[u]`` popularity-weighted draws for each local user u, as sorted-unique keys."""
    users = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    return _sorted_unique(users * cdf.size + _draw_popular(rng, cdf, users.size))


def _complete_exactly(
    rng: np.random.Generator,
    keys: np.ndarray,
    users: np.ndarray,
    missing: np.ndarray,
    popularity: np.ndarray,
) -> np.ndarray:
    """Add ``missing[u]`` new movies for each listed user, weighted, without replacement.

    Exponential race (Efraimidis-Spirakis): the k smallest Exp(1)/weight keys
    are a weighted sample without replacement; movies already held are excluded.
    """
    n_movies = popularity.size
    added = []
    for user in users.tolist():
        lo, hi = np.searchsorted(keys, (user * n_movies, (user + 1) * n_movies))
        race = rng.exponential(size=n_movies) / popularity
        race[keys[lo:hi] - user * n_movies] = np.inf
        k = int(missing[user])
        added.append(user * n_movies + np.argpartition(race, k - 1)[:k])
    return _sorted_unique(np.concatenate([keys, *added]))


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #
@contextmanager
def _atomic_write(path: Path, encoding: str | None) -> Iterator[IO]:
    """Open ``path`` for writing via a temp name; rename on success, delete on failure.

    ``encoding=None`` opens in binary mode.  ``newline=""`` keeps LF line endings on
    every platform (the real files use LF).
    """
    tmp = path.with_name(path.name + ".partial")
    try:
        if encoding is None:
            with open(tmp, "wb") as handle:
                yield handle
        else:
            with open(tmp, "w", encoding=encoding, newline="") as handle:
                yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_POWERS_OF_TEN = 10 ** np.arange(1, 19, dtype=np.int64)


def _int_cells(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned ASCII digits of non-negative ints as a byte matrix, plus the mask
    of cells actually used (left padding is masked out)."""
    width = len(str(int(values.max())))
    cells = np.empty((values.size, width), dtype=np.uint8)
    rest = values.astype(np.int64)
    for col in range(width - 1, -1, -1):
        rest, digit = np.divmod(rest, 10)
        cells[:, col] = digit + ord("0")
    n_digits = 1 + np.searchsorted(_POWERS_OF_TEN, values, side="right")
    used = np.arange(width) >= (width - n_digits)[:, None]
    return cells, used


def _render_lines(fields: list[tuple[np.ndarray, np.ndarray]], sep: str) -> bytes:
    """Join per-field byte matrices into delimited LF-terminated lines.

    pandas.to_csv spends ~2 s per million rows on this; building one padded byte
    matrix and dropping the padding with a boolean mask is ~10x faster, which is
    most of the 25M-row runtime.
    """
    rows = fields[0][0].shape[0]
    cells, used = [], []
    for number, (field_cells, field_used) in enumerate(fields):
        end = "\n" if number == len(fields) - 1 else sep
        cells += [field_cells, np.full((rows, 1), ord(end), dtype=np.uint8)]
        used += [field_used, np.ones((rows, 1), dtype=bool)]
    return np.hstack(cells)[np.hstack(used)].tobytes()


def _label_cells(labels: tuple[str, ...], levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte matrix for categorical text (rating labels like '3.5'); all labels share a width."""
    table = np.array([list(label.encode("ascii")) for label in labels], dtype=np.uint8)
    cells = table[levels]
    return cells, np.ones(cells.shape, dtype=bool)


def _chunks(activity: np.ndarray) -> Iterator[tuple[int, int]]:
    """User ranges [lo, hi) holding about _CHUNK_RATINGS ratings each."""
    ends = np.cumsum(activity)
    lo = 0
    while lo < activity.size:
        base = int(ends[lo - 1]) if lo else 0
        hi = int(np.searchsorted(ends, base + _CHUNK_RATINGS, side="right"))
        hi = max(hi, lo + 1)  # a single huge user still forms a chunk
        yield lo, hi
        lo = hi


@dataclass(frozen=True)
class _RatingModel:
    """Everything a chunk of ratings is derived from (all O(users + movies) in size)."""

    layout: _LayoutInfo
    catalog: _Catalog
    activity: np.ndarray  # ratings per user
    taste: _Taste
    windows: _Windows
    cuts: np.ndarray  # latent-score thresholds between rating levels


def _write_ratings(
    spec: SyntheticSpec, model: _RatingModel, out_dir: Path, progress: ProgressFn | None
) -> GeneratedFile:
    """Stream ratings to u.data / ratings.csv one chunk of users at a time."""
    ml100k = spec.layout == "ml-100k"
    path = out_dir / ("u.data" if ml100k else "ratings.csv")
    done = 0
    with _atomic_write(path, encoding=None) as handle:
        if not ml100k:
            handle.write(b"userId,movieId,rating,timestamp\n")
        for number, (lo, hi) in enumerate(_chunks(model.activity)):
            lines, rows = _rating_lines(_rng(spec.seed, _Stream.CHUNK, number), model, lo, hi, ml100k)
            handle.write(lines)
            done += rows
            if progress is not None:
                progress(done, spec.ratings)
    return GeneratedFile(path=path, rows=done)


def _rating_lines(
    rng: np.random.Generator, model: _RatingModel, lo: int, hi: int, ml100k: bool
) -> tuple[bytes, int]:
    """Rendered rating lines (and their count) for users [lo, hi)."""
    catalog, windows = model.catalog, model.windows
    local, movies = _sample_user_movies(rng, model.activity[lo:hi], catalog.popularity, catalog.cdf)
    users = local + lo
    levels = np.searchsorted(model.cuts, _scores(rng, model.taste, users, movies), side="right")
    offsets = (rng.random(users.size) * (windows.length[users] + 1)).astype(np.int64)
    timestamps = windows.start[users] + offsets  # uniform within the user's active window
    movie_ids = catalog.ids[movies]
    # Real u.data is in no particular order (shuffled here within each chunk);
    # ratings.csv is sorted by userId, movieId, which the sampler already yields.
    if ml100k:
        shuffle = rng.permutation(users.size)
        users, movie_ids, levels, timestamps = (a[shuffle] for a in (users, movie_ids, levels, timestamps))
    # As in the real files: "4" in u.data, "4.0"/"3.5" in ratings.csv.
    labels = tuple(f"{v:g}" if ml100k else f"{v:.1f}" for v in model.layout.rating_values)
    fields = [
        _int_cells(users + 1),
        _int_cells(movie_ids),
        _label_cells(labels, levels),
        _int_cells(timestamps),
    ]
    return _render_lines(fields, sep="\t" if ml100k else ","), users.size


def _genres_text(catalog: _Catalog, genres: tuple[str, ...], row: int) -> str:
    if catalog.no_genre[row]:
        return NO_GENRES
    return "|".join(g for g, on in zip(genres, catalog.genre_flags[row], strict=True) if on)


def _write_movies_csv(path: Path, catalog: _Catalog) -> GeneratedFile:
    with _atomic_write(path, "utf-8") as handle:
        # csv's default QUOTE_MINIMAL gives RFC-4180 quoting ("" doubles a quote).
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("movieId", "title", "genres"))
        for row, (movie_id, title) in enumerate(zip(catalog.ids.tolist(), catalog.titles, strict=True)):
            writer.writerow((movie_id, title, _genres_text(catalog, ML_LATEST_GENRES, row)))
    return GeneratedFile(path=path, rows=len(catalog.titles))


def _release_date(year: int, day_offset: int, last: dt.date) -> str:
    date = min(dt.date(year, 1, 1) + dt.timedelta(days=day_offset), last)  # not after collection
    return f"{date.day:02d}-{_MONTHS[date.month - 1]}-{date.year}"  # locale-independent


def _write_ml100k_side_files(
    spec: SyntheticSpec, out_dir: Path, catalog: _Catalog, n_users: int
) -> list[GeneratedFile]:
    last_day = dt.datetime.fromtimestamp(_LAYOUTS["ml-100k"].ts_max, dt.timezone.utc).date()
    item = out_dir / "u.item"
    with _atomic_write(item, "latin-1") as handle:
        for row, (movie_id, title) in enumerate(zip(catalog.ids.tolist(), catalog.titles, strict=True)):
            release = _release_date(int(catalog.years[row]), int(catalog.release_days[row]), last_day)
            url = "http://us.imdb.com/M/title-exact?" + quote(title, safe="(),'", encoding="latin-1")
            flags = "|".join("1" if on else "0" for on in catalog.genre_flags[row].tolist())
            handle.write(f"{movie_id}|{title}|{release}||{url}|{flags}\n")

    user = out_dir / "u.user"
    _write_users(_rng(spec.seed, _Stream.USERS), user, n_users)

    genre = out_dir / "u.genre"
    with _atomic_write(genre, "ascii") as handle:
        handle.writelines(f"{name}|{i}\n" for i, name in enumerate(ML100K_GENRES))
        handle.write("\n")  # the real file ends with one blank line

    occupation = out_dir / "u.occupation"
    with _atomic_write(occupation, "ascii") as handle:
        handle.writelines(f"{name}\n" for name in OCCUPATIONS)

    info = out_dir / "u.info"
    with _atomic_write(info, "ascii") as handle:
        handle.write(f"{n_users} users\n{catalog.ids.size} items\n{spec.ratings} ratings\n")

    return [
        GeneratedFile(item, catalog.ids.size),
        GeneratedFile(user, n_users),
        GeneratedFile(genre, len(ML100K_GENRES)),
        GeneratedFile(occupation, len(OCCUPATIONS)),
        GeneratedFile(info, 3),
    ]


def _write_users(rng: np.random.Generator, path: Path, n_users: int) -> None:
    """u.user demographics with ml-100k's marginals (ages 7..73, ~71% M, student-heavy)."""
    ages = np.clip(np.rint(rng.lognormal(math.log(31), 0.35, n_users)), 7, 73).astype(np.int64)
    genders = np.where(rng.random(n_users) < 0.71, "M", "F")
    occ_p = np.asarray(_OCCUPATION_WEIGHTS, dtype=np.float64)
    occupations = rng.choice(len(OCCUPATIONS), size=n_users, p=occ_p / occ_p.sum())
    zips = rng.integers(0, 100_000, n_users)
    canadian = rng.random(n_users) < 0.02  # real data has a few postal codes like "T8H1N"
    letters = rng.integers(0, 26, (n_users, 3))
    digits = rng.integers(0, 10, (n_users, 2))
    with _atomic_write(path, "ascii") as handle:
        for i in range(n_users):
            if canadian[i]:
                a, b, c = (chr(65 + x) for x in letters[i])
                zip_code = f"{a}{digits[i, 0]}{b}{digits[i, 1]}{c}"
            else:
                zip_code = f"{zips[i]:05d}"
            handle.write(f"{i + 1}|{ages[i]}|{genders[i]}|{OCCUPATIONS[occupations[i]]}|{zip_code}\n")
