"""The lakehouse server: one Spark driver serving HiveServer2 Thrift and Spark Connect.

Started by `lakehouse up` (lakehouse/server.py) as `python -m lakehouse.server_process`, in its own
process group so `lakehouse down` stops it and its JVM together. One driver owns the embedded Derby
metastore (Derby admits a single JVM); every client reaches the catalog through this process.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone

from lakehouse import delta_jars
from lakehouse.settings import Settings, load_settings


# On one machine (a local master) Spark's cluster-sized defaults are pure fixed cost for tables of
# megabytes: Delta rebuilds a snapshot from its log with 50 tasks, VACUUM lists files with 10,000
# tasks (the partition-discovery parallelism), and every shuffle writes 200 partitions. Measured on
# the 2-core machine: `vacuum ... dry run` of a one-row table 204 s -> 4.5 s, the synthetic ingest
# 242 s -> 62 s. They change how many tasks run, never what a query returns.
SINGLE_MACHINE_CONF = {
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
    "spark.sql.shuffle.partitions": "8",
}


HIVE_FOLDERS = {
    "hive.server2.logging.operation.log.location": "operation_logs",
    "hive.exec.local.scratchdir": "scratch",
    "hive.exec.scratchdir": "scratch-dfs",
    # One folder per session, as Hive's default: a closing session deletes its own.
    "hive.downloaded.resources.dir": "resources/${hive.session.id}_resources",
}


def spark_conf(settings: Settings, jars: list) -> dict[str, str]:
    """The driver's whole Spark conf: catalog, endpoints, and Delta Lake on the start-up class path."""
    # Derby writes derby.log into the working directory unless told otherwise. The parallel
    # collector rather than G1: the driver's heap is a few GiB on a machine of a few cores, where
    # G1's concurrent work and write barriers take cycles from the queries (measured on the 2-core
    # machine: a fresh server's ingest, dbt build twice and both quick trainings on synthetic
    # data took 395 and 410 s with G1, 350 and 361 s with it); its pauses are short at this heap.
    java_opts = (
        "-XX:+UseParallelGC "
        f"-Dderby.system.home={settings.home} "
        f"-Dderby.stream.error.file={settings.logs_dir / 'derby.log'}"
    )
    return {
        "spark.master": settings.master,
        "spark.app.name": "lakehouse",
        "spark.driver.memory": settings.driver_memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": java_opts,
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(settings.warehouse_dir),
        "spark.sql.session.timeZone": "UTC",
        # Hive settings given as Spark conf need the spark.hadoop. prefix.
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={settings.metastore_dir};create=true"
        ),
        "spark.hadoop.hive.server2.thrift.port": str(settings.thrift_port),
        "spark.hadoop.hive.server2.thrift.bind.host": settings.host,
        # Hive's working folders default to /tmp/<user>/... and /tmp/<session>_resources, shared by
        # every server of the user on the machine (and left behind): a server that stops deletes
        # the operation-log root, and every other server's open Thrift sessions then log an
        # IOException per statement. Each server keeps its own, under its data directory.
        **{f"spark.hadoop.{key}": str(settings.run_dir / "hive" / folder) for key, folder in HIVE_FOLDERS.items()},
        # Run each Thrift statement inside its ExecuteStatement call: clients that poll for
        # completion (dbt-spark sleeps poll_interval seconds per poll) then find it finished.
        "spark.sql.hive.thriftServer.async": "false",
        "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
        "spark.connect.grpc.binding.port": str(settings.connect_port),
        "spark.connect.grpc.binding.address": settings.host,
        # Each session caches a table's file listing; when another session (dbt over Thrift)
        # rewrites the table, a stale listing points at deleted files. Expire it quickly.
        "spark.sql.metadataCacheTTLSeconds": "5",
        # ALS with many iterations overflows the stack without checkpoints.
        "spark.checkpoint.dir": str(settings.checkpoint_dir),
        "spark.ui.showConsoleProgress": "false",
        **(SINGLE_MACHINE_CONF if settings.master.startswith("local") else {}),
        # Every table is a Delta table: a CREATE TABLE without USING is one too.
        "spark.sql.sources.default": "delta",
        "spark.sql.legacy.createHiveTableByDefault": "false",
        **delta_jars.spark_conf(jars),
        **settings.extra_conf,
    }


