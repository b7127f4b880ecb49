"""Recommender jobs over Spark Connect: rating prediction, top-N ranking, user similarity.

Every job is a Spark Connect client of the lakehouse server (or any Spark Connect endpoint); no
module here starts a Spark driver. Runs are tracked in MLflow (`ml.tracking`), results land in the
`ml` schema (`ml.outputs`).
"""
