"""The data layer, first in a run: where sources are fetched from (mirror, URL, object store),
how each kind of file is read, the parquet snapshot a run trains on, and the schema
inference ``modelmill init`` drafts a spec with.
"""
