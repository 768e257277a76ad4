"""``modelmill reproduce PIPELINE VERSION``: rebuild a registered version from what its run
recorded (snapshot, spec, suite, fingerprint) in a scratch store, and compare its model selection
and test metrics with the recorded ones; when they differ, say which input differs."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from modelmill.config.settings import Settings
from modelmill.errors import ModelmillError, SpecError

log = logging.getLogger("modelmill.pipeline.reproduce")

#: allowed absolute difference of a test metric: exact for scikit-learn models, and for a
#: network (whose CPU kernels may add in another order) a stated tolerance
EXACT, NEURAL_TOLERANCE = 1e-9, 0.02


def verdict(same_choice: bool, differences, tolerance: float) -> str:
    """``identical`` when the rebuild chose the same candidate and hyperparameters and every test
    metric is equal; ``within_tolerance`` when they differ by at most ``tolerance``; else
    ``different`` (another choice, a larger difference, or a metric that is not a number)."""
    worst = max((abs(float(d)) for d in differences), default=0.0)
    if not same_choice or not math.isfinite(worst):
        return "different"
    if worst == 0:
        return "identical"
    return "within_tolerance" if worst <= tolerance else "different"


@dataclass
class Reproduction:
    pipeline: str
    version: str
    run_id: str
    status: str  # identical | within_tolerance | different | not_rebuilt
    tolerance: float
    inputs: list[str] = field(default_factory=list)  # the inputs that differ from the recorded ones
    selection: tuple[str, str] | None = None  # (recorded, rebuilt) candidate
    table: pd.DataFrame | None = None  # metric, recorded, rebuilt, difference

    @property
    def ok(self) -> bool:
        return self.status in ("identical", "within_tolerance")


def reproduce(name: str, version: str, settings: Settings) -> Reproduction:
    import yaml

    from modelmill.config.spec import PipelineSpec, load_spec
    from modelmill.data.digests import sha256_file
    from modelmill.data.ingest import Snapshot
    from modelmill.data.objectstore import local_snapshot
    from modelmill.learn.kinds.neural import network
    from modelmill.pipeline import stages
    from modelmill.registry.tracking import Tracker

    spec = load_spec(name, settings)
    tracker = Tracker.of(settings)
    mv = tracker.model_version(spec, version)
    if mv is None or not mv.run_id:
        raise SpecError(f"pipeline {spec.name} has no version {version} (`modelmill history {spec.name}` lists them)")
    run = tracker.run(mv.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    out = Reproduction(spec.name, str(version), mv.run_id, "not_rebuilt", EXACT)
    with tempfile.TemporaryDirectory(prefix="modelmill-reproduce-") as tmp:
        # the records it rebuilds from, each refused unless signed with the project's key (when it has one)
        recorded_spec = tracker.signed_artifact(mv.run_id, "spec/spec.json", tmp)
        recorded_suite = tracker.signed_artifact(mv.run_id, "spec/suite.json", tmp)
        parts_file = tracker.signed_artifact(mv.run_id, "data/fingerprint.json", tmp)
        if recorded_spec is None or recorded_suite is None or parts_file is None:
            out.inputs.append(
                "the run recorded no spec, suite or fingerprint (spec/spec.json, spec/suite.json, data/fingerprint.json): it cannot be rebuilt"
            )
            return out
        then = json.loads(parts_file.read_text())
        now = stages.code_parts()
        for key, value in now.items():
            if str(then.get(key)) != str(value):
                what = (
                    "modelmill's code (sha256 of its source files)"
                    if key == "source"
                    else f"library {key}"
                    if key != "modelmill"
                    else "modelmill's version"
                )
                out.inputs.append(f"{what}: {then.get(key)} then, {value} now")
        recorded = tags.get("modelmill.snapshot", "")
        try:
            snapshot = local_snapshot(recorded, settings)
        except ModelmillError as e:  # a tampered object in the store, a store that does not answer
            out.inputs.insert(0, f"the snapshot cannot be read: {e}")
            return out
        if snapshot is None:
            out.inputs.insert(0, f"the snapshot is missing: {recorded} (removed, or recorded on another machine)")
            return out
        found = sha256_file(snapshot)
        if found != tags.get("modelmill.data_digest"):
            out.inputs.insert(
                0,
                f"the snapshot changed: {snapshot} has sha256 {found[:12]}…, the run recorded {tags.get('modelmill.data_digest', '?')[:12]}…",
            )
            return out
        # the recorded spec and suite, laid out as a project of their own in the scratch folder
        raw = json.loads(recorded_spec.read_text())
        raw.pop("notify", None)  # a reproduction alerts no one (and its URLs were recorded masked)
        if Path(raw["suite"]).is_absolute():  # laid out beside the spec, under its own name
            raw["suite"] = Path(raw["suite"]).name
        root = Path(tmp)
        (root / "pipelines").mkdir()
        (root / "expectations" / raw["suite"]).parent.mkdir(parents=True, exist_ok=True)
        (root / "expectations" / raw["suite"]).write_bytes(recorded_suite.read_bytes())
        (root / "pipelines" / f"{spec.name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        scratch = Settings(home=root / "home", pipelines_dir=root / "pipelines", expectations_dir=root / "expectations")
        rebuilt_spec: PipelineSpec = load_spec(spec.name, scratch)
        meta = json.loads(snapshot.with_suffix(".json").read_text()) if snapshot.with_suffix(".json").is_file() else {}
        snap = Snapshot(
            spec.name,
            snapshot,
            found,
            int(meta.get("rows", params.get("data.rows", 0))),
            list(meta.get("columns", [])),
            [],
            tags.get("modelmill.as_of") if tags.get("modelmill.as_of") != "latest" else None,
        )
        before = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = (
            f"sqlite:///{scratch.home_dir / 'mlflow.db'}"  # not the project's store, whatever the environment says
        )
        try:
            h = stages.start(rebuilt_spec, scratch, as_of=snap.as_of, promote=False, trigger="reproduce", force=True)
            log.info("%s v%s: rebuilding from snapshot %s in a scratch store", spec.name, version, found[:12])
            stages.validate_stage(h, snap)
            data, trained = stages.train_stage(h, snap)
            ev = stages.evaluate_stage(h, data, trained)
            h.tracker().end_run(h.run_id, "FINISHED")
        finally:
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before
            Tracker.of(settings)  # the process-wide MLflow URI back on the project's store
    out.tolerance = NEURAL_TOLERANCE if network(trained.model) is not None else EXACT
    out.selection = (params.get("model.candidate", "?"), trained.best)
    rows = []
    for key, value in sorted(ev.metrics.items()):
        recorded = metrics.get(f"test/{key}")
        if recorded is None:
            continue
        rows.append(
            {"metric": key, "recorded": recorded, "rebuilt": float(value), "difference": float(value) - recorded}
        )
    out.table = pd.DataFrame(rows)
    same_choice = out.selection[0] == out.selection[1] and all(
        params.get(f"model.{k}") == str(v) for k, v in trained.hyperparams.items()
    )
    out.status = verdict(same_choice, out.table["difference"] if len(out.table) else [], out.tolerance)
    if out.status == "different":
        if not out.inputs:
            out.inputs.append(
                "no recorded input differs (same snapshot, spec, suite, code and libraries): the training itself is not deterministic here"
            )
    return out
