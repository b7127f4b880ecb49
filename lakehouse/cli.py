"""`lakehouse` command line: thin wrappers that parse flags, call one function, print a table."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from lakehouse import server
from lakehouse.console import console, key_values, table
from lakehouse.settings import Settings, exposure_warning, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    if getattr(args, "master", None):
        settings = dataclasses.replace(settings, master=args.master)
    return settings


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    state, started = server.up(settings, timeout=args.timeout)
    if not started:
        console.print(f"The lakehouse server is already running (pid {state.pid}).")
    print_server(state, settings)
    return 0


def print_server(state: server.ServerState, settings: Settings) -> None:
    console.print(
        key_values(
            "Lakehouse server",
            [
                ("Thrift (dbt, SQL clients)", f"{state.host}:{state.thrift_port}"),
                ("Spark Connect (jobs)", f"sc://{state.host}:{state.connect_port}"),
                ("Spark UI", state.ui_url or "-"),
                ("master", state.master),
                ("Spark / Delta Lake", f"{state.spark_version} / {state.delta_version} (every table a Delta table)"),
                ("data directory", str(settings.home)),
                ("logs", str(settings.logs_dir)),
                ("pid / started", f"{state.pid} / {state.started_at}"),
            ],
        )
    )


def cmd_jars(args: argparse.Namespace) -> int:
    from lakehouse import delta_jars

    for path in delta_jars.resolve(_settings(args), say=console.print):
        console.print(str(path))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from lakehouse import mlflow_ui

    from lakehouse.stream import job

    if job.stop(settings):
        console.print("The stream stopped.")
    from lakehouse import api_service

    if api_service.down(settings):
        console.print("The API stopped.")
    from lakehouse import docs_service

    if docs_service.down(settings):
        console.print("The docs site stopped.")
    if mlflow_ui.down(settings):
        console.print("The MLflow UI stopped.")
    from lakehouse.superset import service as superset

    if superset.down(settings):
        console.print("Superset stopped.")
    if server.down(settings):
        console.print("The lakehouse server stopped.")
    else:
        console.print("The lakehouse server was not running.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lakehouse.session import connect, table_overview

    settings = _settings(args)
    state = server.read_state(settings)
    if state is None:
        console.print(f"The lakehouse server is not running (data directory {settings.home}).")
        return 1
    print_server(state, settings)
    rss = server.server_rss_bytes(settings)
    console.print(f"server memory (RSS, driver + JVM): {rss / 2**30:.2f} GiB")
    from lakehouse import mlflow_ui

    ui = f"{mlflow_ui.url(settings)}" if mlflow_ui.running_pid(settings) else "not running (`make mlflow`)"
    console.print(f"MLflow UI: {ui}; tracking store {settings.tracking_uri}")
    from lakehouse.superset import service as superset

    console.print(superset.status_line(settings, show_password=getattr(args, "show_secrets", False)))
    console.print(api_status_line(settings))
    console.print(docs_status_line(settings))
    from lakehouse.stream import job

    stream = job.read_status(settings)
    console.print(f"Stream: {stream.get('state', 'running')} (pid {stream.get('pid')}), {settings.stream_dir} -> "
                  f"bronze.rating_events; `lakehouse stream --status`" if stream else
                  f"Stream: not running (`lakehouse stream --detach`); landing folder {settings.stream_dir}")
    overview = table_overview(connect(settings))
    console.print(table("Tables (Delta version and last commit)", ["schema", "table", "rows", "version", "last operation", "written by"],
                        overview))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from lakehouse.ingest_command import ingest_with_progress, print_ingest_report
    from lakehouse.session import connect

    settings = _settings(args)
    report = ingest_with_progress(
        connect(settings), settings, args.dataset, args.source, args.replace, args.holdout_fraction
    )
    print_ingest_report(report)
    return 0 if report.ok else 1  # counts that do not add up, or a file with every row quarantined


def cmd_generate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from lakehouse.generate import SyntheticSpec, generate

    spec = SyntheticSpec(
        layout=args.layout, ratings=args.ratings, users=args.users, movies=args.movies, seed=args.seed
    )
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"generate {args.layout} ({args.ratings:,} ratings)", total=args.ratings)
        result = generate(spec, args.out, progress=lambda done, total: bar.update(task, completed=done))
    console.print(
        table(
            f"Synthetic {args.layout} data in {result.out_dir} "
            f"({result.users:,} users, {result.movies:,} movies, seed {args.seed})",
            ["file", "rows"],
            [(str(f.path.name), f.rows) for f in result.files],
        )
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lakehouse.pipeline import run_pipeline

    return run_pipeline(_settings(args), args.dataset, args.source)


def _job_session(args: argparse.Namespace):
    """The lakehouse server's Spark Connect session, or any endpoint given with --remote."""
    from lakehouse.session import connect, connect_remote

    settings = _settings(args)
    return (connect_remote(args.remote) if args.remote else connect(settings)), settings


