"""Module names of the flat layout, kept importable for what was saved under them.

A registered model (a skops file, or a cloudpickle) names each class by its module, such as
``modelmill.kinds.encoders.CategoryEncoder``, and its MLmodel names the pyfunc loader
(``loader_module: modelmill.tracking``). Champions registered before the package was layered
must still load and score, so each old name resolves to the module that now holds the code: the
same module object, not a copy, so classes compare equal and nothing is imported twice.

The finder only answers for the names below; it imports nothing until such a name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

#: old module (flat layout) -> where its code lives now
MOVED: dict[str, str] = {
    "modelmill.settings": "modelmill.config.settings",
    "modelmill.spec": "modelmill.config.spec",
    "modelmill.servers": "modelmill.runtime.servers",
    "modelmill.locks": "modelmill.runtime.locks",
    "modelmill.cores": "modelmill.runtime.cores",
    "modelmill.reconcile": "modelmill.runtime.reconcile",
    "modelmill.guardian": "modelmill.runtime.guardian",
    "modelmill.catalog": "modelmill.data.catalog",
    "modelmill.fetch": "modelmill.data.fetch",
    "modelmill.objectstore": "modelmill.data.objectstore",
    "modelmill.readers": "modelmill.data.readers",
    "modelmill.imagefiles": "modelmill.data.imagefiles",
    "modelmill.ingest": "modelmill.data.ingest",
    "modelmill.inference": "modelmill.data.schema_inference",
    "modelmill.validate": "modelmill.quality.validate",
    "modelmill.integrity": "modelmill.quality.rules",
    "modelmill.drift": "modelmill.quality.drift",
    "modelmill.evaluation": "modelmill.learn.evaluation",
    "modelmill.explain": "modelmill.learn.explain",
    "modelmill.kinds": "modelmill.learn.kinds",
    "modelmill.tracking": "modelmill.registry.tracking",
    "modelmill.runview": "modelmill.registry.runview",
    "modelmill.approval": "modelmill.ops.approval",
    "modelmill.alerts": "modelmill.ops.alerts",
    "modelmill.status": "modelmill.ops.status",
    "modelmill.history": "modelmill.ops.history",
    "modelmill.card": "modelmill.ops.card",
    "modelmill.report": "modelmill.ops.report",
    "modelmill.reference": "modelmill.ops.reference_docs",
    "modelmill.stages": "modelmill.pipeline.stages",
    "modelmill.scoring": "modelmill.pipeline.scoring",
    "modelmill.reproduce": "modelmill.pipeline.reproduce",
    "modelmill.promotion": "modelmill.pipeline.promotion",
}


def current_name(name: str) -> str | None:
    """Where the code of the flat layout's module ``name`` lives now (sub-modules of a moved
    package included), or None when ``name`` was not moved."""
    if not name.startswith("modelmill."):
        return None
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module that holds its code now."""

    def __init__(self, module):
        self.module, self.own_spec = module, module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        module.__spec__ = self.own_spec  # importlib stamped the old name's spec on it: give its own back


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = current_name(fullname)
        if new is None:
            return None
        module = importlib.import_module(new)
        return importlib.machinery.ModuleSpec(fullname, _Alias(module), is_package=hasattr(module, "__path__"))


def install() -> None:
    """Answer the flat layout's module names (idempotent). First in line: a moved package's
    ``__path__`` is its new folder, where the path finder would load a sub-module a second time
    under the old name."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
