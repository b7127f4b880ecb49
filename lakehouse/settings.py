"""Every setting of the lakehouse, read from the environment in one place.

Settings are environment variables so the same values reach the CLI, the server process, dbt
(`profiles.yml` reads them with `env_var`) and the tests (which point everything at free ports and
a temporary data directory).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def _float_env(name: str, default: float, *, zero: bool = False) -> float:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise SystemExit(f"{name}={raw!r} must be {'zero or more' if zero else 'positive'}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where the lakehouse lives and how to reach it."""

    home: Path
    host: str = "127.0.0.1"
    thrift_port: int = 10000
    connect_port: int = 15002
    master: str = "local[*]"
    driver_memory: str = "6g"
    # Delta Lake's jars: a folder of the user's (offline), else resolved once into jar_cache.
    delta_jars: Path | None = None
    jar_cache: Path | None = None  # None: <home>/cache/jars
    # MLflow: a tracking URI wins (any MLflow server); otherwise SQLite + files under mlflow_dir.
    mlflow_dir: Path = Path("mlflow")
    mlflow_tracking_uri: str = ""
    mlflow_port: int = 5000  # the MLflow UI (`lakehouse mlflow up`)
    # The streaming landing folder: `lakehouse replay` writes rating files here, the stream reads them.
    stream_dir: Path = Path("stream/ratings")
    stream_trigger_seconds: float = 5.0  # the stream's micro-batch interval
    stream_max_files_per_trigger: int = 100
    # A file written in place in the landing folder is taken once unchanged (and closed) this long.
    stream_settle_seconds: float = 1.0
    # Superset (`lakehouse superset up`): its port, and the git-ignored file holding its secrets.
    superset_port: int = 8088
    superset_env_file: Path = Path(".env")
    # The REST API (`lakehouse api up`): its port, uvicorn workers, and how often it polls the
    # served tables' Delta versions.
    api_port: int = 8000
    api_workers: int = 2
    api_refresh_seconds: float = 1.0
    docs_port: int = 8085  # the data catalog's site (`lakehouse docs up`)
    # Retention (`lakehouse housekeeping`): how long each kind of kept data lives (README, Retention).
    retain_archive_days: float = 30.0  # processed landing files, stream-archive/
    retain_dead_letter_days: float = 30.0  # unreadable landed files, stream-dead-letter/
    retain_quarantine_days: float = 90.0  # rows of bronze.quarantine (the ledgers keep their counts)
    retain_checkpoint_days: float = 7.0  # checkpoints (and empty inboxes) of streams no longer run
    retain_table_versions_hours: float = 168.0  # VACUUM RETAIN: time travel reaches this far back
    extra_conf: dict[str, str] = field(default_factory=dict)

    # Layout of the data directory: one place so every module agrees.
    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def metastore_dir(self) -> Path:
        return self.home / "metastore_db"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def checkpoint_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def jar_cache_dir(self) -> Path:
        """Where `lakehouse up` keeps the JVM jars it resolved (Delta Lake's), reused offline."""
        return self.jar_cache or self.cache_dir / "jars"

    @property
    def locks_dir(self) -> Path:
        """Lock files of the operations that must not run twice at once (ingest, up)."""
        return self.run_dir / "locks"

    @property
    def holdout_dir(self) -> Path:
        """Ratings kept out of bronze by `ingest --holdout-fraction`, one folder per dataset."""
        return self.home / "holdout"

    @property
    def _stream_key(self) -> str:
        return hashlib.sha1(str(self.stream_dir).encode()).hexdigest()[:10]

    @property
    def stream_checkpoint(self) -> Path:
        """One checkpoint per landing folder: Spark's file source records the paths it has read, and
        a checkpoint made on another folder fails the query ("Wrong basePath"). (`inbox-`: the
        query reads the inbox since the landing contract; a checkpoint from before is not reused.)"""
        return self.checkpoint_dir / f"rating-events-inbox-{self._stream_key}"

    @property
    def stream_inbox_dir(self) -> Path:
        """What the query reads: files the landing gate (or `lakehouse land`) put there whole, under
        names unique in the stream (lakehouse/stream/landing.py)."""
        return self.home / "stream-inbox" / self._stream_key

    @property
    def stream_names_record(self) -> Path:
        """Every name given to a file in this stream's inbox, so a reused name is read again."""
        return self.stream_checkpoint / "lakehouse-inbox-names"

    @property
    def stream_dead_letter_dir(self) -> Path:
        """Files the stream could not read at all (not text, a giant line, unreadable)."""
        return self.home / "stream-dead-letter"

    @property
    def stream_archive_dir(self) -> Path:
        """Landed files go here once processed, so the landing folder does not grow."""
        return self.home / "stream-archive"

    @property
    def stream_log(self) -> Path:
        return self.logs_dir / "stream.log"

    @property
    def docs_dir(self) -> Path:
        """dbt's docs site (`lakehouse docs up`), apart from the project's target/ that builds rewrite."""
        return self.home / "docs"

    @property
    def superset_dir(self) -> Path:
        """Superset's SQLite metadata, the generated import bundle and its uploads."""
        return self.home / "superset"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def state_file(self) -> Path:
        """JSON written by the running server: pid, ports, master, Spark and Delta versions."""
        return self.run_dir / "server.json"

    @property
    def tracking_uri(self) -> str:
        """Where MLflow runs go: LAKEHOUSE_MLFLOW_TRACKING_URI, else the local SQLite store."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def connect_url(self) -> str:
        return f"sc://{self.host}:{self.connect_port}"

    def as_env(self) -> dict[str, str]:
        """The environment that makes `load_settings()` in a child process return these settings."""
        env = {
            "LAKEHOUSE_HOME": str(self.home),
            "LAKEHOUSE_HOST": self.host,
            "LAKEHOUSE_THRIFT_PORT": str(self.thrift_port),
            "LAKEHOUSE_CONNECT_PORT": str(self.connect_port),
            "LAKEHOUSE_MASTER": self.master,
            "LAKEHOUSE_DRIVER_MEMORY": self.driver_memory,
            "LAKEHOUSE_MLFLOW_DIR": str(self.mlflow_dir),
            "LAKEHOUSE_MLFLOW_PORT": str(self.mlflow_port),
            "LAKEHOUSE_STREAM_DIR": str(self.stream_dir),
            "LAKEHOUSE_STREAM_TRIGGER_SECONDS": f"{self.stream_trigger_seconds:g}",
            "LAKEHOUSE_STREAM_MAX_FILES": str(self.stream_max_files_per_trigger),
            "LAKEHOUSE_STREAM_SETTLE_SECONDS": f"{self.stream_settle_seconds:g}",
            "LAKEHOUSE_SUPERSET_PORT": str(self.superset_port),
            "LAKEHOUSE_SUPERSET_ENV": str(self.superset_env_file),
            "LAKEHOUSE_API_PORT": str(self.api_port),
            "LAKEHOUSE_API_WORKERS": str(self.api_workers),
            "LAKEHOUSE_API_REFRESH_SECONDS": f"{self.api_refresh_seconds:g}",
            "LAKEHOUSE_DOCS_PORT": str(self.docs_port),
            "LAKEHOUSE_RETAIN_ARCHIVE_DAYS": f"{self.retain_archive_days:g}",
            "LAKEHOUSE_RETAIN_DEAD_LETTER_DAYS": f"{self.retain_dead_letter_days:g}",
            "LAKEHOUSE_RETAIN_QUARANTINE_DAYS": f"{self.retain_quarantine_days:g}",
            "LAKEHOUSE_RETAIN_CHECKPOINT_DAYS": f"{self.retain_checkpoint_days:g}",
            "LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS": f"{self.retain_table_versions_hours:g}",
        }
        if self.mlflow_tracking_uri:
            env["LAKEHOUSE_MLFLOW_TRACKING_URI"] = self.mlflow_tracking_uri
        if self.delta_jars:
            env["LAKEHOUSE_DELTA_JARS"] = str(self.delta_jars)
        if self.jar_cache:
            env["LAKEHOUSE_JAR_CACHE"] = str(self.jar_cache)
        return env


def load_settings() -> Settings:
    """Read the settings from the environment (see the README's settings table)."""
    home = Path(os.environ.get("LAKEHOUSE_HOME", ".lakehouse")).expanduser().resolve()
    if os.environ.get("LAKEHOUSE_TABLE_FORMAT", "").strip().lower() not in ("", "delta"):
        raise SystemExit(
            "LAKEHOUSE_TABLE_FORMAT is retired: every table is a Delta table (see the README's "
            "'Delta Lake' section). Unset it."
        )
    jars = os.environ.get("LAKEHOUSE_DELTA_JARS", "").strip()
    jar_cache = os.environ.get("LAKEHOUSE_JAR_CACHE", "").strip()
    return Settings(
        home=home,
        host=os.environ.get("LAKEHOUSE_HOST", "127.0.0.1"),
        thrift_port=_int_env("LAKEHOUSE_THRIFT_PORT", 10000),
        connect_port=_int_env("LAKEHOUSE_CONNECT_PORT", 15002),
        master=os.environ.get("LAKEHOUSE_MASTER", "local[*]"),
        driver_memory=os.environ.get("LAKEHOUSE_DRIVER_MEMORY", "6g"),
        delta_jars=Path(jars).expanduser().resolve() if jars else None,
        jar_cache=Path(jar_cache).expanduser().resolve() if jar_cache else None,
        mlflow_dir=Path(os.environ.get("LAKEHOUSE_MLFLOW_DIR", "mlflow")).expanduser().resolve(),
        mlflow_tracking_uri=os.environ.get("LAKEHOUSE_MLFLOW_TRACKING_URI", "").strip(),
        mlflow_port=_int_env("LAKEHOUSE_MLFLOW_PORT", 5000),
        stream_dir=Path(os.environ.get("LAKEHOUSE_STREAM_DIR", "stream/ratings")).expanduser().resolve(),
        stream_trigger_seconds=_float_env("LAKEHOUSE_STREAM_TRIGGER_SECONDS", 5.0),
        stream_max_files_per_trigger=_int_env("LAKEHOUSE_STREAM_MAX_FILES", 100),
        stream_settle_seconds=_float_env("LAKEHOUSE_STREAM_SETTLE_SECONDS", 1.0),
        superset_port=_int_env("LAKEHOUSE_SUPERSET_PORT", 8088),
        superset_env_file=Path(os.environ.get("LAKEHOUSE_SUPERSET_ENV", ".env")).expanduser().resolve(),
        api_port=_int_env("LAKEHOUSE_API_PORT", 8000),
        # One worker per core (each holds its own snapshot), at most 4.
        api_workers=_int_env("LAKEHOUSE_API_WORKERS", min(os.cpu_count() or 1, 4)),
        api_refresh_seconds=_float_env("LAKEHOUSE_API_REFRESH_SECONDS", 1.0),
        docs_port=_int_env("LAKEHOUSE_DOCS_PORT", 8085),
        retain_archive_days=_float_env("LAKEHOUSE_RETAIN_ARCHIVE_DAYS", 30.0, zero=True),
        retain_dead_letter_days=_float_env("LAKEHOUSE_RETAIN_DEAD_LETTER_DAYS", 30.0, zero=True),
        retain_quarantine_days=_float_env("LAKEHOUSE_RETAIN_QUARANTINE_DAYS", 90.0, zero=True),
        retain_checkpoint_days=_float_env("LAKEHOUSE_RETAIN_CHECKPOINT_DAYS", 7.0, zero=True),
        retain_table_versions_hours=_float_env("LAKEHOUSE_RETAIN_TABLE_VERSIONS_HOURS", 168.0, zero=True),
    )


def exposure_warning(settings: Settings) -> str | None:
    """What listens beyond this machine when LAKEHOUSE_HOST is not a loopback address (every
    server binds to it); None on loopback, the default."""
    import ipaddress

    host = settings.host.strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback:
        return None
    return (f"LAKEHOUSE_HOST={settings.host}: the servers listen beyond this machine. Exposed with NO "
            f"authentication: Spark Thrift (:{settings.thrift_port}) and Spark Connect (:{settings.connect_port}), "
            "through which anyone who reaches them reads, changes and deletes every table; the MLflow UI "
            f"(:{settings.mlflow_port}) and the dbt docs (:{settings.docs_port}). The REST API (:{settings.api_port}) "
            "serves recommendations and accepts ratings from anyone (its admin endpoints need the token); "
            f"Superset (:{settings.superset_port}) asks for a login. Put them behind a firewall or a proxy "
            "with authentication, or unset LAKEHOUSE_HOST.")