def cmd_train(args: argparse.Namespace) -> int:
    from ml.train import print_outcome, run_training

    spark, settings = _job_session(args)
    print_outcome(run_training(spark, settings, args))
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from ml.similarity_job import print_outcome, run_similarity

    spark, settings = _job_session(args)
    print_outcome(run_similarity(spark, settings, args))
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from lakehouse.stream import job

    settings = _settings(args)
    fold_in = not args.no_fold_in
    if args.stop:
        console.print("The stream stopped." if job.stop(settings) else "The stream was not running.")
        return 0
    if args.status:
        return print_stream_status(settings)
    if args.detach:
        pid = job.detach(settings, fold_in=fold_in)
        console.print(f"The stream runs in the background (pid {pid}); log {settings.stream_log}; "
                      "`lakehouse stream --stop` stops it.")
        return 0
    # The stream commits ratings; what follows a commit is wired here: the fold-in of ml/refresh.py.
    from ml.refresh import FoldIn

    return job.run_foreground(settings, on_committed=FoldIn() if fold_in else None, duration=args.duration)


def print_stream_status(settings: Settings) -> int:
    from lakehouse.stream import job

    status = job.read_status(settings)
    if status is None:
        console.print(f"The stream is not running (landing folder {settings.stream_dir}).")
        return 1
    rows = [(k, str(status.get(k))) for k in ("state", "pid", "landing", "trigger_seconds", "batches", "rows_accepted",
                                              "rows_quarantined", "users_refreshed", "last_batch", "last_latency_max",
                                              "files_taken", "files_waiting", "files_dead_lettered", "restarts",
                                              "last_error")]
    console.print(key_values("Stream", rows))
    return 0


def cmd_land(args: argparse.Namespace) -> int:
    from lakehouse.stream import landing

    settings = _settings(args)
    landed = landing.land(settings, args.files)
    console.print(table(f"Landed for the stream ({settings.stream_inbox_dir})", ["file", "landed as", "bytes"],
                        [(str(given), path.name, path.stat().st_size) for given, path in landed]))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from lakehouse.stream.replay import run_from_arguments

    return run_from_arguments(_settings(args), args)


def cmd_housekeeping(args: argparse.Namespace) -> int:
    from lakehouse import housekeeping
    from lakehouse.session import connect

    settings = _settings(args)
    housekeeping.print_report(housekeeping.run(connect(settings), settings, dry_run=args.dry_run))
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from lakehouse.quarantine_report import parse_since, print_report, quarantine_report
    from lakehouse.session import connect

    since = parse_since(args.since) if args.since else None
    print_report(quarantine_report(connect(_settings(args)), source_file=args.file, since=since, load_id=args.load,
                                   samples=args.samples, limit=args.limit))
    return 0


def cmd_forget_user(args: argparse.Namespace) -> int:
    from lakehouse.governance.erasure import forget_user
    from lakehouse.session import connect

    settings = _settings(args)
    erasure = forget_user(connect(settings), settings, args.user_id, log=console.print)
    if erasure.noop:
        console.print(f"User {args.user_id} was erased on {erasure.already_erased_at:%Y-%m-%d %H:%M:%S} UTC and "
                      "nothing of theirs is held: nothing to do.")
        return 0
    console.print(table(f"Erased user {args.user_id} (audit: governance.erasure_log {erasure.erasure_id})",
                        ["where", "rows or lines removed"],
                        [*sorted(erasure.tables.items()), *sorted(erasure.files.items())]))
    console.print(f"{erasure.rows_removed:,} rows from {len(erasure.tables)} tables, {erasure.lines_removed:,} records "
                  f"from {len(erasure.files)} files; {len(erasure.purged)} tables purged of old files; "
                  f"{len(erasure.retrain)} MLflow runs tagged for retraining; {erasure.seconds:.1f}s")
    return 0


