"""`lakehouse quarantine`: what was rejected, why, and where — counts per file and reason, with samples.

bronze.quarantine holds every line the batch ingest or the stream rejected, with its file, line
number, raw text and reason (lakehouse/tables.py). The report groups those lines by file and by
*kind* of reason: the numbers in a reason are normalised to N (as the ingest's own summary does),
so "expected 4 fields, got 3" and "expected 4 fields, got 5" are one kind, "expected N fields,
got N". Each group shows its row count, its line range, the loads it came from and a few sample
lines with their exact reasons.

Only committed loads are counted: rows whose load has its ledger row (bronze.ingest_log for an
ingested file, bronze.stream_batches for a micro-batch), as dbt's staging reads them. Rows of a
load still running, or of one that died (the next ingest drops those, the stream writes its batch
again), are counted apart and left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from lakehouse import tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SAMPLE_WIDTH = 100  # characters of a raw line shown
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Sample:
    line_number: int
    reason: str  # exact, numbers and all
    raw_line: str


@dataclass
class ReasonCount:
    """One (file, reason kind): how many lines, where, from which loads, and a few of them."""

    source_file: str
    target_table: str
    reason: str  # numbers normalised to N
    rows: int
    first_line: int
    last_line: int
    loads: int
    last_quarantined_at: datetime | None
    samples: list[Sample] = field(default_factory=list)


@dataclass
class QuarantineReport:
    groups: list[ReasonCount]  # the largest first, at most `limit`
    total_rows: int  # committed rows matching the filters
    total_groups: int  # (file, reason kind) groups, before the limit
    files: int
    uncommitted_rows: int  # rows of loads without a ledger row, left out
    filters: list[str]

    @property
    def by_reason(self) -> list[tuple[str, int, int]]:
        """(reason kind, files, rows) over the groups shown, the most frequent first."""
        rows: dict[str, list[int]] = {}
        for group in self.groups:
            entry = rows.setdefault(group.reason, [0, 0])
            entry[0] += 1
            entry[1] += group.rows
        return sorted(((r, f, n) for r, (f, n) in rows.items()), key=lambda t: (-t[2], t[0]))


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """A naive UTC datetime from `30m`, `2h`, `7d`, `1w`, `90s`, or an ISO date or time
    (`2024-05-01`, `2024-05-01T10:00`, `2024-05-01 10:00:00+02:00`; naive means UTC)."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--since {value!r}: give a duration (30m, 2h, 7d) or an ISO date/time "
                         "(2024-05-01, 2024-05-01T10:00, UTC unless it says otherwise)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _like(pattern: str) -> str:
    """A shell-style pattern (`*`, `?`) as a SQL LIKE pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _matches(column: str, pattern: str):
    from pyspark.sql import functions as F

    if "*" in pattern or "?" in pattern:
        return F.col(column).like(_like(pattern))
    return F.col(column) == pattern


def _committed_loads(spark: SparkSession) -> DataFrame:
    ledgers = [t for t in (tables.INGEST_LOG, tables.STREAM_BATCHES) if spark.catalog.tableExists(t.name)]
    frames = [spark.table(t.name).select("load_id") for t in ledgers]
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union.distinct()


def quarantine_report(
    spark: SparkSession,
    *,
    source_file: str | None = None,
    since: datetime | None = None,
    load_id: str | None = None,
    samples: int = 3,
    limit: int = 50,
) -> QuarantineReport:
    """Counts of committed quarantined lines per (file, reason kind), the largest first (at most
    `limit` groups), with up to `samples` sample lines each (the first lines of the group).
    `source_file` and `load_id` match exactly, or as shell patterns with `*` and `?`; `since` is
    a naive UTC time (quarantined at or after it)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if samples < 0 or limit < 1:
        raise ValueError("--samples must be 0 or more and --limit 1 or more")
    if not spark.catalog.tableExists(tables.QUARANTINE.name):
        raise RuntimeError(f"{tables.QUARANTINE.name} does not exist yet: run `lakehouse ingest` first.")
    spark.catalog.refreshTable(tables.QUARANTINE.name)  # the stream and ingest append from other sessions
    rows = spark.table(tables.QUARANTINE.name)
    filters = []
    if source_file:
        rows = rows.where(_matches("source_file", source_file))
        filters.append(f"file {source_file}")
    if load_id:
        rows = rows.where(_matches("load_id", load_id))
        filters.append(f"load {load_id}")
    if since is not None:
        stamp = since.strftime("%Y-%m-%d %H:%M:%S")
        rows = rows.where(F.col("quarantined_at") >= F.lit(stamp).cast("timestamp"))
        filters.append(f"since {stamp} UTC")

    ledger = _committed_loads(spark).withColumn("_committed", F.lit(True))
    flagged = rows.join(F.broadcast(ledger), "load_id", "left").localCheckpoint()
    totals = flagged.agg(
        F.count(F.when(F.col("_committed"), 1)).alias("committed"),
        F.count(F.when(F.col("_committed").isNull(), 1)).alias("uncommitted"),
        F.countDistinct(F.when(F.col("_committed"), F.col("source_file"))).alias("files"),
    ).first()
    committed = flagged.where(F.col("_committed")).withColumn(
        "reason_kind", F.regexp_replace("reason", r"[0-9]+", "N"))
    key = ["source_file", "target_table", "reason_kind"]
    grouped = committed.groupBy(*key).agg(
        F.count(F.lit(1)).alias("rows"),
        F.min("line_number").alias("first_line"),
        F.max("line_number").alias("last_line"),
        F.countDistinct("load_id").alias("loads"),
        F.max("quarantined_at").alias("last_quarantined_at"),
    ).localCheckpoint()
    total_groups = grouped.count()
    top = grouped.orderBy(F.desc("rows"), "source_file", "reason_kind").limit(limit).collect()

    groups = {(r["source_file"], r["target_table"], r["reason_kind"]): ReasonCount(
        r["source_file"], r["target_table"], r["reason_kind"], int(r["rows"]), int(r["first_line"]),
        int(r["last_line"]), int(r["loads"]), r["last_quarantined_at"]) for r in top}
    if samples and groups:
        order = Window.partitionBy(*key).orderBy("line_number", "quarantined_at", "load_id")
        wanted = committed.join(grouped.orderBy(F.desc("rows"), "source_file", "reason_kind").limit(limit).select(*key),
                                key, "left_semi")
        picked = (wanted.withColumn("_n", F.row_number().over(order)).where(F.col("_n") <= samples)
                  .select(*key, "line_number", "reason", "raw_line", "_n").collect())
        for r in sorted(picked, key=lambda r: r["_n"]):
            groups[(r["source_file"], r["target_table"], r["reason_kind"])].samples.append(
                Sample(int(r["line_number"]), r["reason"], r["raw_line"]))
    return QuarantineReport(list(groups.values()), int(totals["committed"]), total_groups, int(totals["files"]),
                            int(totals["uncommitted"]), filters)


