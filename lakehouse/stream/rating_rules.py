"""The stream's value checks for one typed rating, in plain Python, with the stream's messages.

parse.py applies these rules to every landed line as Spark columns; a client that writes ratings
into the landing folder (the REST API) applies them here first, so it can refuse a bad rating
with the reason the stream would have quarantined it with. tests/integration/test_rating_rules.py
runs both on the same ratings and asserts the same reasons.
"""
from __future__ import annotations

import math
from collections.abc import Container
from datetime import datetime, timezone

from lakehouse.datasets import EARLIEST_TIMESTAMP, FUTURE_SLACK, MAX_ID, RatingScale


def shown(text: str) -> str:
    """A value quoted for a reason, cut short (parse._shown)."""
    return f"'{text[:40]}'"


def id_reason(name: str, value: int) -> str | None:
    if value <= 0:
        return f"{name} must be positive"
    if value > MAX_ID:
        return f"{name} {value} is too large (max {MAX_ID})"
    return None


def reason(user_id: int, movie_id: int, rating: float, rating_text: str, epoch: int, landed_at: datetime,
           scale: RatingScale, known_movies: Container[int]) -> str | None:
    """Why the stream would reject this rating, or None. `rating_text` is how the file spells it;
    `landed_at` is when it lands (a timestamp more than a day after it is in the future)."""
    if (why := id_reason("user_id", user_id) or id_reason("movie_id", movie_id)) is not None:
        return why
    if not math.isfinite(rating):
        return f"rating {shown(rating_text)} is not a finite number"
    if not scale.contains(rating):
        return f"rating {shown(rating_text)} is off the {scale.describe()}"
    if not -10**18 < epoch < 10**18:  # the stream reads at most 18 digits as a number
        return f"timestamp {shown(str(epoch))} is not an integer (epoch seconds)"
    if epoch < int(EARLIEST_TIMESTAMP.timestamp()):
        return f"timestamp {epoch} is before {EARLIEST_TIMESTAMP.date().isoformat()}"
    landed = int(landed_at.timestamp())
    if epoch > landed + int(FUTURE_SLACK.total_seconds()):
        at = datetime.fromtimestamp(landed, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return f"timestamp {epoch} is in the future (the file landed at {at} UTC)"
    if movie_id not in known_movies:
        return f"movie_id {movie_id} is not in the movie catalogue (bronze.movies)"
    return None
