"""The table catalogue: every table the Python code writes or reads, declared once.

Name, owning layer and job, keys and (for the tables Python creates) the schema, which is the
contract dbt's sources rely on. Writers, readers, `lakehouse status` and the tests refer to these
declarations, never to a table name typed out. The gold tables listed here are dbt's (their
columns are declared in models/); Python only reads them.

Bronze keeps the source's values with minimal typing (ids and ratings as numbers, the timestamp
as epoch seconds, titles with their year, genres `|`-joined) plus lineage columns; `load_id`
names the load (a batch ingest's file, or a stream micro-batch `stream-<stream id>-<batch id>`)
that a ledger row commits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import types as T

SCHEMAS = ("bronze", "silver", "gold", "ml", "governance")


@dataclass(frozen=True)
class Table:
    name: str  # <schema>.<table>
    owner: str  # the job that writes it: ingest, stream, train, similarity, dbt
    description: str
    keys: tuple[str, ...] = ()
    schema: T.StructType | None = None  # for the tables Python creates
    columns: tuple[str, ...] = field(default=())  # when only the column names are fixed here
    # The columns holding user ids, which `lakehouse forget-user` erases by; () for the default
    # (user_id and other_user_id, where present: lakehouse/governance/records.py).
    user_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.schema is not None and not self.columns:
            object.__setattr__(self, "columns", tuple(f.name for f in self.schema.fields))

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    def __str__(self) -> str:
        return self.name


def _fields(*pairs: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(name, kind, nullable) for name, kind, nullable in pairs])


S, I, L, D, TS, B = T.StringType(), T.IntegerType(), T.LongType(), T.DoubleType(), T.TimestampType(), T.BooleanType()
LINEAGE = (("source_file", S, False), ("line_number", L, False), ("ingested_at", TS, False), ("load_id", S, False))

# ---- bronze: the batch ingest (lakehouse/ingest) ---------------------------------------------

RATINGS = Table("bronze.ratings", "ingest", "MovieLens ratings as loaded", ("user_id", "movie_id"), _fields(
    ("user_id", I, False), ("movie_id", I, False), ("rating", D, False), ("epoch_seconds", L, False), *LINEAGE))
MOVIES = Table("bronze.movies", "ingest", "MovieLens movies as loaded", ("movie_id",), _fields(
    ("movie_id", I, False), ("title", S, False), ("genres", S, False), ("release_date", S, True),
    ("imdb_url", S, True), *LINEAGE))
USERS = Table("bronze.users", "ingest", "MovieLens users as loaded (ml-100k, ml-1m)", ("user_id",), _fields(
    ("user_id", I, False), ("age", I, True), ("gender", S, True), ("occupation", S, True), ("zip_code", S, True),
    *LINEAGE))
QUARANTINE = Table("bronze.quarantine", "ingest, stream", "every rejected line with its reason", (), _fields(
    ("source_file", S, False), ("line_number", L, False), ("raw_line", S, False), ("reason", S, False),
    ("target_table", S, False), ("quarantined_at", TS, False), ("load_id", S, False)))
INGEST_LOG = Table("bronze.ingest_log", "ingest", "the batch ingest's ledger: a load is committed by its row",
                   ("load_id",), _fields(
    ("dataset", S, False), ("source_file", S, False), ("file_sha256", S, False), ("target_table", S, False),
    ("rows_read", L, False), ("rows_loaded", L, False), ("rows_quarantined", L, False),
    ("started_at", TS, False), ("finished_at", TS, False),
    # Added with `ingest --holdout-fraction`: nullable, since older ledgers lack them (null = 0).
    ("rows_held_out", L, True), ("holdout_fraction", D, True), ("load_id", S, False)))

# ---- bronze: the stream (lakehouse/stream) ---------------------------------------------------

RATING_EVENTS = Table("bronze.rating_events", "stream", "streamed ratings, one row per accepted line", (), _fields(
    ("user_id", I, False), ("movie_id", I, False), ("rating", D, False), ("epoch_seconds", L, False),
    ("rated_at", TS, False),  # event time
    ("source_file", S, False),  # the landed file's name
    ("line_number", L, False),  # 1-based, in that file
    ("landed_at", TS, False),  # the file's modification time (its rename)
    ("batch_id", L, False), ("ingested_at", TS, False), ("load_id", S, False)))
# One row per micro-batch: the stream's health, and its ledger (a batch is committed when its row is).
STREAM_BATCHES = Table("bronze.stream_batches", "stream", "the stream's ledger and health, one row per micro-batch",
                       ("query_id", "batch_id"), _fields(
    ("query_id", S, False), ("batch_id", L, False), ("files", I, False), ("rows_read", L, False),
    ("rows_accepted", L, False), ("rows_quarantined", L, False), ("started_at", TS, False),
    ("committed_at", TS, False),  # its rows queryable in bronze
    ("finished_at", TS, False),  # recommendations refreshed too
    ("batch_seconds", D, False), ("rows_per_second", D, False),
    # landing (file renamed into the folder) -> committed, over the batch's files
    ("latency_p50_seconds", D, True), ("latency_max_seconds", D, True),
    ("users_refreshed", I, False), ("fold_in_seconds", D, False), ("load_id", S, False)))
# One row per landed file: rows_read = rows_accepted + rows_quarantined, per file.
STREAM_FILES = Table("bronze.stream_files", "stream", "one row per landed file, with its counts",
                     ("source_file", "load_id"), _fields(
    ("source_file", S, False), ("file_format", S, False),  # csv, csv+header, jsonl, empty
    ("landed_at", TS, False), ("bytes", L, False), ("rows_read", L, False), ("rows_accepted", L, False),
    ("rows_quarantined", L, False), ("batch_id", L, False), ("load_id", S, False)))

BRONZE_INGEST = (RATINGS, MOVIES, USERS, QUARANTINE, INGEST_LOG)
BRONZE_STREAM = (RATING_EVENTS, STREAM_BATCHES, STREAM_FILES)


def ingest_stage(kind: str) -> Table:
    """The scratch table one ingest of a file stages its parsed rows in (dropped at the end)."""
    return Table(f"bronze.ingest_stage_{kind}", "ingest", f"scratch: parsed {kind} before validation")


# ---- gold: dbt's marts that the jobs read ----------------------------------------------------

GOLD_RATINGS = Table("gold.ratings", "dbt", "every rating, batch and streamed, the latest per (user, movie)",
                     ("user_id", "movie_id"))
GOLD_MOVIES = Table("gold.movies", "dbt", "movies with genres and rating statistics", ("movie_id",))

# ---- ml: the recommender jobs (ml/) ----------------------------------------------------------

RECOMMENDATIONS = Table(
    "ml.recommendations", "train, stream fold-in", "top-N unseen movies per user from als-ranking@champion",
    ("user_id", "rank"), _fields(
        ("user_id", I, True), ("movie_id", I, True), ("rank", I, True), ("score", D, True),
        ("model_name", S, True), ("model_version", S, True), ("run_id", S, True),
        ("generated_at", TS, True), ("updated_at", TS, True)))
PREDICTIONS = Table("ml.predictions", "train", "the rating champion's test predictions", (), columns=(
    "run_id", "model_name", "protocol", "split", "user_id", "movie_id", "rating", "prediction", "error",
    "cold_start"))
USER_FACTORS = Table("ml.user_factors", "train", "user factors of both champions", ("model_name", "user_id"),
                     columns=("model_name", "model_version", "run_id", "user_id", "bias", "features", "updated_at"))
ITEM_FACTORS = Table("ml.item_factors", "train", "item factors of both champions", ("model_name", "movie_id"),
                     columns=("model_name", "model_version", "run_id", "movie_id", "bias", "features"))
SIMILAR_MOVIES = Table("ml.similar_movies", "train", "the most similar movies of each movie",
                       ("movie_id", "rank"), columns=(
    "movie_id", "similar_movie_id", "rank", "similarity", "model_name", "model_version"))
MODEL_RUNS = Table(
    "ml.model_runs", "train", "one row per MLflow run", ("run_id",), _fields(
        *((c, S, True) for c in ("run_id", "parent_run_id", "experiment", "run_name", "model_type", "protocol", "status")),
        ("is_champion", B, True), ("started_at", TS, True), ("ended_at", TS, True),
        *((c, D, True) for c in ("rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10",
                                 "val_rmse", "val_ndcg_at_10")),
        ("input_rows", L, True), ("input_fingerprint", S, True), ("code_version", S, True),
        ("params", T.MapType(S, S), True), ("metrics", T.MapType(S, D), True)))
USER_SIMILARITY = Table("ml.user_similarity", "similarity", "each user's nearest neighbours",
                        ("user_id", "rank"), columns=(
    "user_id", "neighbour_id", "rank", "similarity", "co_rated", "vectors", "run_id"),
                        user_ids=("user_id", "neighbour_id"))
USER_SIMILARITY_MATRIX = Table("ml.user_similarity_matrix", "similarity", "every pair of the most active users",
                               ("user_id", "other_user_id"), columns=(
    "user_id", "other_user_id", "similarity", "user_position", "other_user_position"))
USER_COMMUNITIES = Table("ml.user_communities", "similarity", "each user's community", ("user_id",), columns=(
    "user_id", "community_id", "community_size", "run_id"))
COMMUNITY_SUMMARY = Table("ml.community_summary", "similarity", "each community's size and top genres",
                          ("community_id",), columns=(
    "community_id", "size", "internal_edges", "top_genres", "modularity", "algorithm", "run_id"))

# ---- governance: erasure (lakehouse/governance) ---------------------------------------------

ERASED_USERS = Table(
    "governance.erased_users", "governance", "salted hashes of erased users; their new ratings are quarantined",
    ("user_hash",), _fields(("user_hash", S, False), ("erased_at", TS, False), ("erasure_id", S, False)))
ERASURE_LOG = Table(
    "governance.erasure_log", "governance", "the audit of every erasure: what was removed where; no personal data",
    ("erasure_id",), _fields(
        ("erasure_id", S, False), ("user_hash", S, False), ("requested_at", TS, False), ("finished_at", TS, False),
        ("rows_removed", L, False), ("lines_removed", L, False),
        ("tables", T.MapType(S, L), False),  # table -> rows removed
        ("files", T.MapType(S, L), False),  # file (relative to the data directory) -> lines or rows removed
        ("purge", S, False),  # how the old files went: REORG ... APPLY (PURGE), VACUUM RETAIN 0 HOURS, and why
        ("retrain", S, False)))  # the MLflow runs tagged for retraining
# ---- governance: retention (lakehouse/retention.py) -------------------------------------------

RETENTION_LOG = Table(
    "governance.retention_log", "housekeeping", "what each housekeeping run removed under the retention policy",
    (), _fields(
        ("run_id", S, False), ("ran_at", TS, False),
        ("item", S, False),  # bronze.quarantine, stream-archive, stream-dead-letter, checkpoints, table versions
        ("policy", S, False),  # e.g. "90 days", and the setting that sets it
        ("cutoff", TS, False),  # what is older than this went
        ("removed", L, False), ("unit", S, False),  # how many rows / files / checkpoints
        ("bytes", L, True)))  # their size on disk, where known
GOVERNANCE = (ERASED_USERS, ERASURE_LOG, RETENTION_LOG)

ML = (RECOMMENDATIONS, PREDICTIONS, USER_FACTORS, ITEM_FACTORS, SIMILAR_MOVIES, MODEL_RUNS, USER_SIMILARITY,
      USER_SIMILARITY_MATRIX, USER_COMMUNITIES, COMMUNITY_SUMMARY)
ALL = (*BRONZE_INGEST, *BRONZE_STREAM, GOLD_RATINGS, GOLD_MOVIES, *ML, *GOVERNANCE)
BY_NAME = {t.name: t for t in ALL}

# ---- load ids: one per committed unit of bronze ----------------------------------------------

STREAM_LOAD_PREFIX = "stream-"


def stream_load_id(stream_id: str, batch_id: int) -> str:
    return f"{STREAM_LOAD_PREFIX}{stream_id}-{batch_id:08d}"


def stream_load_ids(load_ids: set[str]) -> set[str]:
    """The stream's loads among `load_ids` (the batch ingest's never start with the prefix)."""
    return {x for x in load_ids if x.startswith(STREAM_LOAD_PREFIX)}
