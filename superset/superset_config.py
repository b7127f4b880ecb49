"""Superset's configuration for the lakehouse (SUPERSET_CONFIG_PATH points here).

`lakehouse superset up` starts Superset with the environment this file reads: the secret key from
the git-ignored .env, and the folder under the lakehouse data directory that holds the SQLite
metadata. The connection to the lakehouse itself (`sparksql://`, the dialect and engine spec in
superset/plugin) is an imported database, not configuration.
"""
import os

from sqlglot.dialects.dialect import Dialects

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "")
if len(SECRET_KEY) < 32:
    raise RuntimeError("SUPERSET_SECRET_KEY is missing: start Superset with `lakehouse superset up`, which keeps it in .env")

_HOME = os.environ["SUPERSET_HOME"]  # <data dir>/superset
SQLALCHEMY_DATABASE_URI = f"sqlite:///{os.path.join(_HOME, 'superset.db')}"
DATA_DIR = _HOME
UPLOAD_FOLDER = os.path.join(_HOME, "uploads")

# Superset re-renders every query through sqlglot in the engine's dialect: `sparksql://` (the
# plugin's engine) is Spark SQL. Without this, identifiers come out in ANSI double quotes, which
# Spark reads as string literals.
SQLGLOT_DIALECTS_EXTENSIONS = {"sparksql": Dialects.SPARK}

# A Spark query on a cold server can take tens of seconds; gunicorn's timeout is set to match.
SUPERSET_WEBSERVER_TIMEOUT = 180
SQLLAB_TIMEOUT = 180
# SQL Lab polls a running Spark statement every second instead of Hive's default five.
DB_POLL_INTERVAL_SECONDS = {"sparksql": 1}

# No caching of chart data: the Live dashboard must show what the stream wrote seconds ago, and
# the marts are small enough to query at every refresh.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

FEATURE_FLAGS = {
    # Render every chart at once rather than when scrolled into view: the dashboards are small,
    # and the headless-browser check and screenshots see the whole page.
    "DASHBOARD_VIRTUALIZATION": False,
}

# Local only (bound to 127.0.0.1): no Content-Security-Policy warnings at every start-up.
TALISMAN_ENABLED = False
# In-memory rate limiting is fine for one local worker; saying so silences Flask-Limiter's warning.
RATELIMIT_STORAGE_URI = "memory://"
