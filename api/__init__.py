"""The REST API: recommendations, movie search and new ratings, served from the lakehouse's Delta
tables with no JVM on the request path (see the README's "REST API" section)."""
