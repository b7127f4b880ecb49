"""How a user's record is recognised outside a table's id columns: in a raw line of a MovieLens
file, a landed stream file or a quarantined line, and in the Parquet artifacts of a model.

One regular expression per user, used both by Python (files) and by Spark (`rlike` on
bronze.quarantine.raw_line): the syntax below means the same to Python's `re` and Java's regex.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# The user's id leads a delimited line (u.data's tabs, ratings.csv's commas, ml-1m's `::`,
# u.user's `|`), or is a JSON line's user_id; a header line ("user_id,movie_id,...") never matches.
_LEADING = r'^\s*"?{id}"?\s*(?:\t|,|\||::)'
_JSON = r'"(?:user_id|userId)"\s*:\s*"?{id}(?![0-9])'


def line_pattern(user_id: int) -> str:
    """Matches any line of a text that is a record of `user_id` (multi-line: one match is enough)."""
    uid = str(int(user_id))
    return "(?m)(?:" + _LEADING.format(id=uid) + "|" + _JSON.format(id=uid) + ")"


def user_hash(salt: str, user_id: int) -> str:
    """The salted SHA-256 the governance tables keep instead of the id."""
    return hashlib.sha256(f"{salt}:{int(user_id)}".encode()).hexdigest()


def user_hash_sql(salt_literal: str, column: str) -> str:
    """The same hash as a Spark SQL expression over an integer column."""
    return f"sha2(concat({salt_literal}, ':', cast({column} as string)), 256)"


# The columns that hold user ids, by default (a table of lakehouse/tables.py may name others:
# ml.user_similarity's neighbour_id is a user, a k-NN item model's neighbour_id is a movie).
USER_ID_COLUMNS = ("user_id", "other_user_id")


ERASED_REASON = "erased user"
WITHHELD_LINE = "(withheld: a rating of an erased user)"


def flag_erased(rows: DataFrame, erased_users: DataFrame | None, salt: str) -> DataFrame:
    """The stream's and the batch ingest's check (rows with user_id, raw_line and reason): a line
    of a user erased by `lakehouse forget-user` is rejected with the reason "erased user", and
    the quarantine keeps the reason, never the line. The erasure holds for good:
    governance.erased_users keeps the users' salted hashes, never their ids."""
    from pyspark.sql import functions as F

    from lakehouse.delta import quote

    if erased_users is None or not salt:
        return rows
    erased = erased_users.select(F.col("user_hash").alias("_erased_hash"), F.lit(True).alias("_is_erased")).distinct()
    hashed = rows.withColumn("_user_hash", F.expr(user_hash_sql(quote(salt), "user_id")))
    joined = hashed.join(F.broadcast(erased), hashed["_user_hash"] == erased["_erased_hash"], "left")
    erased_now = F.col("_is_erased").isNotNull()
    raw = F.when(erased_now, F.lit(WITHHELD_LINE)).otherwise(F.col("raw_line"))
    kept = [raw.alias("raw_line") if c == "raw_line" else c for c in rows.columns if c != "reason"]
    return joined.select(*kept, F.when(erased_now, F.lit(ERASED_REASON)).otherwise(F.col("reason")).alias("reason"))