def shown(raw: str | None, width: int = SAMPLE_WIDTH) -> str:
    """A raw line as it can be shown in a table cell: tabs, carriage returns and other control
    characters made visible, cut to `width` characters."""
    if raw is None:
        return ""
    text = "".join(
        "\\t" if ch == "\t" else "\\r" if ch == "\r" else "\\n" if ch == "\n"
        else f"\\x{ord(ch):02x}" if ord(ch) < 32 or ord(ch) == 127 else ch
        for ch in raw
    )
    return text if len(text) <= width else text[: width - 1] + "…"


def print_report(report: QuarantineReport) -> None:
    from rich.markup import escape

    from lakehouse.console import console, key_values, table

    scope = ", ".join(report.filters) or "everything"
    console.print(key_values("Quarantine (bronze.quarantine, committed loads)", [
        ("filters", scope),
        ("quarantined lines", f"{report.total_rows:,} in {report.files:,} file(s)"),
        ("file x reason groups", f"{report.total_groups:,}" + (f" (the {len(report.groups)} largest shown; --limit)"
                                                               if len(report.groups) < report.total_groups else "")),
        *([("not committed", f"{report.uncommitted_rows:,} lines of loads still running or dead, left out")]
          if report.uncommitted_rows else []),
    ]))
    if not report.groups:
        console.print("No quarantined lines" + (f" match ({scope})." if report.filters else "."))
        return
    console.print(table("Reasons (numbers shown as N)", ["reason", "files", "lines"],
                        [(escape(r), f, n) for r, f, n in report.by_reason]))
    rows = []
    for g in report.groups:
        lines = f"{g.first_line:,}" if g.first_line == g.last_line else f"{g.first_line:,}-{g.last_line:,}"
        samples = "\n".join(f"{s.line_number}: {escape(shown(s.raw_line))}"
                            + (f"  [dim]({escape(s.reason)})[/]" if s.reason != g.reason else "")
                            for s in g.samples) or "-"
        rows.append((escape(g.source_file), escape(g.reason), g.rows, lines, g.loads, samples))
    console.print(table("Per file and reason, with sample lines (line number: raw line, and its exact reason)",
                        ["file", "reason", "lines", "line numbers", "loads", "samples"], rows))
