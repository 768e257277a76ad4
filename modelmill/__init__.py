"""modelmill: one model per business domain, trained, validated and comparable over time.

The package is the pure core: it never imports prefect, and nothing happens at import time.
Orchestration lives in the top-level ``tasks`` and ``flows`` packages; MLflow lives in
:mod:`modelmill.tracking` only.
"""

__version__ = "0.1.0"
