"""The reference pages of the docs, generated from the models that parse specs and settings: every
spec key (and every problem kind's ``options``) with its type, default, allowed values, meaning
and an example, and every ``MODELMILL_*`` variable. ``scripts/reference.py --write`` writes them
into ``docs/reference/``; a test fails when the pages and the models disagree."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from modelmill.config.settings import REPO_ROOT

PAGES = {"spec.md": "spec_reference", "settings.md": "settings_reference"}


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a key's value is (``split: Split``, ``scoring: Scoring | None``), if any."""
    if _is_model(annotation):
        return annotation
    if get_origin(annotation) is list and len(get_args(annotation)) == 1 and _is_model(get_args(annotation)[0]):
        return get_args(annotation)[0]
    if get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in get_args(annotation) if _is_model(a)]
        return models[0] if len(models) == 1 else None
    return None


def _item(field: FieldInfo) -> str:
    """``[]`` after a key whose value is a list of mappings (``candidates[].name``)."""
    return "[]" if get_origin(field.annotation) is list else ""


def type_text(annotation: Any) -> str:
    """A key's type in words: ``integer``, ``list of text``, ``text or null``, ``mapping``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return "one of the allowed values"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(type_text(a) for a in args))
    if origin is list and args and _is_model(args[0]):
        return "list of mappings"
    if origin in (list, tuple, set):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"pair of {type_text(args[0])}s" if len(args) == 2 and args[0] == args[1] else "list"
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if _is_model(annotation):
        return "mapping"
    names = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def allowed_text(field: FieldInfo) -> str:
    """The values a key accepts: a Literal's choices, bounds, lengths and patterns."""
    parts: list[str] = []

    def literals(t: Any) -> list[Any]:
        if get_origin(t) is Literal:
            return list(get_args(t))
        if get_origin(t) in (typing.Union, types.UnionType):
            return [v for a in get_args(t) for v in literals(a)]
        return []

    if choices := literals(field.annotation):
        parts.append(", ".join(f"`{c}`" for c in choices))
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}
    for meta in field.metadata:
        for attr, word in words.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{word} {value:,}" if isinstance(value, int) else f"{word} {value}")
        if getattr(meta, "pattern", None):
            parts.append(f"matches `{meta.pattern}`")
    return "; ".join(parts)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "(see its keys)" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if isinstance(field.default, Path):
        return f"`{field.default}`"
    return f"`{json.dumps(field.default)}`"


def _value_text(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def shipped_values(problem: str | None = None) -> dict[str, Any]:
    """Each dotted key's value in the first shipped spec (of ``problem``) that sets it (the pages'
    examples)."""
    import yaml

    found: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        found.setdefault(prefix, value)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    for path in sorted((REPO_ROOT / "pipelines").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if problem is None or spec.get("problem") == problem:
            walk("", spec)
    found.pop("", None)
    return found


def example_text(key: str, field: FieldInfo, shipped: dict[str, Any]) -> str:
    if field.examples:
        return _value_text(field.examples[0])
    if key in shipped and (not isinstance(shipped[key], dict) or _nested_model(field.annotation) is None):
        return _value_text(shipped[key])
    if _nested_model(field.annotation) is not None:
        return f"see `{key}.*`"
    if not field.is_required() and field.default_factory is None and field.default is not None:
        return _value_text(field.default if not isinstance(field.default, Path) else str(field.default))
    return ""


def undocumented(model: type[BaseModel], prefix: str = "", problem: str | None = None) -> list[str]:
    """Dotted keys (nested models included) with no description or no example."""
    shipped = shipped_values(problem)
    missing = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        if not field.description or not example_text(key, field, shipped):
            missing.append(key)
        if (nested := _nested_model(field.annotation)) is not None:
            missing += undocumented(nested, f"{key}{_item(field)}.", problem)
    return missing


def _table(model: type[BaseModel], prefix: str, shipped: dict[str, Any], sections: list[str], level: int) -> str:
    rows = ["| key | type | default | allowed | meaning | example |", "|---|---|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{name}"
        if (sub := _nested_model(field.annotation)) is not None:
            nested.append((f"{key}{_item(field)}", sub))
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        cells = [
            f"`{key}`",
            type_text(field.annotation),
            default_text(field),
            allowed_text(field),
            meaning,
            example_text(key, field, shipped),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") if i != 4 else c for i, c in enumerate(cells)) + " |")
    sections.append("\n".join(rows))
    for key, sub in nested:
        doc = " ".join((sub.__doc__ or "").strip().split("\n\n")[0].split())
        sections.append(f"{'#' * level} `{key}`\n\n{doc}".rstrip())
        _table(sub, f"{key}.", shipped, sections, level)
    return "\n\n".join(sections)


def spec_reference() -> str:
    """The spec keys page: the top-level keys, each nested mapping, then each kind's options."""
    from modelmill.config.spec import PROBLEM_KINDS, PipelineSpec
    from modelmill.learn.kinds import get_kind

    shipped = shipped_values()
    out = [
        "# Spec reference",
        "",
        "<!-- generated by `python scripts/reference.py --write` from modelmill/config/spec.py and the problem kinds: do not edit by hand -->",
        "",
        "A pipeline is one YAML file parsed into a strict model: an unknown key, a value of the wrong "
        "type or out of its bounds is a one-line error naming the key. Examples come from the shipped "
        "specs in `pipelines/` where one sets the key.",
        "",
        "## Top-level keys",
        "",
    ]
    sections: list[str] = []
    out.append(_table(PipelineSpec, "", shipped, sections, 3))
    out += ["", "## Problem kinds", ""]
    for name in PROBLEM_KINDS:
        kind = get_kind(name)
        doc = " ".join((type(kind).__doc__ or "").strip().split("\n\n")[0].split())
        out += [f"### `{name}`", "", doc, ""] if doc else [f"### `{name}`", ""]
        metrics = ", ".join(f"`{m}` ({d})" for m, d in kind.METRICS.items())
        out += [
            f"- **metric.name**: {metrics}",
            f"- **estimators**: {', '.join(f'`{e}`' for e in sorted(kind.ESTIMATORS))}",
        ]
        out.append(
            f"- **features**: {', '.join(f'`features.{g}`' for g in kind.FEATURES) or 'none (it reads `roles`)'}"
        )
        out.append("")
        if kind.Options.model_fields:
            out += ["`options`:", "", _table(kind.Options, "options.", shipped_values(name), [], 4), ""]
        else:
            out += ["No `options`.", ""]
    return "\n".join(out).rstrip() + "\n"


def settings_reference() -> str:
    """The environment variables page, from :class:`modelmill.config.settings.Settings`."""
    from modelmill.config.settings import OTHER_VARIABLES, Settings

    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else default_text(field)
        rows.append(
            f"| `{prefix}{name.upper()}` | {type_text(field.annotation)} | {default} | {field.description or ''} |"
        )
    others = [
        "| variable | meaning |",
        "|---|---|",
        *(f"| `{name}` | {meaning} |" for name, meaning in OTHER_VARIABLES.items()),
    ]
    doc = (Settings.__doc__ or "").strip().split("\n\n")
    return (
        "\n".join(
            [
                "# Environment variables",
                "",
                "<!-- generated by `python scripts/reference.py --write` from modelmill/config/settings.py: do not edit by hand -->",
                "",
                " ".join(doc[0].split()),
                "",
                *rows,
                "",
                " ".join(" ".join(doc[1:]).split()),
                "",
                "Also read, where they are used:",
                "",
                *others,
            ]
        ).rstrip()
        + "\n"
    )


def render(page: str) -> str:
    return globals()[PAGES[page]]()
