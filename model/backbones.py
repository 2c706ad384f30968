"""Backbone adapters: one frozen interface for every encoder we probe.

``Backbone.forward(clip)`` takes a clip ``[B, C, T, H, W]``, float in [0, 1] (uint8 in [0, 255] is accepted and
divided by 255), normalises it the way the backbone expects and returns tokens ``[B, N, D]`` (no gradient, eval
mode always). ``token_grid(clip_shape)`` gives the ``(Tt, Hp, Wp)`` layout of those N tokens (time-major:
token ``t*Hp*Wp + h*Wp + w``), which dense probes use. ``identity()`` is a stable sha256 string that identifies
the weights and everything else that determines the tokens (model kind, architecture config, input size,
normalisation); it is computed once at construction from the weights **as loaded** (CPU, their stored dtype),
so moving or casting the module later does not change it. It is the feature-cache key.

Implementations:

- :class:`SurgMotionBackbone` — our pretraining checkpoint; the **EMA target encoder** (``target_encoder`` key of
  ``model.pt``) in a :class:`model.vit.VideoViT` built from the checkpoint's ``config.yaml`` (``model.encoder``);
  normalised with the config's ``model.pixel_mean/pixel_std`` (ImageNet by default).
- :class:`TimmFrameBackbone` — any timm image model applied per frame (``pretrained=False`` always: nothing is
  downloaded; weights come from a local file). Frames whose size differs from the model's input size are
  **resized** (bilinear, antialiased, aspect ratio not preserved) to it; the input size is ``img_size`` if given,
  else the model's ``patch_embed.img_size``, else timm's data config ``input_size``. Mean/std come from timm's
  data config (``resolve_model_data_config``). ViT-like models: ``forward_features`` → drop the
  ``num_prefix_tokens`` cls/register tokens → patch tokens; CNNs (``[B, C, h, w]`` features) → flattened
  feature map. Frames are concatenated over time → ``[B, T*Np, D]``, grid ``(T, Hp, Wp)``.
- :class:`RandomInitBackbone` — a seeded random :class:`model.vit.VideoViT` (the control).

:func:`build_backbone` parses ``random[:size]``, ``surgmotion:<checkpoint dir or model.pt>`` and
``timm:<model_name>[@<weights file>]``.
"""
from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import yaml
from torch import nn

from model.vit import IMAGENET_MEAN, IMAGENET_STD, VIT_SIZES, EncoderConfig, VideoViT, normalize_clip

MODEL_FILE = "model.pt"      # same names as orchestrator/checkpointing.py (model/ must not import orchestrator/)
CONFIG_FILE = "config.yaml"
_STRIP_PREFIXES = ("module.", "backbone.", "_orig_mod.")


def state_dict_sha256(state: Mapping[str, torch.Tensor], extra: Mapping[str, Any] | None = None) -> str:
    """sha256 over ``extra`` (as sorted JSON) and every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    h.update(json.dumps(dict(extra or {}), sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"\n{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """torch's CPU RNG forked and seeded: weight init is reproducible and the caller's RNG stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Backbone(nn.Module):
    """Frozen encoder: ``[B, C, T, H, W]`` in [0, 1] → tokens ``[B, N, D]``. Subclasses implement ``encode`` (on
    the [0, 1] float clip) and ``token_grid``, set ``embed_dim`` and call ``_finalize(identity_extra)``."""

    embed_dim: int
    kind: str = "backbone"

    def _finalize(self, extra: Mapping[str, Any], modules: Iterable[nn.Module] | None = None) -> None:
        self.requires_grad_(False)
        self.eval()
        state: dict[str, torch.Tensor] = {}
        for i, m in enumerate(modules if modules is not None else [self]):
            state.update({f"{i}.{k}": v for k, v in m.state_dict().items()})
        self._identity = f"{self.kind}-{state_dict_sha256(state, {'kind': self.kind, **extra})}"

    def train(self, mode: bool = True) -> "Backbone":
        return super().train(False)  # frozen: always eval mode (no dropout / drop-path)

    def identity(self) -> str:
        """Stable string identifying weights + everything else that determines the tokens (feature-cache key)."""
        return self._identity

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        raise NotImplementedError

    def num_tokens(self, clip_shape: Sequence[int]) -> int:
        tt, hp, wp = self.token_grid(clip_shape)
        return tt * hp * wp

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects a clip [B, C, T, H, W], got shape {tuple(clip.shape)}")
        if clip.dtype == torch.uint8:
            clip = clip.float().div_(255.0)
        with torch.no_grad():
            return self.encode(clip)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, identity={self._identity[:24]}..."


