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
