"""The governance layer: erasure of a user (GDPR art. 17) across every table and file."""
