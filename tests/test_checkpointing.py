"""Checkpoint files: atomic writes, weights-only loading, stage-2 init from a path or an MLflow run id (T=16 → 64)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.jepa import SurgMotion, SurgMotionConfig, surgmotion_param_groups
from model.predictor import PredictorConfig
from model.vit import EncoderConfig
from orchestrator.pretrain.checkpoint import (
    atomic_save,
    load_model_weights,
    load_train_state,
    resolve_init,
    save_checkpoint,
)
from orchestrator.storage import resolve_storage
from orchestrator.tracking import log_artifact, start_or_resume_run


def tiny() -> SurgMotion:
    cfg = SurgMotionConfig(encoder=EncoderConfig(size="tiny", patch_size=8), predictor=PredictorConfig(depth=1))
    m = SurgMotion(cfg)
    for enc in (m.encoder, m.target_encoder):
        enc.blocks = enc.blocks[:1]
    return m


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = tiny()
    opt = torch.optim.AdamW(surgmotion_param_groups(a, 0.04))
    a(torch.rand(1, 3, 4, 16, 16))["loss"].backward()
    opt.step()
    save_checkpoint(tmp_path / "ck", a, opt, {"step": 7, "samples": 28}, {"name": "x"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.yaml", "model.pt", "train_state.pt"]
    torch.manual_seed(1)
    b = tiny()
    load_model_weights(b, tmp_path / "ck")
    for sa, sb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(sa, sb)
    state = load_train_state(tmp_path / "ck")
    assert state["step"] == 7 and state["samples"] == 28 and "torch" in state["rng"]
    opt2 = torch.optim.AdamW(surgmotion_param_groups(b, 0.04))
    opt2.load_state_dict(state["optimizer"])


def test_stage2_loads_stage1_weights_and_runs_at_t64(tmp_path: Path) -> None:
    a = tiny()
    opt = torch.optim.AdamW(surgmotion_param_groups(a, 0.04))
    save_checkpoint(tmp_path / "s1", a, opt, {"step": 1, "samples": 4}, {})
    b = tiny()
    dest = resolve_storage(tmp_path / "run" / "init")
    local = Path(resolve_init(str(tmp_path / "s1"), "unused", dest))
    assert local == tmp_path / "run" / "init" / "model.pt"  # in the run's storage folder, which every node sees
    assert local.read_bytes() == (tmp_path / "s1" / "model.pt").read_bytes()
    before = local.stat().st_ino
    assert resolve_init(str(tmp_path / "s1" / "model.pt"), "unused", dest) == str(local)
    assert local.stat().st_ino == before  # the same file again: the copy is reused, not rewritten
    torch.save({"other": torch.zeros(3)}, tmp_path / "s1" / "model.pt")  # a changed source is copied again
    assert resolve_init(str(tmp_path / "s1"), "unused", dest) == str(local) and local.stat().st_ino != before
    assert local.read_bytes() == (tmp_path / "s1" / "model.pt").read_bytes()
    save_checkpoint(tmp_path / "s1", a, opt, {"step": 1, "samples": 4}, {})
    assert resolve_init(str(tmp_path / "s1"), "unused", dest) == str(local)
    load_model_weights(b, local)
    assert torch.equal(a.target_encoder.patch_embed.weight, b.target_encoder.patch_embed.weight)
    out = b(torch.rand(1, 3, 64, 16, 16), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"])


def test_init_from_mlflow_run_id(tmp_path: Path) -> None:
    a = tiny()
    save_checkpoint(tmp_path / "s1", a, torch.optim.AdamW(a.parameters()), {"step": 1, "samples": 4}, {})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, resumed = start_or_resume_run(uri, "exp", "stage1")
    assert not resumed
    log_artifact(uri, run_id, tmp_path / "s1" / "model.pt", "checkpoint")
    local = Path(resolve_init(run_id, uri, resolve_storage(tmp_path / "dl")))
    assert local == tmp_path / "dl" / "model.pt"
    b = tiny()
    load_model_weights(b, local)
    assert torch.equal(a.encoder.patch_embed.weight, b.encoder.patch_embed.weight)
    assert start_or_resume_run(uri, "exp", "stage1") == (run_id, True)  # same name → same run


def test_init_from_nonsense_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="init_from"):
        resolve_init("no/such/checkpoint", "sqlite:///x.db", resolve_storage(tmp_path))
    (tmp_path / "other.pt").write_bytes(b"")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SurgMotion checkpoint"):
        load_model_weights(tiny(), tmp_path / "other.pt")


def test_atomic_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.pt"
    atomic_save({"w": torch.ones(2)}, target)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        atomic_save({"w": torch.zeros(2)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left behind
