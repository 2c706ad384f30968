"""Pretraining checkpoints: plain state dicts written atomically, loaded with ``weights_only=True``.

A checkpoint directory holds ``model.pt`` (encoder, predictor, EMA target — what probing and stage 2 need),
``train_state.pt`` (optimiser, step, data position, RNG states) and ``config.yaml``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml

from model.backbones.video_vit import CONFIG_FILE, MODEL_FILE
from model.jepa import SurgMotion  # the checkpoint layout SurgMotionBackbone reads

STATE_FILE = "train_state.pt"
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name in the same folder, fsync, then rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def model_state(model: SurgMotion) -> dict[str, dict[str, torch.Tensor]]:
    return {"encoder": model.encoder.state_dict(), "predictor": model.predictor.state_dict(),
            "target_encoder": model.target_encoder.state_dict()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, model: SurgMotion, optimizer: torch.optim.Optimizer,
                    train_state: dict[str, Any], config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save(model_state(model), directory / MODEL_FILE)
    atomic_save({"optimizer": optimizer.state_dict(), "rng": rng_state(), **train_state}, directory / STATE_FILE)
    tmp = directory / f".{CONFIG_FILE}.tmp"
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, directory / CONFIG_FILE)
    return directory


def load_model_weights(model: SurgMotion, path: Path, strict: bool = True) -> None:
    """Load ``model.pt`` (a file, or a checkpoint directory holding one) into a SurgMotion module."""
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no model checkpoint here")
    state = torch.load(file, map_location="cpu", weights_only=True)
    missing = {"encoder", "predictor", "target_encoder"} - set(state)
    if missing:
        raise ValueError(f"{file}: not a SurgMotion checkpoint (missing {sorted(missing)})")
    model.encoder.load_state_dict(state["encoder"], strict=strict)
    model.predictor.load_state_dict(state["predictor"], strict=strict)
    model.target_encoder.load_state_dict(state["target_encoder"], strict=strict)


def load_train_state(directory: Path) -> dict[str, Any]:
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


def resolve_init(init_from: str, tracking_uri: str, dest: Path) -> Path:
    """A stage-1 checkpoint given as a directory, a ``model.pt`` path or an MLflow run id → local model file."""
    p = Path(init_from).expanduser()
    if p.exists():
        return p / MODEL_FILE if p.is_dir() else p
    if RUN_ID_RE.match(init_from):
        dest.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(run_id=init_from, artifact_path=f"checkpoint/{MODEL_FILE}",
                                                    dst_path=str(dest), tracking_uri=tracking_uri)
        return Path(local)
    raise FileNotFoundError(f"train.init_from: {init_from!r} is neither an existing path nor an MLflow run id")
