"""Video models saved in the Hugging Face ``transformers`` format, as frozen backbones (:class:`HFVideoBackbone`).

**The directory.** What ``save_pretrained`` writes or ``huggingface-cli download <repo> --local-dir <dir>`` fetches:
``config.json`` (its ``model_type`` picks the family) and ``model.safetensors`` / ``pytorch_model.bin`` (or their
sharded ``*.index.json``); an optional ``preprocessor_config.json`` / ``video_preprocessor_config.json`` gives the
normalisation. It is read with ``from_pretrained(dir, local_files_only=True, trust_remote_code=False)``: nothing is
downloaded and no code from the directory runs. ``transformers`` is an optional extra (``.[video-baselines]``),
imported only when such a backbone is built.

**Families** (:data:`FAMILIES`): ``videomae`` (``VideoMAEModel``: VideoMAE, and checkpoints of
``VideoMAEForPreTraining`` / ``VideoMAEForVideoClassification``, whose encoder it takes), ``vivit``
(``VivitModel``), ``timesformer`` (``TimesformerModel``) and ``vjepa2`` (``VJEPA2Model``, encoder only). Every
weight the tokens pass through must come from the file (decoders, heads, poolers and the V-JEPA 2 predictor may be
absent or left over); otherwise one error names the missing keys.

**Input.** Spatially the clip is resized (bilinear, antialiased, aspect ratio not kept) to the model's
``image_size`` (``crop_size`` for V-JEPA 2: its RoPE positions assume it). The families with a fixed number of
frames (VideoMAE, ViViT, TimeSformer: learned or fixed tables of ``num_frames`` positions) get exactly
``num_frames`` frames, picked at ``round(linspace(0, T-1, num_frames))`` (first and last frame kept; fewer frames
repeat, more are subsampled); V-JEPA 2 takes any number of frames. Normalisation follows the processor config
(``do_rescale`` / ``rescale_factor`` / ``offset`` / ``do_normalize`` / ``image_mean`` / ``image_std``, as the
processor computes it from 0-255 pixels), else ImageNet mean/std.

**Output.** ``last_hidden_state`` without class tokens, reordered time-major (TimeSformer's is patch-major) →
``[B, Tt*Hp*Wp, D]``. VideoMAE with ``use_mean_pooling`` (the released checkpoints) has no final LayerNorm in
``VideoMAEModel``; its tokens are the last block's output, as transformers returns them.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from model.backbones.base import Backbone
from model.vit import IMAGENET_MEAN, IMAGENET_STD, normalize_clip

INSTALL_HINT = 'install the optional extra: pip install -e ".[video-baselines]"'
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
# config keys that do not change the tokens (names, versions, label maps, output switches, storage dtype)
VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype",
                                  "id2label", "label2id", "return_dict", "output_attentions", "output_hidden_states",
                                  "problem_type", "_commit_hash", "_attn_implementation_autoset"})


@dataclass(frozen=True)
class Family:
    """How one ``model_type`` is called and read: the model class, its input name, the config keys of its input
    size (``frames_key`` None: any number of frames), class tokens to drop, token order, and the submodules the
    tokens never pass through (not required from the file, not hashed)."""

    model_class: str
    input_name: str
    size_key: str
    frames_key: str | None
    cls_tokens: int = 0
    patch_major: bool = False
    unused: tuple[str, ...] = ()
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    "videomae": Family("VideoMAEModel", "pixel_values", "image_size", "num_frames"),
    "vivit": Family("VivitModel", "pixel_values", "image_size", "num_frames", cls_tokens=1, unused=("pooler",)),
    "timesformer": Family("TimesformerModel", "pixel_values", "image_size", "num_frames", cls_tokens=1,
                          patch_major=True),
    "vjepa2": Family("VJEPA2Model", "pixel_values_videos", "crop_size", None, unused=("predictor",),
                     forward_kwargs={"skip_predictor": True}),
}


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[-2]), int(value[-1])
    return int(value), int(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read it as JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def check_hf_dir(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The ``model_type`` and ``config.json`` of a checkpoint directory, after the cheap checks (a directory, a
    supported ``model_type``, a weights file, ``transformers`` installed); no weights are read."""
    root = Path(path).expanduser()
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise FileNotFoundError(f"{root} {what}; expected a Hugging Face checkpoint directory (config.json + "
                                f"model.safetensors), e.g. from save_pretrained or huggingface-cli download")
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root}: no config.json; expected a Hugging Face checkpoint directory")
    config = _read_json(root / "config.json")
    model_type = str(config.get("model_type", ""))
    if model_type not in FAMILIES:
        custom = " (its auto_map names custom code, which is never run here)" if "auto_map" in config else ""
        raise ValueError(f"{root}/config.json: model_type {model_type!r}{custom} is not supported; supported video "
                         f"families: {sorted(FAMILIES)}")
    if not any((root / f).is_file() for f in WEIGHT_FILES):
        raise FileNotFoundError(f"{root}: no weights file (one of {list(WEIGHT_FILES)})")
    if importlib.util.find_spec("transformers") is None:
        raise ValueError(f"{root}: loading a {model_type} checkpoint needs transformers, which is not installed; "
                         f"{INSTALL_HINT}")
    return model_type, config


