"""The gate between data and learning: the Great Expectations suites (the only user of GX),
the built-in rules run beside them, and drift between a snapshot and the champion's data.
"""
