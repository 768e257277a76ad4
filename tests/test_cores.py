"""Cores shared by pipelines side by side on one machine (``modelmill.runtime.cores``): each busy pipeline
process marks itself, and a network takes ``cores // busy`` threads at each epoch, so the last
pipeline of a ``run --all --workers N`` takes the cores the finished ones left idle."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from modelmill.runtime.cores import SHARED, busy, clear_dead_marks, thread_share


def test_the_share_is_the_cores_over_the_live_busy_processes(shared, other_pipeline, monkeypatch):
    assert thread_share() is None  # this process runs no pipeline (the command that started the workers)
    with busy():
        assert (shared / str(os.getpid())).exists()
        assert thread_share() == 2
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (shared / str(dead.pid)).touch()  # a worker that was killed mid-pipeline
        (shared / "notes.txt").touch()
        assert thread_share() == 2
        other_pipeline.kill()
        other_pipeline.wait()
        assert thread_share() == 4
        clear_dead_marks()
        assert thread_share() == 4
        assert sorted(p.name for p in shared.iterdir()) == [str(os.getpid())]
    assert not any(shared.iterdir())
    assert thread_share() is None
    with pytest.raises(RuntimeError), busy():  # the mark goes when the pipeline fails, too
        raise RuntimeError("boom")
    assert not any(shared.iterdir())
    monkeypatch.delenv(SHARED)
    assert thread_share() is None  # not side by side: the usual thread rules
    with busy():
        assert not any(shared.iterdir())


def test_a_network_beside_other_pipelines_takes_its_share_and_more_once_they_finish(shared, other_pipeline, caplog):
    torch = pytest.importorskip("torch")
    from modelmill.learn.kinds.neural import MLPRegressor
    from modelmill.learn.kinds.torch_modules import ThreadShare

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=300)
    before = torch.get_num_threads()
    try:
        with busy(), caplog.at_level(logging.INFO, logger="modelmill.train"):
            model = MLPRegressor(hidden=(8,), max_epochs=2, seed=0).fit(X, y)
            assert torch.get_num_threads() == 2  # 4 cores, 2 pipelines busy (OMP_NUM_THREADS is 1 here)
            assert "threads" in dict(model.net_.callbacks)
            other_pipeline.kill()
            other_pipeline.wait()
            ThreadShare("mlp").on_epoch_begin(model.net_)
            assert torch.get_num_threads() == 4
        assert any(m.startswith("mlp: 4 threads from epoch ") for m in caplog.messages)
        assert "threads" not in dict(
            MLPRegressor(hidden=(8,), max_epochs=1, seed=0, threads=1).fit(X, y).net_.callbacks
        )  # asked for: kept
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# -- the thread budget of a command (every fit, explanation and scoring batch) -----------------
def test_free_cores_are_the_idle_share_of_the_machine_at_most_this_process_cores(monkeypatch):
    from modelmill.runtime import cores as c

    monkeypatch.setattr(c, "cores", lambda: 4)
    monkeypatch.setattr(c.os, "cpu_count", lambda: 8)
    samples = iter([(1000, 4000), (1100, 4400)])  # 100 of 400 jiffies idle: a quarter of 8 cores
    assert c.free_cores(0, times=lambda: next(samples)) == pytest.approx(2.0)
    samples = iter([(0, 0), (800, 800)])  # an idle machine: all 8, but this process may use 4
    assert c.free_cores(0, times=lambda: next(samples)) == 4
    assert c.free_cores(0, times=lambda: (_ for _ in ()).throw(OSError("no /proc"))) == 4


def test_the_budget_is_what_is_asked_else_omp_num_threads_else_the_free_cores_split_between_workers(monkeypatch):
    from modelmill.runtime.cores import thread_budget

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_budget(5) == (5, "asked for")
    assert thread_budget(None) == (3, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads, why = thread_budget(None, free=lambda: 1.6)
    assert threads == 2 and "1.6 of" in why and "cores free" in why
    assert thread_budget(None, workers=2, free=lambda: 3.7)[0] == 2
    assert thread_budget(None, free=lambda: 0.2)[0] == 1  # a saturated machine: one thread, never none


def test_a_fit_under_a_budget_uses_that_many_threads_read_back_with_threadpoolctl():
    """In a fresh process: OpenMP (scikit-learn's) and BLAS at the budget inside the block, and
    the budget given to the environment for what loads later."""
    code = """
import os
os.environ.pop("OMP_NUM_THREADS", None)
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_info
from modelmill.runtime.cores import apply_budget, limited, threads_in_use
import numpy as np
X, y = np.random.default_rng(0).normal(size=(300, 4)), np.arange(300) % 2
with limited(1):
    inside = {i["user_api"]: i["num_threads"] for i in threadpool_info()}
    HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    print("ONE", inside.get("openmp"), inside.get("blas"), threads_in_use())
with limited(2):
    print("TWO", threads_in_use())
apply_budget(1)
print("APPLIED", threads_in_use(), os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["ONE"] == "1 1 1"
    assert lines["TWO"] == "2"
    assert lines["APPLIED"] == "1 1 1"


@pytest.mark.flow
def test_run_takes_the_threads_asked_for_and_records_them(example_project, capsys, monkeypatch):
    from threadpoolctl import threadpool_limits

    from conftest import last_run, run_cli, write_example_spec
    from modelmill.config.settings import Settings
    from modelmill.runtime.cores import THREAD_VARIABLES

    for var in THREAD_VARIABLES:  # the command exports its budget: this test's process gets them back
        monkeypatch.setenv(var, "1")
    root, spec, data = example_project
    write_example_spec(root, spec, data)
    try:
        code, out, err = run_cli(capsys, "run", "my_cells", "--threads", "2")
        assert code == 0, out + err
        assert "threads: 2 per fit (asked for" in err
        assert last_run(Settings(), "my_cells").data.params["runtime.threads"] == "2"
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as a user who exports it
        code, out, err = run_cli(capsys, "run", "my_cells", "--force")
        assert code == 0, out + err
        assert "threads: 1 per fit (OMP_NUM_THREADS" in err
        assert last_run(Settings(), "my_cells").data.params["runtime.threads"] == "1"
        code, out, err = run_cli(capsys, "run", "my_cells", "--threads", "0")
        assert code != 0 and "--threads 0: give at least 1" in err
    finally:
        threadpool_limits(limits=1)