def processor_normalisation(root: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std for a [0, 1] clip equivalent to the processor config's rescale (+ ``offset``) and normalise steps on
    0-255 pixels; ImageNet mean/std when the directory has no processor config."""
    file = next((root / f for f in PROCESSOR_FILES if (root / f).is_file()), None)
    if file is None:
        return IMAGENET_MEAN, IMAGENET_STD
    cfg = _read_json(file)
    scale = 255.0 * float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 255.0
    shift = 1.0 if cfg.get("do_rescale", True) and cfg.get("offset", False) else 0.0
    normalize = cfg.get("do_normalize", True)
    mean = [float(v) for v in cfg.get("image_mean", IMAGENET_MEAN)] if normalize else [0.0, 0.0, 0.0]
    std = [float(v) for v in cfg.get("image_std", IMAGENET_STD)] if normalize else [1.0, 1.0, 1.0]
    if len(mean) != len(std) or not all(s > 0 for s in std):
        raise ValueError(f"{file}: image_mean {mean} / image_std {std} do not form a normalisation")
    # (x * scale - shift - m) / s  ==  (x - (m + shift) / scale) / (s / scale)
    return tuple((m + shift) / scale for m in mean), tuple(s / scale for s in std)


def load_hf_model(root: Path, family: Family) -> nn.Module:
    """``<family.model_class>.from_pretrained(root, local_files_only=True)``, insisting that every weight outside
    ``family.unused`` came from the file."""
    try:
        import transformers  # deferred: transformers is an optional extra
    except ImportError as e:
        raise ValueError(f"{root}: transformers is not installed ({e}); {INSTALL_HINT}") from e
    cls = getattr(transformers, family.model_class, None)
    if cls is None:
        raise ValueError(f"{root}: transformers {transformers.__version__} has no {family.model_class}; "
                         f"{INSTALL_HINT}")
    try:
        model, info = cls.from_pretrained(str(root), local_files_only=True, trust_remote_code=False,
                                          output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - unreadable weights, a config the class rejects
        raise ValueError(f"{root}: {family.model_class}.from_pretrained failed: {e}") from e
    unused = tuple(f"{u}." for u in family.unused)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(unused))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise ValueError(f"{root}: the weights do not fit {family.model_class} as config.json describes it: "
                         f"missing {missing[:8]}, shape mismatches {mismatched[:4]}")
    module: nn.Module = model
    return module


def _grid_params(config: Any, family: Family) -> tuple[int, tuple[int, int], tuple[int, int], int | None]:
    """Tubelet length, spatial patch, input size (H, W) and fixed frame count (None: any) from a config."""
    tubelet = getattr(config, "tubelet_size", 1)
    if isinstance(tubelet, (list, tuple)):  # ViViT: [t, h, w]
        t, patch = int(tubelet[0]), _pair(tubelet[1:])
    else:
        t, patch = int(tubelet), _pair(config.patch_size)
    size = _pair(getattr(config, family.size_key))
    frames = None if family.frames_key is None else int(getattr(config, family.frames_key))
    return t, patch, size, frames


def config_identity(config: Any) -> dict[str, Any]:
    """The config's fields that determine the tokens (JSON-safe)."""
    return {k: v for k, v in config.to_dict().items() if k not in VOLATILE_CONFIG_KEYS}


class HFVideoBackbone(Backbone):
    """A ``transformers`` video model from a local checkpoint directory, frozen: ``[B, C, T, H, W]`` in [0, 1] →
    resized / frame-resampled, normalised → patch tokens ``[B, Tt*Hp*Wp, D]`` (module docstring)."""

    kind = "hf"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        root = Path(path).expanduser().resolve()
        self.model_type, _ = check_hf_dir(root)
        self.family = FAMILIES[self.model_type]
        self.source = str(root)
        self.model = load_hf_model(root, self.family)
        config = getattr(self.model, "config")
        self.tubelet, self.patch, self.input_size, self.num_frames = _grid_params(config, self.family)
        if self.input_size[0] % self.patch[0] or self.input_size[1] % self.patch[1]:
            raise ValueError(f"{root}/config.json: input size {self.input_size} is not a multiple of the patch "
                             f"{self.patch}")
        self.pixel_mean, self.pixel_std = processor_normalisation(root)
        self.embed_dim = int(config.hidden_size)
        used = [m for name, m in self.model.named_children() if name not in self.family.unused]
        self._finalize({"model_type": self.model_type, "config": config_identity(config), "mean": self.pixel_mean,
                        "std": self.pixel_std, "input_size": self.input_size, "num_frames": self.num_frames,
                        "resample": "frames:round-linspace,space:bilinear-antialias"}, used)

    def frames_for(self, t: int) -> int:
        """Frames the model sees for a clip of ``t`` frames."""
        return self.num_frames if self.num_frames is not None else max(t, self.tubelet)

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        t = self.frames_for(int(clip_shape[-3]))
        return t // self.tubelet, self.input_size[0] // self.patch[0], self.input_size[1] // self.patch[1]

    def model_input(self, clip: torch.Tensor) -> torch.Tensor:
        """The normalised ``[B, T', C, H', W']`` tensor the model is called with (frames resampled, resized)."""
        b, _, t = clip.shape[:3]
        dtype = next(self.model.parameters()).dtype
        if self.num_frames is not None and t != self.num_frames:
            idx = torch.linspace(0, t - 1, self.num_frames, device=clip.device).round().long()
            clip = clip.index_select(2, idx)
        x = normalize_clip(clip.float(), self.pixel_mean, self.pixel_std)
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        if tuple(frames.shape[-2:]) != self.input_size:
            frames = F.interpolate(frames, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        return rearrange(frames, "(b t) c h w -> b t c h w", b=b).to(dtype)

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.model_input(clip)
        out = self.model(**{self.family.input_name: x}, **self.family.forward_kwargs)
        tokens: torch.Tensor = out.last_hidden_state[:, self.family.cls_tokens:]
        tt, hp, wp = self.token_grid(clip.shape)
        if tokens.shape[1] != tt * hp * wp:
            raise ValueError(f"{self.model_type}: {tokens.shape[1]} tokens, expected grid {(tt, hp, wp)}")
        if self.family.patch_major:
            tokens = rearrange(tokens, "b (n t) d -> b (t n) d", t=tt)
        return tokens


__all__ = ["FAMILIES", "HFVideoBackbone", "check_hf_dir", "load_hf_model", "processor_normalisation"]
