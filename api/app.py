"""The FastAPI application: routes, input limits and the mapping from a Catalog to responses.

Run by uvicorn (`lakehouse api up`, lakehouse/api_service.py), one Catalog per worker process,
refreshed in the background (api/refresh.py). The read endpoints are `async def`: their work is a
few hundred microseconds in memory and never waits, so they run on the event loop instead of
being handed to a thread pool. The title flow (tens of thousands of list entries summed for a
popular title) and POST /v1/ratings (it writes and fsyncs a file) are plain `def`s, run in the
thread pool so they never hold up the loop. Requests never build SQL or file paths from their strings: they
look up ids and words in the in-memory snapshot, and POST /v1/ratings writes a file whose name is
a fresh UUID.
"""
from __future__ import annotations

import hmac
import math
import re
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Body, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BeforeValidator

from api import recommend, schemas
from api.catalog import Catalog
from api.refresh import Live
from api.search import display_title, words
from lakehouse import secrets
from lakehouse.governance.requests import start_erasure
from lakehouse.settings import Settings, load_settings
from lakehouse.stream import landing, rating_rules

MAX_BODY_BYTES = 256 * 1024  # a batch of 1,000 ratings is about 80 KB
MAX_QUERY_CHARS = 200
# Not blank: one character outside the union of Python's and ECMAScript's whitespace, spelled
# out, since `\S` means one thing in the OpenAPI schema's ECMA regex and another in pydantic's
# (Python counts U+001C..U+001F and U+0085). A query of only punctuation just finds nothing.
NOT_BLANK = r"[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"


