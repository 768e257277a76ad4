"""The shape rules: the pure core never imports prefect; MLflow only in the adapter; GX only in
the validation step; nothing heavy happens at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

CORE = REPO / "modelmill"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_prefect():
    offenders = [str(p.relative_to(REPO)) for p in CORE.rglob("*.py") if "prefect" in _imports(p)]
    assert offenders == []


def test_mlflow_lives_in_one_adapter_and_gx_in_the_validation_step():
    mlflow_users = sorted(str(p.relative_to(CORE)) for p in CORE.rglob("*.py") if "mlflow" in _imports(p))
    gx_users = sorted(str(p.relative_to(CORE)) for p in CORE.rglob("*.py") if "great_expectations" in _imports(p))
    assert mlflow_users == ["tracking.py"]
    assert gx_users == ["validate.py"]


def test_tasks_and_flows_only_wrap_the_core():
    for folder in ("tasks", "flows"):
        for p in (REPO / folder).glob("*.py"):
            heavy = {"sklearn", "pandas", "mlflow", "great_expectations", "numpy"} & _imports(p)
            assert not heavy, f"{p.name} imports {heavy}: ML logic belongs in the core"


def test_importing_every_core_module_loads_no_prefect_mlflow_or_gx():
    modules = sorted(
        "modelmill." + ".".join(p.relative_to(CORE).with_suffix("").parts)
        for p in CORE.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted({n.split('.')[0] for n in sys.modules} & {'prefect', 'mlflow', 'great_expectations'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