# ------------------------------------------------------------------------------------------------ video ViT
class VideoViTBackbone(Backbone):
    """A :class:`VideoViT` with its pixel normalisation (shared by the SurgMotion and random-init backbones)."""

    def __init__(self, encoder: VideoViT, pixel_mean: Sequence[float] = IMAGENET_MEAN,
                 pixel_std: Sequence[float] = IMAGENET_STD, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.embed_dim = encoder.embed_dim
        self.pixel_mean = tuple(float(v) for v in pixel_mean)
        self.pixel_std = tuple(float(v) for v in pixel_std)
        self._finalize({"encoder": encoder.cfg.model_dump(mode="json", exclude={"activation_checkpointing",
                                                                                "drop_path"}),
                        "mean": self.pixel_mean, "std": self.pixel_std, **(extra or {})}, [encoder])

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        return self.encoder.grid(clip_shape)

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        dtype = self.encoder.patch_embed.weight.dtype
        return self.encoder(normalize_clip(clip.to(dtype), self.pixel_mean, self.pixel_std))


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in _STRIP_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def infer_encoder_config(state: Mapping[str, torch.Tensor]) -> EncoderConfig:
    """EncoderConfig from a VideoViT state dict (used when a checkpoint has no config): width, depth, patch and
    tubelet sizes are read from the tensor shapes and matched against ``VIT_SIZES``."""
    w = state.get("patch_embed.weight")
    if w is None or w.ndim != 5:
        raise ValueError("cannot infer the encoder config: no 5-D 'patch_embed.weight' in the state dict")
    dim, chans, tubelet, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[2]), int(w.shape[3])
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    sizes = [n for n, s in VIT_SIZES.items() if s.embed_dim == dim and s.depth == depth]
    if not sizes:
        raise ValueError(f"cannot infer the encoder config: width {dim} / depth {depth} matches no size in VIT_SIZES")
    return EncoderConfig(size=sizes[0], patch_size=patch, tubelet_size=tubelet, in_chans=chans)


