"""Ingest: find MovieLens files, parse them line by line, hand good rows to Spark."""
