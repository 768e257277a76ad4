"""modelmill: one model per business domain, trained, validated and comparable over time.

The package's folders are its layers, in the order data flows through a run; each may import
only those below it (the contracts in ``pyproject.toml``, checked by ``lint-imports``)::

    cli        the command line
    pipeline   the stages of a run, promotion policies, scoring, reproduction
    ops        alerts, approval, status, history, model card, report
    registry   MLflow: tracking and the model registry (its only user)
    learn      problem kinds, estimators, evaluation, explanations
    quality    the validation gate (its only GX user) and drift
    data       sources, readers, snapshots
    config     settings and pipeline specs
    runtime    servers, locks, cores, reconciliation
    errors     the error model and its exit codes

Prefect lives outside the core, in the ``modelmill_flows`` and ``modelmill_tasks`` packages
(the repository's ``flows/`` and ``tasks/``). Nothing here happens at import time but the
registration of the module names an earlier layout pickled (see :mod:`modelmill._moved`).
"""

from modelmill._moved import install as _install_moved_names

__version__ = "0.1.0"

_install_moved_names()
