"""Pretraining checkpoints: plain state dicts written atomically, loaded with ``weights_only=True``.

A checkpoint directory holds ``model.pt`` (encoder, predictor, EMA target — what probing and stage 2 need),
``train_state.pt`` (optimiser, step, data position, RNG states) and ``config.yaml``.

``train.init_from`` also takes a checkpoint file in the official V-JEPA 2 layout (V-JEPA 2's ``vitl.pt`` /
``vitg.pt``, SurgMotion's released ``.pt``): :func:`load_init_weights` recognises it by its key names and loads it
with :func:`model.backbones.vjepa2.load_vjepa2_modules` (encoder, target encoder, predictor; one clear error when
the model config does not fit it).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml

from model.backbones.video_vit import CONFIG_FILE, MODEL_FILE
from model.backbones.vjepa2 import is_vjepa2_layout, load_vjepa2_modules, read_checkpoint
from model.jepa import SurgMotion  # the checkpoint layout SurgMotionBackbone reads
from orchestrator.storage import StoragePath, is_remote, resolve_storage

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
    _load_surgmotion_state(model, torch.load(file, map_location="cpu", weights_only=True), file, strict)


def _load_surgmotion_state(model: SurgMotion, state: dict[str, Any], file: Path, strict: bool = True) -> None:
    missing = {"encoder", "predictor", "target_encoder"} - set(state)
    if missing:
        raise ValueError(f"{file}: not a SurgMotion checkpoint (missing {sorted(missing)})")
    model.encoder.load_state_dict(state["encoder"], strict=strict)
    model.predictor.load_state_dict(state["predictor"], strict=strict)
    model.target_encoder.load_state_dict(state["target_encoder"], strict=strict)


def load_init_weights(model: SurgMotion, path: Path) -> str:
    """``train.init_from``'s weights into a fresh model: our ``model.pt`` (or its directory), or a file in the
    official V-JEPA 2 layout. Returns a one-line account of what was loaded."""
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"train.init_from: {file}: no model checkpoint here")
    ckpt = read_checkpoint(file)
    if is_vjepa2_layout(ckpt):
        return load_vjepa2_modules(ckpt, f"train.init_from {file}", model.encoder, model.target_encoder,
                                   model.predictor)
    _load_surgmotion_state(model, ckpt, file)
    return "SurgMotion model.pt: encoder, predictor, target_encoder"


def load_train_state(directory: Path) -> dict[str, Any]:
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


def resolve_init(init_from: str, tracking_uri: str, dest: StoragePath) -> str:
    """A stage-1 checkpoint given as a directory, a ``model.pt`` path, an official V-JEPA 2 checkpoint file, a
    bucket URI or an MLflow run id → the location (path or URI) of a model file the Train workers can read
    (:func:`load_init_weights` reads either layout). Local files and MLflow artifacts are copied into ``dest``, the
    run's storage folder (``<storage>/<name>/init``, which every node Train runs on can reach), so the workers never
    read a path that exists on the driver's disk only; a copy of the same size and no older is reused."""
    if is_remote(init_from):
        remote = resolve_storage(init_from)
        if not remote.exists():
            raise FileNotFoundError(f"train.init_from: {init_from}: not found")
        return (remote / MODEL_FILE).uri if remote.info().type.name == "Directory" else remote.uri
    p = Path(init_from).expanduser()
    if p.exists():
        src = p / MODEL_FILE if p.is_dir() else p
        copy = dest / src.name
        have, st = copy.info(), src.stat()
        if not (have.type.name == "File" and have.size == st.st_size and have.mtime is not None
                and have.mtime.timestamp() >= st.st_mtime - 1e-3):
            copy.upload(src)
        return copy.uri
    if RUN_ID_RE.match(init_from):
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=init_from, artifact_path=f"checkpoint/{MODEL_FILE}",
                                                        dst_path=tmp, tracking_uri=tracking_uri)
            (dest / MODEL_FILE).upload(Path(local))
        return (dest / MODEL_FILE).uri
    raise FileNotFoundError(f"train.init_from: {init_from!r} is neither an existing path, a bucket URI nor an MLflow "
                            "run id")
