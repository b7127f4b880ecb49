"""Pydantic models of every request and response: the OpenAPI schema at /openapi.json is built
from them, and FastAPI checks each response against its model."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from lakehouse.datasets import MAX_ID

MAX_BATCH = 1000



def _json_number(value):
    """A number as JSON writes one: pydantic's lax mode also reads true as 1 and "4" as 4."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be a JSON number")
    return value


Number = BeforeValidator(_json_number)
Id = Annotated[int, Field(gt=0, le=MAX_ID), Number]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(Strict):
    status: str = Field(examples=["ok"])


class Ready(Strict):
    ready: bool
    detail: str = Field(examples=["serving"])
    model_name: str | None = Field(None, examples=["als-ranking"])
    model_version: str | None = Field(None, examples=["3"])
    run_id: str | None = None
    updated_at: datetime | None = Field(None, description="the newest recommendation's updated_at (fold-in or training)")
    loaded_at: datetime | None = None
    load_seconds: float | None = None
    tables: dict[str, int] = Field(default_factory=dict, description="the Delta version served of each table",
                                   examples=[{"ml.recommendations": 4, "gold.movies": 2}])
    movies: int = 0
    users: int = 0
    ratings: int = Field(0, description="gold.ratings")
    streamed_ratings: int = Field(0, description="bronze.rating_events (latest per user and movie)")


class Movie(Strict):
    movie_id: int = Field(examples=[50])
    title: str = Field(examples=["Star Wars (1977)"])
    display_title: str = Field(examples=["Star Wars (1977)"], description="a trailing article moved to the front")
    year: int | None = Field(None, examples=[1977])
    genres: list[str] = Field(examples=[["Action", "Adventure", "Romance", "Sci-Fi", "War"]])
    rating_count: int = Field(examples=[583])
    rating_mean: float | None = Field(None, examples=[4.36])
    bayesian_rating: float | None = Field(None, examples=[4.27])


class SearchHit(Movie):
    match_quality: float = Field(examples=[1.0], description="0..1; see api/search.py")


class SearchResults(Strict):
    query: str
    total: int = Field(description="candidates found (at most 200)")
    offset: int
    limit: int
    results: list[SearchHit]


class SimilarMovie(Strict):
    rank: int
    similarity: float
    movie: Movie


class SimilarMovies(Strict):
    movie: Movie
    similar: list[SimilarMovie]


class Because(Strict):
    movie_id: int
    title: str
    rating: float


class UserRecommendation(Strict):
    rank: int
    score: float
    movie: Movie
    reason: str | None = Field(None, examples=["because you rated Alien (1979) 5"])
    because: Because | None = None


class UserRecommendations(Strict):
    user_id: int
    cold_start: bool = Field(description="not the champion's list: for a user the model has never seen, the most "
                                         "popular movies (model_name null), or the fold-in's cold-start list for a "
                                         "user with too few ratings (model_name says so)")
    model_name: str | None
    model_version: str | None
    updated_at: datetime | None = Field(None, description="when this user's list was computed (stream fold-in or training)")
    recommendations: list[UserRecommendation]


class TitleRecommendation(Strict):
    rank: int
    score: float
    supporters: int = Field(description="how many of the fans and their neighbours recommended it")
    movie: Movie


class TitleRecommendations(Strict):
    movie: Movie
    liked_by: int = Field(description="users who rated the movie highly")
    scoring: str
    recommendations: list[TitleRecommendation]


class Ambiguous(Strict):
    detail: str
    candidates: list[Movie]


class Neighbour(Strict):
    rank: int
    user_id: int
    similarity: float
    co_rated: int | None = None


class Neighbours(Strict):
    user_id: int
    neighbours: list[Neighbour]


class RatingIn(Strict):
    user_id: Id = Field(examples=[196])
    movie_id: Id = Field(examples=[242])
    rating: Annotated[float, Number] = Field(examples=[4.0], allow_inf_nan=False)
    # At most 18 digits: the stream reads no longer number as a timestamp.
    timestamp: Annotated[int | None, Number] = Field(None, ge=0, lt=10**18, examples=[1764633600],
                                  description="epoch seconds; default: now")


class RatingBatch(Strict):
    ratings: list[RatingIn] = Field(min_length=1, max_length=MAX_BATCH)


def _body_kind(value) -> str:
    if isinstance(value, dict):
        return "batch" if "ratings" in value else "one"
    return "batch" if isinstance(value, RatingBatch) else "one"


# One rating, or {"ratings": [...]}: told apart by the "ratings" key, so an error names one shape.
RatingsBody = Annotated[Annotated[RatingIn, Tag("one")] | Annotated[RatingBatch, Tag("batch")], Discriminator(_body_kind)]


class Accepted(Strict):
    event_id: str = Field(examples=["5f0c4b2e9a7d4c1e8b3a6d2f1e0c9b8a"])
    file: str = Field(description="the file in the stream's inbox")
    ratings: int
    landed_at: datetime


class ErasureAccepted(Strict):
    request_id: str = Field(examples=["9b2f0c4e5a7d4c1e8b3a6d2f1e0c9b8a"])
    user_id: int = Field(examples=[196])
    log: str = Field(description="the erasure's log file under the data directory")
    detail: str = Field(examples=["`lakehouse forget-user 196` started; its audit row goes to governance.erasure_log"])


class Problem(Strict):
    detail: str