def _digits(value):
    """A path or query integer as JSON Schema's `integer` reads it (digits, or a zero fraction as
    in "7.0"): pydantic's lax int also takes "1_0" and " 7\f", which the schema does not."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+(\.0*)?", value):
        raise ValueError("must be an integer written in digits")
    return value


# After Query/Path in Annotated, or FastAPI writes their bounds into the schema as "ge"/"le".
DIGITS = BeforeValidator(_digits)
K = Annotated[int, Query(ge=1, le=100, description="how many (1..100)"), DIGITS]
UserId = Annotated[int, PathParam(gt=0, le=schemas.MAX_ID, description="a MovieLens user id", examples=[196]), DIGITS]
MovieId = Annotated[int, PathParam(gt=0, le=schemas.MAX_ID, description="a MovieLens movie id", examples=[50]), DIGITS]
TITLE_SCORING = ("score(m) = votes(m) / sqrt(lists holding m), votes(m) = sum over the users who rated the movie "
                 "highly of 1/log2(rank+1) for m in their top-N, plus the same over their graph neighbours "
                 "weighted by similarity/2; the movie itself excluded; ties by rating count")
NOT_READY = {503: {"model": schemas.Problem, "description": "no data loaded yet (see GET /ready)"}}


class NotServing(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail


class Missing(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail


def create_app(settings: Settings | None = None, *, live: Live | None = None,
               erase: Callable[[Settings, int], tuple[str, Path]] = start_erasure) -> FastAPI:
    """`erase` starts an erasure (tests give a recorder instead of the real `lakehouse forget-user`)."""
    settings = settings or load_settings()
    live = live or Live(settings.warehouse_dir, settings.api_refresh_seconds)
    admin_token = secrets.admin_token(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        live.refresh()  # the first snapshot before the first request, when the tables exist
        live.start()
        yield
        live.stop()

    app = FastAPI(
        title="MovieLens lakehouse API",
        version="1",
        description="Recommendations, typo-tolerant movie search and new ratings, served from the lakehouse's "
                    "Delta tables (refreshed when they get a new version).",
        lifespan=lifespan,
    )
    app.state.live = live

    def serving() -> Catalog:
        if live.catalog is None:
            raise NotServing(live.problem or "not loaded yet")
        return live.catalog

    @app.exception_handler(NotServing)
    async def not_serving(_: Request, error: NotServing) -> JSONResponse:
        return JSONResponse({"detail": f"not ready: {error.detail}"}, status_code=503)

    @app.exception_handler(Missing)
    async def missing(_: Request, error: Missing) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=404)

    app.add_middleware(BodyLimit)

    @app.get("/health", response_model=schemas.Health, tags=["service"], summary="liveness")
    async def health() -> schemas.Health:
        return schemas.Health(status="ok")

    @app.get("/ready", response_model=schemas.Ready, tags=["service"], summary="readiness and data age",
             responses={503: {"model": schemas.Ready, "description": "no data loaded yet"}})
    async def ready():
        current = live.catalog
        if current is None:
            body = schemas.Ready(ready=False, detail=live.problem or "not loaded yet")
            return JSONResponse(body.model_dump(mode="json"), status_code=503)
        return schemas.Ready(
            ready=True, detail=live.problem or "serving", model_name=current.model_name or None,
            model_version=current.model_version or None, run_id=current.run_id or None,
            updated_at=current.updated_at, loaded_at=current.loaded_at, load_seconds=round(current.load_seconds, 3),
            tables=current.versions, movies=len(current.movies.ids), users=len(current.ratings),
            ratings=int(current.ratings.starts[-1]), streamed_ratings=int(current.events.starts[-1]),
        )

    @app.get("/v1/movies/search", response_model=schemas.SearchResults, tags=["movies"], responses=NOT_READY,
             summary="typo-tolerant title search, ranked by match quality, then popularity")
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK, examples=["toy stroy"])],
        year: Annotated[int | None, Query(ge=1800, le=2100), DIGITS] = None,
        genre: Annotated[str | None, Query(min_length=1, max_length=40, examples=["Comedy"])] = None,
        limit: Annotated[int, Query(ge=1, le=100), DIGITS] = 10,
        offset: Annotated[int, Query(ge=0, le=1000), DIGITS] = 0,
    ) -> schemas.SearchResults:
        current = serving()
        hits = current.index.search(q, year=year, genre=genre)
        page = hits[offset:offset + limit]
        return _json(schemas.SearchResults(query=q, total=len(hits), offset=offset, limit=limit, results=[
            schemas.SearchHit(**_movie(current, h.row).model_dump(), match_quality=h.quality) for h in page]))

    @app.get("/v1/movies/{movie_id}", response_model=schemas.Movie, tags=["movies"],
             responses={404: {"model": schemas.Problem}, **NOT_READY}, summary="a movie's details and rating stats")
    async def movie(movie_id: MovieId) -> schemas.Movie:
        current = serving()
        return _json(_movie(current, _movie_row(current, movie_id)))

    @app.get("/v1/movies/{movie_id}/similar", response_model=schemas.SimilarMovies, tags=["movies"],
             responses={404: {"model": schemas.Problem}, **NOT_READY},
             summary="the most similar movies in the champion's item space")
    async def similar(movie_id: MovieId, k: K = 10) -> schemas.SimilarMovies:
        current = serving()
        row = _movie_row(current, movie_id)
        at = current.similar.span(movie_id)
        listed = []
        if at is not None:
            for other, sim in zip(current.similar.values["similar_movie_id"][at], current.similar.values["similarity"][at]):
                other_row = current.movies.row(int(other))
                if other_row is not None:
                    listed.append(schemas.SimilarMovie(rank=len(listed) + 1, similarity=_finite(sim),
                                                       movie=_movie(current, other_row)))
        return _json(schemas.SimilarMovies(movie=_movie(current, row), similar=listed[:k]))

    @app.get("/v1/users/{user_id}/recommendations", response_model=schemas.UserRecommendations, tags=["users"],
             responses=NOT_READY, summary="a user's top-k unseen movies, each with a reason")
    async def user_recommendations(user_id: UserId, k: K = 10) -> schemas.UserRecommendations:
        current = serving()
        listed = recommend.for_user(current, user_id, k)
        out = []
        for item in listed.items:
            row = current.movies.row(item.movie_id)
            if row is None:
                continue
            because = reason = None
            if item.because_movie_id is not None and (liked := current.movies.row(item.because_movie_id)) is not None:
                because = schemas.Because(movie_id=item.because_movie_id, title=current.movies.titles[liked],
                                          rating=item.because_rating)
                reason = f"because you rated {current.movies.titles[liked]} {item.because_rating:g}"
            out.append(schemas.UserRecommendation(rank=len(out) + 1, score=_finite(item.score),
                                                  movie=_movie(current, row), reason=reason, because=because))
        return _json(schemas.UserRecommendations(
            user_id=user_id, cold_start=listed.cold_start, model_name=listed.model_name,
            model_version=None if listed.cold_start else current.model_version or None,
            updated_at=_timestamp(listed.updated_at), recommendations=out))

    @app.get("/v1/recommendations", response_model=schemas.TitleRecommendations, tags=["recommendations"],
             responses={300: {"model": schemas.Ambiguous, "description": "the title matches several movies"},
                        404: {"model": schemas.Problem}, **NOT_READY},
             summary="people who liked this title also liked")
    def title_recommendations(
        title: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NOT_BLANK, examples=["Star Wars"])],
        year: Annotated[int | None, Query(ge=1800, le=2100), DIGITS] = None,
        k: K = 10,
    ):
        current = serving()
        hits = current.index.search(title, year=year)
        if not hits:
            raise Missing(f"no movie matches the title {title!r}")
        chosen = _resolve(current, title, hits)
        if chosen is None:
            candidates = [_movie(current, h.row) for h in hits[:10]]
            body = schemas.Ambiguous(detail=f"{title!r} matches several movies: ask again with one of these titles "
                                            "(or add year=)", candidates=candidates)
            return JSONResponse(body.model_dump(mode="json"), status_code=300)
        movie_id = int(current.movies.ids[chosen])
        picked, fans = recommend.by_title(current, movie_id, k)
        out = []
        for item in picked:
            row = current.movies.row(item.movie_id)
            if row is not None:
                out.append(schemas.TitleRecommendation(rank=len(out) + 1, score=_finite(item.score),
                                                       supporters=item.supporters, movie=_movie(current, row)))
        return schemas.TitleRecommendations(movie=_movie(current, chosen), liked_by=fans, scoring=TITLE_SCORING,
                                            recommendations=out)

    @app.get("/v1/users/{user_id}/neighbours", response_model=schemas.Neighbours, tags=["users"],
             responses={404: {"model": schemas.Problem}, **NOT_READY},
             summary="the user's nearest neighbours in the similarity graph")
    async def neighbours(user_id: UserId, k: K = 10) -> schemas.Neighbours:
        current = serving()
        at = current.neighbours.span(user_id)
        if at is None:
            if not current.known_user(user_id):
                raise Missing(f"user {user_id} has no ratings")
            return schemas.Neighbours(user_id=user_id, neighbours=[])
        values = current.neighbours.values
        listed = [schemas.Neighbour(rank=i + 1, user_id=int(v), similarity=_finite(s), co_rated=int(c))
                  for i, (v, s, c) in enumerate(zip(values["neighbour_id"][at], values["similarity"][at],
                                                    values["co_rated"][at]))]
        return _json(schemas.Neighbours(user_id=user_id, neighbours=listed[:k]))

    @app.post("/v1/ratings", status_code=202, response_model=schemas.Accepted, tags=["ratings"],
              responses={400: {"model": schemas.Problem, "description": "the body is not UTF-8 JSON"},
                         411: {"model": schemas.Problem}, 413: {"model": schemas.Problem}, **NOT_READY},
              summary="one rating or a batch of up to 1,000, into the stream")
    def post_ratings(body: Annotated[schemas.RatingsBody, Body(examples=[
            {"user_id": 196, "movie_id": 242, "rating": 4.0},
            {"ratings": [{"user_id": 196, "movie_id": 242, "rating": 4.0, "timestamp": 1764633600}]}])]):
        current = serving()
        ratings = body.ratings if isinstance(body, schemas.RatingBatch) else [body]
        landed_at = datetime.now(timezone.utc)
        now = int(landed_at.timestamp())
        known = set(current.known_movies.tolist()) if len(current.known_movies) < 4096 else _Sorted(current.known_movies)
        lines, problems = ["user_id,movie_id,rating,timestamp"], []
        for i, r in enumerate(ratings):
            epoch = r.timestamp if r.timestamp is not None else now
            text = repr(float(r.rating))
            why = rating_rules.reason(r.user_id, r.movie_id, r.rating, text, epoch, landed_at, current.scale, known)
            if why is not None:
                where = ["body", "ratings", i] if isinstance(body, schemas.RatingBatch) else ["body"]
                problems.append({"loc": where, "msg": f"the stream would reject this rating: {why}; nothing was written",
                                 "type": "stream_rule"})
            lines.append(f"{r.user_id},{r.movie_id},{text},{epoch}")
        if problems:
            # FastAPI's own 422 shape, one entry per refused rating: clients parse a single format.
            return JSONResponse({"detail": problems}, status_code=422)
        event_id = uuid.uuid4().hex
        path = landing.deposit(settings, f"api-{event_id}.csv", ("\n".join(lines) + "\n").encode())
        return schemas.Accepted(event_id=event_id, file=path.name, ratings=len(ratings), landed_at=landed_at)

    @app.delete("/v1/users/{user_id}", status_code=202, response_model=schemas.ErasureAccepted, tags=["admin"],
                responses={401: {"model": schemas.Problem, "description": "no or a wrong admin token"}},
                summary="erase a user everywhere (GDPR): admin token required")
    def forget_user(user_id: UserId, authorization: Annotated[str | None, Header(
            description="`Bearer <LAKEHOUSE_ADMIN_TOKEN from the .env file>`")] = None):
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), admin_token.encode()):
            return JSONResponse({"detail": "an admin token is required: Authorization: Bearer <LAKEHOUSE_ADMIN_TOKEN>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        request_id, log = erase(settings, user_id)
        return schemas.ErasureAccepted(
            request_id=request_id, user_id=user_id, log=str(log),
            detail=f"`lakehouse forget-user {user_id}` started; its audit row goes to governance.erasure_log")

    return app


class BodyLimit:
    """Refuse a body without a Content-Length (411) or over MAX_BODY_BYTES (413) before it is read.
    A plain ASGI middleware: it costs a GET nothing (Starlette's @app.middleware("http") wraps
    every request in extra tasks and streams)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            problem = None
            if length is None:
                problem = 411, "a request body needs a Content-Length header"
            elif not length.isdigit() or int(length) > MAX_BODY_BYTES:
                problem = 413, f"the body is over {MAX_BODY_BYTES:,} bytes; send at most {schemas.MAX_BATCH} ratings per request"
            if problem is not None:
                await JSONResponse({"detail": problem[1]}, status_code=problem[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Sorted:
    """`in` over a sorted id array without a Python set of 60k ints per request."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def __contains__(self, value: int) -> bool:
        i = int(np.searchsorted(self.ids, value))
        return i < len(self.ids) and int(self.ids[i]) == value


def _json(model) -> Response:
    """The model as JSON by pydantic's own serializer. Returned as a Response, FastAPI does not
    dump and validate it a second time against `response_model` (which still documents it; the
    schemathesis test checks every answer against the schema)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _finite(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _timestamp(micros: int | None) -> datetime | None:
    return datetime.fromtimestamp(micros / 1e6, timezone.utc) if micros else None


def _movie_row(current: Catalog, movie_id: int) -> int:
    row = current.movies.row(movie_id)
    if row is None:
        raise Missing(f"movie {movie_id} is not in the catalogue")
    return row


def _movie(current: Catalog, row: int) -> schemas.Movie:
    movies = current.movies
    mean, bayes = float(movies.rating_mean[row]), float(movies.bayesian_rating[row])
    return schemas.Movie(
        movie_id=int(movies.ids[row]), title=movies.titles[row], display_title=display_title(movies.titles[row]),
        year=int(movies.years[row]) or None, genres=list(movies.genres[row]), rating_count=int(movies.rating_count[row]),
        rating_mean=round(mean, 4) if math.isfinite(mean) else None,
        bayesian_rating=round(bayes, 4) if math.isfinite(bayes) else None,
    )


def _resolve(current: Catalog, title: str, hits) -> int | None:
    """The movie a title names, or None when it is ambiguous: several movies whose title (with
    its year, or without) is exactly the one asked, or no exact match and a near tie at the top."""
    asked = words(title)
    exact = [h.row for h in hits if words(display_title(current.movies.titles[h.row])) == asked
             or words(_without_year(display_title(current.movies.titles[h.row]))) == asked
             or words(current.movies.titles[h.row]) == asked]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        return None
    if len(hits) == 1 or hits[0].quality >= hits[1].quality + 0.05:
        return hits[0].row
    return None


def _without_year(title: str) -> str:
    return title.rsplit(" (", 1)[0] if title.endswith(")") else title
