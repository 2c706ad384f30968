"""Exact resume: a run interrupted after step k and resumed ends bit-identical to an uninterrupted run.

What makes it exact (docs/reliability.md): weights, EMA target and AdamW state in the checkpoint; the lr is a pure
function of the step; clip descriptors and crops depend only on (seed, epoch, sample index) and the datasource
restarts at the checkpoint's data position with order preserved; masks are seeded by (seed, rank, step, micro-step);
the torch RNG state is restored.
"""
from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from conftest import tiny_overrides

from orchestrator.config import load_config
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.driver import run_pretraining

pytestmark = pytest.mark.slow


def final_state(result_dir: str) -> tuple[dict, dict]:
    d = Path(result_dir)
    return torch.load(d / "model.pt", weights_only=True), torch.load(d / "train_state.pt", weights_only=True)


def assert_same_tensors(a: object, b: object, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_interrupted_run_resumes_bit_identical(ray_cluster: str, tiny_corpus: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def run(name: str, *extra: str):
        over = tiny_overrides(tiny_corpus, name, steps=6, workers=1) + ["train.checkpoint_every=100", *extra]
        return run_pretraining(load_config(PretrainConfig, None, over))

    straight = run("straight")
    stopped = run("interrupted", "train.stop_after_step=3")
    assert stopped.steps == 3
    resumed = run("interrupted")
    assert resumed.steps == 6 and resumed.run_id == stopped.run_id

    w_a, s_a = final_state(straight.checkpoint_dir)
    w_b, s_b = final_state(resumed.checkpoint_dir)
    assert_same_tensors(w_a, w_b, "weights")  # encoder, predictor and EMA target
    assert_same_tensors(s_a["optimizer"], s_b["optimizer"], "optimizer")
    assert (s_a["step"], s_a["samples"]) == (s_b["step"], s_b["samples"]) == (6, 24)

    client = mlflow.MlflowClient(straight.tracking_uri)
    for key in ("loss", "lr"):
        a = {m.step: m.value for m in client.get_metric_history(straight.run_id, key)}
        b = {m.step: m.value for m in client.get_metric_history(resumed.run_id, key)}
        assert sorted(b) == [1, 2, 3, 4, 5, 6]
        assert a == b, key  # same data, masks and lr at every step, before and after the interruption
