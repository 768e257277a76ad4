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
        if p.name not in ("__init__.py", "__main__.py")
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


def _modules_imported(path: Path) -> set[str]:
    """Every absolute module a file imports, at the top or inside a function, in full."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_each_command_module_imports_the_core_never_another_command():
    package = CORE / "cli"
    commands = {p.stem for p in package.glob("*.py")} - {"__init__", "__main__", "common"}
    assert {"run", "check", "score", "init"} <= commands
    for name in sorted(commands):
        imported = _modules_imported(package / f"{name}.py")
        others = sorted(m for m in imported if m.startswith("modelmill.cli") and m.split(".")[2] != "common")
        assert others == [], f"modelmill/cli/{name}.py imports other commands: {others}"
        assert any(m.startswith("modelmill.") and not m.startswith("modelmill.cli") for m in imported), f"{name} uses no core module"
    # the package's entry point knows the commands only by name
    assert not any(m.split(".")[2:3] and m.split(".")[2] in commands for m in _modules_imported(package / "__init__.py") if m.startswith("modelmill.cli."))


def test_no_import_cycle_between_flows():
    flows = {p.stem: p for p in (REPO / "flows").glob("*.py") if p.stem != "__init__"}
    edges = {name: {m.split(".")[1] for m in _modules_imported(p) if m.startswith("flows.") and m.split(".")[1] in flows} for name, p in flows.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    cycles = sorted(name for name in flows if reaches(name, name, {name}))
    assert cycles == [], f"flows modules that import themselves through others: {cycles}"
    assert "pipeline" in edges["parallel"] and "parallel" not in edges["pipeline"]
