"""Specs and suites are data, read with bounds: what a file says is what it holds.

A YAML alias copies a whole subtree, so ten nested anchors in a 2 KB spec expand to 10^10 nodes
before any schema sees them; PyYAML's ``safe_load`` builds them all. Refusing anchors and aliases
makes the parsed document as large as its text, and a byte limit on the text then bounds it. Depth
is bounded too: Python's recursion (in the parser and in pydantic) is the only other way a small file
grows costly.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from modelmill.errors import SpecError

#: the largest spec or suite file read (the shipped ones are under 8 KB)
MAX_BYTES = 1_000_000
#: the deepest nesting of mappings and lists (the shipped specs reach 5)
MAX_DEPTH = 32


def _read(path: Path, what: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SpecError(f"{path}: the {what} is {size:,} bytes, more than the limit of {MAX_BYTES:,}")
        return path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read the {what}: {e.strerror or e}") from e


class _NoAliases(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and nesting beyond :data:`MAX_DEPTH` while composing."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        where = f"line {event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent):
            raise SpecError(f"{where}: YAML aliases (*{event.anchor}) are not allowed; write the value out")
        if getattr(event, "anchor", None):
            raise SpecError(f"{where}: YAML anchors (&{event.anchor}) are not allowed; write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise SpecError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(path: Path, what: str = "spec"):
    """Parse a YAML file with no anchors or aliases, at most :data:`MAX_BYTES` and :data:`MAX_DEPTH` deep."""
    text = _read(path, what)
    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from e


def _depth(value) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def load_json(path: Path, what: str):
    """Parse a JSON file of at most :data:`MAX_BYTES`, nested at most :data:`MAX_DEPTH` deep."""
    text = _read(path, what)
    try:
        data = json.loads(text)
    except RecursionError:
        raise SpecError(f"{path}: the {what} is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: the {what} is not valid JSON: {e}") from e
    if _depth(data) > MAX_DEPTH:
        raise SpecError(f"{path}: the {what} is nested deeper than {MAX_DEPTH} levels")
    return data