def cmd_mlflow(args: argparse.Namespace) -> int:
    from lakehouse import mlflow_ui

    settings = _settings(args)
    if args.action == "down":
        console.print("The MLflow UI stopped." if mlflow_ui.down(settings) else "The MLflow UI was not running.")
        return 0
    started = mlflow_ui.up(settings)
    console.print(
        f"MLflow UI {'started' if started else 'already running'}: {mlflow_ui.url(settings)} "
        f"(store {settings.tracking_uri}, log {mlflow_ui.service(settings).log_file})"
    )
    return 0


def api_status_line(settings: Settings) -> str:
    from lakehouse import api_service

    if api_service.service(settings).running_pid() is None:
        return "API: not running (`lakehouse api up`)"
    ready = api_service.readiness(settings) or {}
    if not ready.get("ready"):
        return f"API: {api_service.url(settings)} starting or not ready ({ready.get('detail', 'no answer')})"
    return (f"API: {api_service.url(settings)} (docs {api_service.url(settings)}/docs), serving model "
            f"{ready.get('model_name')} v{ready.get('model_version')}, data of {ready.get('updated_at')}")


def cmd_api(args: argparse.Namespace) -> int:
    from lakehouse import api_service

    settings = _settings(args)
    if args.action == "down":
        console.print("The API stopped." if api_service.down(settings) else "The API was not running.")
        return 0
    if args.action == "status":
        line = api_status_line(settings)
        console.print(line)
        return 0 if "not running" not in line else 1
    started = api_service.up(settings)
    console.print(f"API {'started' if started else 'already running'}: {api_service.url(settings)} "
                  f"({settings.api_workers} workers, docs {api_service.url(settings)}/docs, "
                  f"log {api_service.service(settings).log_file})")
    console.print(api_status_line(settings))  # ready, or what it waits for
    return 0


def docs_status_line(settings: Settings) -> str:
    from lakehouse import docs_service

    if docs_service.running_pid(settings) is None:
        return "Docs: not running (`make docs`)"
    return f"Docs: {docs_service.url(settings)} (the data catalog; log {docs_service.service(settings).log_file})"


def cmd_docs(args: argparse.Namespace) -> int:
    from lakehouse import docs_service

    settings = _settings(args)
    if args.action == "down":
        console.print("The docs site stopped." if docs_service.down(settings) else "The docs site was not running.")
        return 0
    if args.action == "status":
        line = docs_status_line(settings)
        console.print(line)
        return 0 if "not running" not in line else 1
    started, generated = docs_service.up(settings)
    origin = ("column types from the server" if generated.with_server
              else "from the project alone: the server is not running, so no column types")
    console.print(f"Docs site {'started' if started else 'already running, regenerated'}: {docs_service.url(settings)} "
                  f"({origin}; log {docs_service.service(settings).log_file})")
    console.print(f"Data catalog: {generated.summary}")
    if generated.gaps:  # the site is served anyway: a gap is for the author to fill, not a reason to refuse
        console.print(f"[yellow]warning:[/] {len(generated.gaps)} gaps in the data catalog (README, Data catalog):")
        for gap in generated.gaps:
            console.print(f"  {gap}")
    return 0


def cmd_superset(args: argparse.Namespace) -> int:
    from lakehouse.superset import cli as superset_cli

    return superset_cli.run(_settings(args), args)


