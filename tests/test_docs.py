"""The manual: the docs site builds strictly (a broken link or page fails), the generated
reference pages say what the models say, the README stays short, and no file tells the history
of its making."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_the_docs_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    out = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    for page in (
        "getting-started",
        "your-data",
        "kinds",
        "operating",
        "stack",
        "security",
        "scaling",
        "benchmarks",
        "architecture",
        "reference/spec",
        "reference/settings",
    ):
        assert (site / page / "index.html").is_file(), page


def test_the_reference_pages_are_what_the_models_say():
    from modelmill.ops.reference_docs import PAGES, render

    for page in PAGES:
        written = (REPO / "docs" / "reference" / page).read_text()
        assert written == render(page), f"docs/reference/{page} is out of date: python scripts/reference.py --write"


def test_every_spec_key_and_option_has_a_meaning_and_an_example():
    from modelmill.config.spec import PROBLEM_KINDS, PipelineSpec
    from modelmill.learn.kinds import get_kind
    from modelmill.ops.reference_docs import undocumented

    assert undocumented(PipelineSpec) == []
    for name in PROBLEM_KINDS:
        assert undocumented(get_kind(name).Options, "options.", name) == [], name
    page = (REPO / "docs" / "reference" / "spec.md").read_text()
    for key in (
        "`source.read_options.sep`",
        "`candidates[].grid`",
        "`split.test_period_days`",
        "`options.relevance_threshold`",
        "`options.cost.false_negative`",
    ):
        assert key in page


def test_every_modelmill_variable_in_the_code_is_on_the_settings_page():
    from modelmill.config.settings import OTHER_VARIABLES, Settings

    known = {f"MODELMILL_{name.upper()}" for name in Settings.model_fields} | set(OTHER_VARIABLES)
    used: set[str] = set()
    for folder in ("modelmill", "flows", "tasks"):
        for path in (REPO / folder).rglob("*.py"):
            used |= set(re.findall(r"MODELMILL_[A-Z][A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert sorted(used - known) == []
    page = (REPO / "docs" / "reference" / "settings.md").read_text()
    assert all(f"`{name}`" in page for name in known)


def test_the_readme_is_short_and_shows_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    assert "make run" in text and "make test" in text
    assert "modelmill init" in text


def test_no_file_tells_the_history_of_its_making():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    history = re.compile(
        r"\b(sessions? \d+|(this|that|an earlier|a previous|the previous|earlier|previous|several|last) sessions?|issues? #?\d+|#\d+'s)\b",
        re.I,
    )
    offenders = []
    for name in files:
        path = REPO / name
        if (
            name.startswith("tests/schemas/")
            or not path.is_file()
            or path.suffix in {".png", ".npz", ".xlsx", ".parquet"}
        ):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {m.group(0)}" for m in history.finditer(text)]
    assert offenders == []
