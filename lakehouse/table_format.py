"""The table format rule, in one place: Delta Lake when its jars can be had, Parquet otherwise.

The server resolves the format once at start-up (`candidates` lists what to try, in order) and
publishes the result as the Spark conf `spark.lakehouse.tableFormat`, which every client reads:
Python writers through `current_format`, dbt through the `lakehouse_table_format()` macro.
Everything that differs between the formats (how to write, how to drop a load) lives here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from lakehouse.settings import Settings

if TYPE_CHECKING:  # pyspark is heavy; the CLI imports this module for `status`
    from pyspark.sql import DataFrame, SparkSession

FORMAT_CONF = "spark.lakehouse.tableFormat"
REASON_CONF = "spark.lakehouse.tableFormatReason"

# As delta-spark documents it: the SQL extension plus Delta's catalog in place of the session catalog.
DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


class TableFormatError(RuntimeError):
    """The requested format cannot be provided; the message says what to do."""


@dataclass(frozen=True)
class FormatCandidate:
    """One way to start the server: a format, why it was chosen, and the Spark conf it needs."""

    name: str
    reason: str
    conf: dict[str, str] = field(default_factory=dict)
    fallback_reason: str = ""  # why the next candidate is used if this one fails to start


def delta_pip_conf() -> dict[str, str]:
    """The conf delta-spark's own pip helper sets (`spark.jars.packages`, resolved by Ivy)."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.builder)
    packages = builder._options.get("spark.jars.packages", "")  # noqa: SLF001 - the helper's only output
    return {**DELTA_SQL_CONF, "spark.jars.packages": packages}


def delta_jar_folder_conf(folder: Path) -> dict[str, str]:
    """Conf for Delta from a local folder of jars (delta-spark and delta-storage)."""
    if not folder.is_dir():
        raise TableFormatError(f"LAKEHOUSE_DELTA_JARS={folder} is not a folder")
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    names = " ".join(Path(j).name for j in jars)
    if "delta-spark" not in names or "delta-storage" not in names:
        raise TableFormatError(
            f"LAKEHOUSE_DELTA_JARS={folder} must hold delta-spark_*.jar and delta-storage-*.jar "
            f"(found: {names or 'no jars'})"
        )
    return {**DELTA_SQL_CONF, "spark.jars": ",".join(jars)}


def candidates(settings: Settings) -> list[FormatCandidate]:
    """What the server tries, in order. Explicit `delta` has no Parquet fallback: it fails fast."""
    parquet_forced = FormatCandidate("parquet", "LAKEHOUSE_TABLE_FORMAT=parquet")
    if settings.table_format == "parquet":
        return [parquet_forced]
    if settings.delta_jars is not None:
        delta = FormatCandidate(
            "delta",
            f"Delta Lake jars from LAKEHOUSE_DELTA_JARS={settings.delta_jars}",
            delta_jar_folder_conf(settings.delta_jars),
        )
    else:
        conf = delta_pip_conf()
        delta = FormatCandidate(
            "delta",
            f"Delta Lake jars resolved by delta-spark's pip helper ({conf['spark.jars.packages']})",
            conf,
            fallback_reason=(
                f"Delta Lake jars could not be resolved ({conf['spark.jars.packages']} is not in "
                "~/.m2 or ~/.ivy2 and Maven Central is unreachable); set LAKEHOUSE_DELTA_JARS to a "
                "folder holding the delta-spark and delta-storage jars to use Delta"
            ),
        )
    if settings.table_format == "delta":
        return [delta]
    return [delta, FormatCandidate("parquet", "")]


def delta_unavailable_message(candidate: FormatCandidate, log: Path) -> str:
    return (
        "LAKEHOUSE_TABLE_FORMAT=delta, but the Delta Lake jars cannot be had: "
        f"{candidate.fallback_reason or candidate.reason}. See {log}. "
        "Unset LAKEHOUSE_TABLE_FORMAT (auto) to fall back to Parquet."
    )


# ---- writers: every table written by Python goes through these -------------------------------


def current_format(spark: SparkSession) -> str:
    """The format the server resolved at start-up."""
    return spark.conf.get(FORMAT_CONF, "parquet") or "parquet"


def save_table(
    df: DataFrame,
    table: str,
    *,
    mode: str,
    partition_by: Sequence[str] = (),
) -> None:
    """Create or write `table` in the resolved format (`mode`: append or overwrite)."""
    fmt = current_format(df.sparkSession)
    writer = df.write.format(fmt).mode(mode)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if fmt == "delta" and mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    writer.saveAsTable(table)


def drop_partition(spark: SparkSession, table: str, column: str, value: str) -> None:
    """Remove every row of one partition value (used to undo a load that did not finish)."""
    if not spark.catalog.tableExists(table):
        return
    literal = value.replace("'", "''")
    if current_format(spark) == "delta":
        spark.sql(f"delete from {table} where {column} = '{literal}'")
    else:
        spark.sql(f"alter table {table} drop if exists partition ({column} = '{literal}')")


def write_partition_once(df: DataFrame, table: str, *, partition_value: str, writer_id: str, version: int) -> None:
    """Write `df` (all of the `load_id` partition `partition_value`) into `table` so that writing it
    again is a no-op.

    Streaming batches use this: a batch run again after a crash must not add its rows twice.
    Delta: an idempotent append (txnAppId/txnVersion, as Delta documents for foreachBatch).
    Parquet: `INSERT OVERWRITE` of that one partition, so a second run replaces the first run's
    rows, finished or not, with the same rows, and leaves every other partition alone.
    """
    spark = df.sparkSession
    columns = [f.name for f in spark.table(table).schema.fields]
    if current_format(spark) == "delta":
        (df.select(*columns).write.format("delta").mode("append")
         .option("txnAppId", writer_id).option("txnVersion", version).saveAsTable(table))
        return
    if df.isEmpty():
        return  # a run that wrote nothing left nothing to replace
    view = f"partition_once_{table.replace('.', '_')}"
    df.select(*[c for c in columns if c != "load_id"]).createOrReplaceTempView(view)
    literal = partition_value.replace("'", "''")
    spark.sql(f"insert overwrite table {table} partition (load_id = '{literal}') select * from {view}")
    spark.catalog.dropTempView(view)


def replace_rows(df: DataFrame, table: str, key: str) -> None:
    """Replace every row of `table` whose `key` appears in `df` by `df`'s rows, keep the others.

    Delta: one atomic overwrite with `replaceWhere` on the keys. Parquet: the table is rewritten
    whole (the kept rows are materialised first, as a table cannot be read while overwritten).
    """
    spark = df.sparkSession
    keys = [row[0] for row in df.select(key).distinct().collect()]
    if not keys:
        return
    columns = [f.name for f in spark.table(table).schema.fields]
    ordered = df.select(*columns)
    if current_format(spark) == "delta":
        predicate = f"{key} in ({', '.join(str(int(k)) for k in keys)})"
        ordered.write.format("delta").mode("overwrite").option("replaceWhere", predicate).saveAsTable(table)
        return
    from pyspark.sql import functions as F

    spark.catalog.refreshTable(table)
    kept = spark.table(table).where(~F.col(key).isin(keys)).localCheckpoint()
    save_table(kept.unionByName(ordered), table, mode="overwrite")