def _source_path(value: str) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    from lakehouse.datasets import DATASETS

    parser.add_argument("--dataset", choices=list(DATASETS), default="ml-100k")
    parser.add_argument(
        "--source", type=_source_path, default=_source_path(os.environ.get("MOVIELENS_SOURCE", "")),
        help="a dataset folder or zip (default: $MOVIELENS_SOURCE, else the official zip is downloaded)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description="MovieLens recommendation lakehouse. Settings come from LAKEHOUSE_* "
        "environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the lakehouse server (Thrift + Spark Connect)")
    up.add_argument("--master", help="Spark master URL (default local[*], or LAKEHOUSE_MASTER)")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for both ports")
    up.set_defaults(func=cmd_up)

    jars = sub.add_parser(
        "jars",
        help="fetch the pinned Delta Lake jars into the cache (what `up` does first) and print their paths",
        description="Fetches io.delta:delta-spark_4.1_2.13 and io.delta:delta-storage 4.1.0 with Maven into "
        "LAKEHOUSE_JAR_CACHE (default <data dir>/cache/jars), checks their SHA-256 against the pins, and "
        "prints where they are: run it once while online, then later starts work offline.",
    )
    jars.set_defaults(func=cmd_jars)

    down = sub.add_parser("down", help="stop the lakehouse server and its child processes")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="ports, master, and every table's row count, Delta version and last commit")
    status.add_argument("--show-secrets", action="store_true", help="print Superset's admin password too")
    status.set_defaults(func=cmd_status)

    ingest = sub.add_parser(
        "ingest",
        help="load a MovieLens dataset into bronze (bad rows go to bronze.quarantine)",
        description="Load a MovieLens dataset into bronze.ratings / movies / users. Files already "
        "loaded unchanged are skipped; rows that fail validation go to bronze.quarantine with the "
        "raw line and the reason. Without --source the official GroupLens zip is downloaded "
        "(checksum verified, cached under $LAKEHOUSE_HOME/cache).",
    )
    _add_dataset_arguments(ingest)
    ingest.add_argument(
        "--replace", action="store_true", help="drop the bronze tables first (e.g. to switch dataset)"
    )
    ingest.add_argument(
        "--holdout-fraction", type=float, default=0.0, metavar="F",
        help="keep the latest F of the ratings (by time) out of bronze, in "
        "$LAKEHOUSE_HOME/holdout/<dataset>/ratings.csv for `lakehouse replay` (default 0: off)",
    )
    ingest.set_defaults(func=cmd_ingest)

    gen = sub.add_parser(
        "generate",
        help="write deterministic synthetic MovieLens-shaped files",
        description="Write synthetic users, movies and ratings in the ml-100k (u.data, u.item, "
        "u.user) or the ml-latest (ratings.csv, movies.csv) layout; deterministic per seed; "
        "streams to disk, so 25M+ ratings fit in little memory.",
    )
    gen.add_argument("--layout", choices=["ml-100k", "ml-latest"], default="ml-100k")
    gen.add_argument("--ratings", type=int, default=100_000, help="number of ratings (exact)")
    gen.add_argument("--users", type=int, default=None, help="number of users (default: derived)")
    gen.add_argument("--movies", type=int, default=None, help="number of movies (default: derived)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.set_defaults(func=cmd_generate)

    from ml.train import add_arguments as add_train_arguments

    train = sub.add_parser(
        "train",
        help="sweep, evaluate and register the ALS recommenders (MLflow); write the ml tables",
        description="Rating prediction (baseline, ALS, ALS on baseline residuals, item neighbourhood, "
        "blend) and top-N ranking (implicit ALS vs popularity), each a hyperparameter sweep tracked "
        "in MLflow as a parent run with one child run per configuration. Hyperparameters are chosen on "
        "a validation set carved out of the training data; the champions are registered (als-rating, "
        "als-ranking) with the alias @champion and write ml.recommendations, ml.predictions, "
        "ml.user_factors, ml.item_factors, ml.similar_movies and ml.model_runs.",
    )
    add_train_arguments(train)
    train.add_argument("--remote", help="any Spark Connect URL (default: the lakehouse server)")
    train.set_defaults(func=cmd_train)

    from ml.similarity_job import add_arguments as add_similarity_arguments

    similarity = sub.add_parser(
        "similarity",
        help="user-similarity kNN graph, heatmap matrix and communities into the ml schema (MLflow)",
    )
    add_similarity_arguments(similarity)
    similarity.add_argument("--remote", help="any Spark Connect URL (default: the lakehouse server)")
    similarity.set_defaults(func=cmd_similarity)

    from lakehouse.stream.replay import add_arguments as add_replay_arguments

    replay = sub.add_parser(
        "replay",
        help="stream simulator: land rating files in the stream folder (LAKEHOUSE_STREAM_DIR)",
        description="Write rating files into the streaming landing folder at a steady rate, each "
        "file atomically (a dot-name, then renamed; its mtime is the landing time). Replays the "
        "ratings `ingest --holdout-fraction` kept out of bronze, in time order, or random ones.",
    )
    add_replay_arguments(replay)
    replay.set_defaults(func=cmd_replay)

    land = sub.add_parser(
        "land",
        help="hand rating files to the stream, safely (checked, copied whole, a unique name)",
        description="Checks each file (readable text, no line over 1 MiB, no NUL byte), then copies it into "
        "the stream's inbox atomically under a name unique in the stream, with the current time as its "
        "landing time: a name used before is read again, as new data. Nothing is landed if a file is "
        "refused. Files written into the landing folder (LAKEHOUSE_STREAM_DIR) by other means are taken "
        "by the running stream once no process writes them and they are unchanged for "
        "LAKEHOUSE_STREAM_SETTLE_SECONDS.",
    )
    land.add_argument("files", nargs="+", type=Path, metavar="FILE")
    land.set_defaults(func=cmd_land)

    stream = sub.add_parser(
        "stream",
        help="the streaming job: landing folder -> bronze.rating_events, recommendations folded in",
        description="Run the Structured Streaming query on the lakehouse server: new rating files "
        "in LAKEHOUSE_STREAM_DIR (CSV with or without header, or JSON lines) are appended to "
        "bronze.rating_events exactly once, bad lines go to bronze.quarantine, and the affected "
        "users' recommendations are refreshed. Foreground with a status line unless --detach.",
    )
    action = stream.add_mutually_exclusive_group()
    action.add_argument("--detach", action="store_true", help="run in the background (log: <data dir>/logs/stream.log)")
    action.add_argument("--stop", action="store_true", help="stop the detached stream")
    action.add_argument("--status", action="store_true", help="is it running, and what has it committed")
    stream.add_argument("--no-fold-in", action="store_true", help="append to bronze only; leave recommendations alone")
    stream.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (foreground)")
    stream.set_defaults(func=cmd_stream)

    housekeeping = sub.add_parser(
        "housekeeping",
        help="OPTIMIZE the stream's tables, apply the retention policy, VACUUM every table",
        description="Compacts the small files the stream's micro-batches leave (one per batch) in "
        "bronze.rating_events, stream_batches, stream_files, quarantine and ml.recommendations with "
        "Delta's OPTIMIZE; deletes what is past its retention: processed landing files "
        "(LAKEHOUSE_RETAIN_ARCHIVE_DAYS, 30), dead letters (LAKEHOUSE_RETAIN_DEAD_LETTER_DAYS, 30), "
        "bronze.quarantine rows (LAKEHOUSE_RETAIN_QUARANTINE_DAYS, 90), stale checkpoints "
        "(LAKEHOUSE_RETAIN_CHECKPOINT_DAYS, 7); then VACUUMs every table, keeping the files of the "
        "versions of the last LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS (168: time travel reaches a week "
        "back). Prints what it removed and records it in governance.retention_log.",
    )
    housekeeping.add_argument("--dry-run", action="store_true",
                              help="say what would be removed; remove, compact and record nothing")
    housekeeping.set_defaults(func=cmd_housekeeping)

    quarantine = sub.add_parser(
        "quarantine",
        help="why lines were rejected: counts per file and reason in bronze.quarantine, with sample lines",
        description="Groups the committed lines of bronze.quarantine (batch ingest and stream) by file and by kind "
        "of reason (numbers shown as N, so 'expected 4 fields, got 3' and '... got 5' are one kind), the largest "
        "first, with each group's line numbers, loads and a few sample raw lines with their exact reasons.",
    )
    quarantine.add_argument("--file", metavar="NAME", help="only this source file (shell patterns: 'ratings-*.csv')")
    quarantine.add_argument("--since", metavar="WHEN",
                            help="only lines quarantined since WHEN: a duration (30m, 2h, 7d) or an ISO time (UTC)")
    quarantine.add_argument("--load", metavar="LOAD_ID",
                            help="only this load (an ingest's load_id or a micro-batch's stream-<id>-<batch>; patterns)")
    quarantine.add_argument("--samples", type=int, default=3, metavar="N", help="sample lines per group (default 3)")
    quarantine.add_argument("--limit", type=int, default=30, metavar="N", help="groups shown, the largest first (default 30)")
    quarantine.set_defaults(func=cmd_quarantine)

    forget = sub.add_parser(
        "forget-user",
        help="erase a user from every table and file (GDPR right to erasure), with an audit row",
        description="Deletes the user's rows from every bronze, silver, gold and ml table (and the quarantined "
        "lines that are their records), rebuilds the gold marts, purges the old files physically (REORG "
        "... APPLY (PURGE), VACUUM RETAIN 0 HOURS: time travel to before the erasure ends), rewrites the landing, "
        "inbox, archive, holdout and MLflow artifact files without them, tags the MLflow runs for retraining and "
        "writes governance.erasure_log. New ratings of the user are quarantined as \"erased user\". A second "
        "erasure is a no-op.",
    )
    forget.add_argument("user_id", type=int, help="the MovieLens user id")
    forget.set_defaults(func=cmd_forget_user)

    api = sub.add_parser("api", help="serve the REST API on 127.0.0.1:8000 (LAKEHOUSE_API_PORT)",
                         description="Recommendations, movie search and new ratings over HTTP, read from the "
                         "Delta tables (no Spark on the request path); OpenAPI docs at /docs.")
    api.add_argument("action", choices=("up", "down", "status"))
    api.set_defaults(func=cmd_api)

    docs = sub.add_parser("docs", help="the data catalog: dbt docs on 127.0.0.1:8085 (LAKEHOUSE_DOCS_PORT)",
                          description="`up` runs `dbt docs generate` (column types from the server when it runs, "
                          "else from the project alone) and serves the site in the background: every source, model, "
                          "seed and exposure with its description, owner, personal-data class (direct, quasi, none) "
                          "and lineage from the MovieLens files to the dashboards and the API. It lists any node or "
                          "column that lacks one.")
    docs.add_argument("action", choices=("up", "down", "status"))
    docs.set_defaults(func=cmd_docs)

    mlflow = sub.add_parser("mlflow", help="serve the MLflow UI on 127.0.0.1:5000 (LAKEHOUSE_MLFLOW_PORT)")
    mlflow.add_argument("action", choices=("up", "down"))
    mlflow.set_defaults(func=cmd_mlflow)

    from lakehouse.superset.cli import add_arguments as add_superset_arguments

    superset = sub.add_parser(
        "superset",
        help="Superset on 127.0.0.1:8088 (LAKEHOUSE_SUPERSET_PORT): up, down, import the dashboards, check them",
        description="Superset, in its own virtualenv (.venv-superset, installed on first use), with its metadata "
        "under the data directory and its secrets in .env. `up` starts it and imports the dashboards of "
        "superset/dashboards.yml; `import` re-imports them (idempotent: objects are matched by uuid); "
        "`check` opens every dashboard in headless Chromium and saves a screenshot of each.",
    )
    add_superset_arguments(superset)
    superset.set_defaults(func=cmd_superset)

    run = sub.add_parser(
        "run",
        help="the whole pipeline: up -> ingest -> dbt build -> summary (what `make run` does)",
    )
    _add_dataset_arguments(run)
    run.add_argument("--master", help="Spark master URL for a server this command starts")
    run.set_defaults(func=cmd_run)
    return parser


# The commands that start a server bound to LAKEHOUSE_HOST.
SERVING_COMMANDS = ("up", "run", "api", "mlflow", "superset", "docs")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in SERVING_COMMANDS and (warning := exposure_warning(_settings(args))):
        console.print(f"[yellow]warning:[/] {warning}")
    code = 1  # an exception that is not caught below
    try:
        code = args.func(args)
        return code
    except (server.ServerError, RuntimeError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {error}")
        code = 2
        return code
    finally:
        if "pyspark" in sys.modules:  # a command that opened Spark Connect sessions
            _release_spark(code, as_program=argv is None)


def _release_spark(code: int, *, as_program: bool) -> None:
    """Every command returns: the models and sessions it holds on the server are released here,
    with a deadline (lakehouse/session.py: close_all), so no finalizer is left to call the server
    at interpreter exit. Should the server not answer by the deadline, what is left behind can
    still block the exit: pyspark's pool of ReleaseExecute calls, which the interpreter joins at
    exit, and the gRPC calls on the release thread. Only then, and only when `lakehouse` runs as a
    program (never for a caller of main() in its own process), the process ends with os._exit
    after flushing its output: the command's work is done and committed (every table write is a
    Delta commit, every MLflow run ended), and only the goodbyes to an unresponsive server are
    skipped."""
    from lakehouse.session import CLOSE_TIMEOUT_SECONDS, close_all

    if close_all() or not as_program:
        return
    import traceback

    if sys.exc_info()[0] is not None:  # an exception on its way out: show it before leaving
        traceback.print_exc()
        code = code or 1
    console.print(f"[yellow]warning:[/] the Spark Connect server did not answer the release of this command's "
                  f"models and sessions within {CLOSE_TIMEOUT_SECONDS:.0f}s; exiting without waiting for it.")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    sys.exit(main())
