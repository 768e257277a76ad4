"""What the import contracts in ``pyproject.toml`` (``lint-imports``) cannot say: nothing heavy
happens at import time, each command module stands alone, and the wheel holds every layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

CORE = REPO / "modelmill"


def test_pyproject_lists_every_package_of_the_tree():
    """A wheel holds only the packages ``pyproject.toml`` names: a layer left out of the list
    would install broken (an editable install hides it)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    tree = {".".join(p.parent.relative_to(REPO).parts) for p in CORE.rglob("__init__.py")}
    assert set(config["packages"]) == tree | {"modelmill_flows", "modelmill_tasks"}
    assert config["package-dir"] == {"modelmill_flows": "flows", "modelmill_tasks": "tasks"}


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
        assert any(m.startswith("modelmill.") and not m.startswith("modelmill.cli") for m in imported), (
            f"{name} uses no core module"
        )
    # the package's entry point knows the commands only by name
    assert not any(
        m.split(".")[2:3] and m.split(".")[2] in commands
        for m in _modules_imported(package / "__init__.py")
        if m.startswith("modelmill.cli.")
    )


def test_the_architecture_page_draws_the_layers_contract():
    """docs/architecture.md's diagram lists the `layers` contract's layers, top to bottom."""
    import re
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    page = (REPO / "docs" / "architecture.md").read_text()
    drawn = page.split("<!-- layers -->", 1)[1].split("<!-- /layers -->", 1)[0]
    assert re.findall(r"^ (modelmill[\w.]*)", drawn, flags=re.M) == layers
