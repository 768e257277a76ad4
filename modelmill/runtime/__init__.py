"""The machine a command runs on: local servers, file locks, the cores shared by pipelines
side by side, the guardian that stops a run's children, and the reconciliation of runs a lost
process left behind. Imports nothing else of modelmill but :mod:`modelmill.errors`.
"""
