"""`dbt source freshness` as the pipeline reads it (lakehouse/dbt_runner.py): dbt's sources.json
turned into per-source results, and a stale source described as a warning."""
from __future__ import annotations

import json

from lakehouse.dbt_runner import FreshnessOutcome, read_freshness


def test_sources_json_is_read_per_source(tmp_path):
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"results": [
        {"unique_id": "source.movielens_lakehouse.movielens.ingest_log", "status": "pass",
         "max_loaded_at_time_ago_in_s": 300.0},
        {"unique_id": "source.movielens_lakehouse.stream.stream_batches", "status": "warn",
         "max_loaded_at_time_ago_in_s": 3 * 3600.0},
        {"unique_id": "source.movielens_lakehouse.stream.rating_events", "status": "runtime error",
         "error": "Database Error\n  boom"},
    ]}))
    results = read_freshness(sources)
    assert [(r.source, r.status) for r in results] == [
        ("movielens.ingest_log", "pass"), ("stream.stream_batches", "warn"), ("stream.rating_events", "runtime error")]
    outcome = FreshnessOutcome(0, results)
    assert [s.source for s in outcome.stale] == ["stream.stream_batches", "stream.rating_events"]
    assert outcome.describe() == ("1 fresh, 2 stale: stream.stream_batches: last load 3.0 h ago (stale); "
                                  "stream.rating_events: could not be checked (Database Error)")


def test_no_sources_json_means_no_results(tmp_path):
    assert read_freshness(tmp_path / "sources.json") == []
    assert "no source" in FreshnessOutcome(1, []).describe()
