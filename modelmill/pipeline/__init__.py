"""The application layer: each stage of a run (ingest, validate, train, evaluate, explain,
promote) composed from the layers below, the promotion policies, batch scoring and
reproduction. Prefect tasks and flows wrap this layer and nothing under it.
"""