def start_session(settings: Settings):
    """Start the driver; the jars were resolved by `lakehouse up` (no network here)."""
    from pyspark.sql import SparkSession

    jars = delta_jars.cached(settings)
    if jars is None:
        raise delta_jars.DeltaJarsError(
            f"Delta Lake's jars are not in {settings.jar_cache_dir}: start the server with `lakehouse up`, "
            "which fetches them, or set LAKEHOUSE_DELTA_JARS"
        )
    builder = SparkSession.builder
    for key, value in spark_conf(settings, jars).items():
        builder = builder.config(key, value)
    log(f"starting Spark with Delta Lake {delta_jars.DELTA_VERSION} ({', '.join(str(j) for j in jars)})")
    return builder.getOrCreate(), jars


def log(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} lakehouse-server {message}", flush=True)


def write_state(settings: Settings, spark, jars: list) -> None:
    state = {
        "pid": os.getpid(),
        "host": settings.host,
        "thrift_port": settings.thrift_port,
        "connect_port": settings.connect_port,
        "master": spark.sparkContext.master,
        "spark_version": spark.version,
        "delta_version": delta_jars.DELTA_VERSION,
        "delta_jars": [str(j) for j in jars],
        "ui_url": spark.sparkContext.uiWebUrl,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "home": str(settings.home),
    }
    tmp = settings.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(settings.state_file)


def skip_hive_function_registry(gateway) -> None:
    """Mark Hive's built-in function registry as already loaded.

    Closing a Thrift session on a thread that never touched the metastore makes Hive build a client
    that first registers Hive's own UDFs; that class initialisation needs hive-llap-common, which
    pyspark does not ship, and fails with NoClassDefFoundError (LlapSigner$Signable), failing the
    dbt node whose connection was closing. Spark SQL never uses that registry (it has its own), so
    flagging it done (Hive.REG_FUNCS_DONE = 2 in Hive 2.3) removes the failure and nothing else.
    """
    jvm = gateway.jvm
    hive = jvm.java.lang.Class.forName("org.apache.hadoop.hive.ql.metadata.Hive")
    field = hive.getDeclaredField("didRegisterAllFuncs")  # a private static AtomicInteger
    field.setAccessible(True)
    # py4j returns an AtomicInteger as a Python int, so call its set() through method handles:
    # set(getter(), 2) composed on the Java side.
    lookup = jvm.java.lang.invoke.MethodHandles.lookup()
    int_type = gateway.new_array(jvm.java.lang.Class, 1)
    int_type[0] = jvm.java.lang.Integer.TYPE
    setter = lookup.unreflect(jvm.java.lang.Class.forName("java.util.concurrent.atomic.AtomicInteger").getMethod("set", int_type))
    set_registered = jvm.java.lang.invoke.MethodHandles.collectArguments(setter, 0, lookup.unreflectGetter(field))
    value = gateway.new_array(jvm.java.lang.Object, 1)
    value[0] = 2
    set_registered.invokeWithArguments(value)


def main() -> int:
    settings = load_settings()
    for folder in (settings.logs_dir, settings.run_dir, settings.checkpoint_dir, settings.warehouse_dir):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # otherwise Spark binds to eth0
    # Python workers the server starts (a stream's foreachBatch over Spark Connect reads this
    # variable, not spark.pyspark.python) must run this interpreter, the one with our packages.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    started = time.monotonic()
    try:
        spark, jars = start_session(settings)
    except delta_jars.DeltaJarsError as error:
        log(f"FATAL {error}")
        return 3
    spark.sparkContext.setLogLevel("WARN")
    jvm = spark.sparkContext._jvm  # noqa: SLF001 - the Thrift server has no Python API
    skip_hive_function_registry(spark.sparkContext._gateway)  # noqa: SLF001
    jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
        spark._jsparkSession.sqlContext()  # noqa: SLF001
    )
    write_state(settings, spark, jars)
    log(
        f"ready in {time.monotonic() - started:.1f}s: thrift {settings.host}:{settings.thrift_port}, "
        f"connect {settings.host}:{settings.connect_port}, master {spark.sparkContext.master}, "
        f"Delta Lake {delta_jars.DELTA_VERSION}"
    )
    stop.wait()
    log("stopping")
    settings.state_file.unlink(missing_ok=True)
    spark.stop()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