def _read_model_section(config: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The SurgMotionConfig dump (``model`` key of a pretrain config, or a bare SurgMotionConfig dump)."""
    where = "config"
    if isinstance(config, (str, Path)):
        where = str(config)
        try:
            data = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"{where}: cannot read the checkpoint config: {e}") from e
    elif hasattr(config, "model_dump"):
        data = config.model_dump(mode="json")
    else:
        data = dict(config)
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    section = data.get("model", data)
    if not isinstance(section, Mapping) or "encoder" not in section:
        raise ValueError(f"{where}: field 'model.encoder' is missing (not a SurgMotion pretrain config)")
    return dict(section), where


class SurgMotionBackbone(VideoViTBackbone):
    """The EMA target encoder of a SurgMotion checkpoint (see :meth:`from_checkpoint`)."""

    kind = "surgmotion"

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: str | Path | Mapping[str, Any] | None = None
                        ) -> "SurgMotionBackbone":
        """``path``: a checkpoint directory (``model.pt`` + ``config.yaml``) or a ``model.pt`` file. ``config``
        (a YAML path, a pretrain-config dict or a SurgMotionConfig) overrides the ``config.yaml`` found next to
        the weights; with neither, the encoder config is inferred from the weight shapes."""
        p = Path(path).expanduser()
        file = p / MODEL_FILE if p.is_dir() else p
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no SurgMotion model checkpoint here")
        if config is None and (file.parent / CONFIG_FILE).is_file():
            config = file.parent / CONFIG_FILE
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - corrupt / non-torch file
            raise ValueError(f"{file}: cannot load the checkpoint: {e}") from e
        if not isinstance(state, Mapping) or "target_encoder" not in state:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"{file}: not a SurgMotion checkpoint (no 'target_encoder' key; has {keys})")
        weights = _strip_prefixes(state["target_encoder"])
        if config is not None:
            section, where = _read_model_section(config)
            try:
                enc_cfg = EncoderConfig.model_validate(section["encoder"])
            except Exception as e:  # noqa: BLE001 - pydantic ValidationError, reported with the file
                raise ValueError(f"{where}: invalid field 'model.encoder': {e}") from e
            mean = section.get("pixel_mean", IMAGENET_MEAN)
            std = section.get("pixel_std", IMAGENET_STD)
        else:
            enc_cfg, mean, std = infer_encoder_config(weights), IMAGENET_MEAN, IMAGENET_STD
        encoder = VideoViT(enc_cfg.model_copy(update={"drop_path": 0.0, "activation_checkpointing": False}))
        try:
            encoder.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{file}: target_encoder weights do not fit encoder config {enc_cfg}: {e}") from e
        backbone = cls(encoder, mean, std)
        backbone.source = str(file)
        return backbone


class RandomInitBackbone(VideoViTBackbone):
    """A VideoViT with seeded random weights (V-JEPA init): the no-pretraining control."""

    kind = "random"

    def __init__(self, size: str = "tiny", seed: int = 0, patch_size: int = 16, tubelet_size: int = 2,
                 in_chans: int = 3) -> None:
        cfg = EncoderConfig(size=size, patch_size=patch_size, tubelet_size=tubelet_size, in_chans=in_chans)
        cfg.resolved()  # clear error for an unknown size
        with _seeded(seed):
            encoder = VideoViT(cfg)
        super().__init__(encoder, IMAGENET_MEAN, IMAGENET_STD)
        self.seed = seed


# ------------------------------------------------------------------------------------------------- spec
_SPEC_HELP = "use random[:<size>], surgmotion:<checkpoint dir or model.pt>, or timm:<model_name>[@<weights file>]"
_TIMM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")


class BackboneError(ValueError):
    """A backbone spec string is malformed or points at something that cannot be loaded; names the spec."""


def build_backbone(spec: str) -> Backbone:
    """Backbone from a spec string: ``random[:size]`` (seed 0), ``surgmotion:<path>``, ``timm:<name>[@<weights>]``.
    Any problem (bad syntax, unknown size/model, missing or unfitting file) raises :class:`BackboneError`
    (a ``ValueError``) naming the spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError(f"backbone spec {spec!r}: empty; {_SPEC_HELP}")
    kind, sep, arg = spec.strip().partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    try:
        if kind == "random":
            if sep and not arg:
                raise ValueError(f"missing size after 'random:'; sizes: {sorted(VIT_SIZES)}")
            size = arg or "tiny"
            if size not in VIT_SIZES:
                raise ValueError(f"unknown size {size!r}; sizes: {sorted(VIT_SIZES)}")
            return RandomInitBackbone(size=size)
        if kind == "surgmotion":
            if not arg:
                raise ValueError(f"missing checkpoint path; {_SPEC_HELP}")
            return SurgMotionBackbone.from_checkpoint(arg)
        if kind == "timm":
            name, at, weights = arg.partition("@")
            name, weights = name.strip(), weights.strip()
            if not name or not _TIMM_NAME.match(name) or (at and not weights):
                raise ValueError("expected timm:<model_name>[@<weights file>]")
            from model.backbones_timm import TimmFrameBackbone

            return TimmFrameBackbone(name, weights_path=weights or None)
    except (ValueError, FileNotFoundError) as e:
        raise BackboneError(f"backbone spec {spec!r}: {e}") from e
    raise BackboneError(f"backbone spec {spec!r}: unknown kind {kind!r}; {_SPEC_HELP}")


def __getattr__(name: str) -> Any:
    """``TimmFrameBackbone`` and ``load_weights_file`` live in :mod:`model.backbones_timm` (imported on first use,
    which keeps the import graph acyclic)."""
    if name in ("TimmFrameBackbone", "load_weights_file"):
        from model import backbones_timm

        return getattr(backbones_timm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: F822 (the timm names resolve through __getattr__)
    "Backbone", "RandomInitBackbone", "SurgMotionBackbone", "TimmFrameBackbone", "VideoViTBackbone",
    "build_backbone", "infer_encoder_config", "load_weights_file", "state_dict_sha256",
]
