"""Prefect tasks: thin wrappers over the core stages (names, retries, caching, artifacts)."""
