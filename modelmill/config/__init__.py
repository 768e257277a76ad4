"""Configuration: the settings read from the environment and the pipeline spec, parsed strictly.

The bottom of the package with :mod:`modelmill.errors` and :mod:`modelmill.runtime`: it
imports neither data, models nor any external system.
"""
