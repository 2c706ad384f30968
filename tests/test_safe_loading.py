"""Checkpoints, weights files and feature-cache shards never execute pickled code: a file carrying a pickled
callable is refused (``torch.load(weights_only=True)`` / ``np.load(allow_pickle=False)``) and the callable never
runs. Dropping either flag makes these tests fail (the marker file appears or no error is raised)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model.backbones.timm_frames import TimmFrameBackbone
from model.backbones.video_vit import SurgMotionBackbone
from orchestrator.data.views import Preprocessing
from orchestrator.pretrain.checkpoint import load_model_weights, load_train_state
from orchestrator.probe.features import INDEX_FILE, CacheIndex, load_features

PRE = Preprocessing(frames=1, sample_fps=1.0, short_side=16, crop=16)


def _drop_marker(path: str) -> dict[str, Any]:
    Path(path).write_text("code ran")
    return {}


class Payload:
    """Unpickling this calls ``_drop_marker(marker)``: what an attacker's checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_drop_marker, (self.marker,))


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned.txt"


def _evil_state(marker: Path) -> dict[str, Any]:
    return {"encoder": Payload(marker), "predictor": {}, "target_encoder": {}, "step": 3}


def test_pickled_code_in_model_checkpoint_never_runs(tmp_path: Path, marker: Path) -> None:
    torch.save(_evil_state(marker), tmp_path / "model.pt")
    with pytest.raises(Exception, match="(?i)weights only|unsupported global|_drop_marker"):
        load_model_weights(torch.nn.Module(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="cannot load the checkpoint"):
        SurgMotionBackbone.from_checkpoint(tmp_path / "model.pt")
    assert not marker.exists()


def test_pickled_code_in_train_state_or_weights_file_never_runs(tmp_path: Path, marker: Path) -> None:
    torch.save({"optimizer": Payload(marker)}, tmp_path / "train_state.pt")
    with pytest.raises(Exception, match="(?i)weights only|unsupported global|_drop_marker"):
        load_train_state(tmp_path)
    torch.save({"state_dict": Payload(marker)}, tmp_path / "weights.pth")
    with pytest.raises(ValueError, match="cannot read weights"):
        TimmFrameBackbone("vit_tiny_patch16_224", weights_path=tmp_path / "weights.pth", img_size=32)
    assert not marker.exists()


def test_pickled_feature_shard_is_refused(tmp_path: Path, marker: Path) -> None:
    entry = tmp_path / "entry"
    entry.mkdir()
    np.save(entry / "rows_00000.npy", np.arange(1))
    np.save(entry / "shard_00000.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    index = CacheIndex(key="k", backbone="random:tiny", backbone_identity="x", benchmark="b", task="phase",
                       split="train", preprocessing=PRE, num_samples=1, token_shape=[1, 1], token_grid=[1, 1, 1],
                       shards=["00000"], sample_ids=["s"], video_ids=["v"], times=[None], labels=[0])
    (entry / INDEX_FILE).write_text(index.model_dump_json())
    with pytest.raises(ValueError, match="(?i)pickle"):
        load_features(entry)
    assert not marker.exists()
