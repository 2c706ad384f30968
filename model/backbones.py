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
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
import yaml
from einops import rearrange
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


# ---------------------------------------------------------------------------------------------------- timm
def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A local state dict: ``.safetensors`` via safetensors, anything else via ``torch.load(weights_only=True)``;
    common wrappers (``state_dict``/``model``/``module`` keys, ``module.``/``backbone.`` prefixes) are unwrapped."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: weights file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(p), device="cpu")
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{p}: cannot read weights: {e}") from e
    for key in ("state_dict", "model", "module", "teacher"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{p}: not a state dict of tensors")
    return _strip_prefixes(state)


class TimmFrameBackbone(Backbone):
    """A timm image model applied to every frame; patch tokens concatenated over time → ``[B, T*Np, D]``.

    ``img_size`` sets the model's input size (ViTs: passed to ``timm.create_model``); without weights the random
    init is seeded with ``seed`` so the identity is stable (the identity hashes the weights, not the seed or path:
    the same weights give the same identity however they were obtained). ``frame_chunk`` bounds how many frames go
    through the model at once (default: all ``B*T``). Extra keyword arguments go to ``timm.create_model``.
    """

    kind = "timm"

    def __init__(self, model_name: str, weights_path: str | Path | None = None, img_size: int | None = None,
                 seed: int = 0, frame_chunk: int | None = None, **model_kwargs: Any) -> None:
        super().__init__()
        import timm
        from timm.data import resolve_model_data_config

        kwargs = dict(model_kwargs)
        if img_size is not None:
            kwargs["img_size"] = img_size
        try:
            with _seeded(seed):
                model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        except Exception as e:  # noqa: BLE001 - unknown name / bad kwargs
            raise ValueError(f"timm model {model_name!r}: cannot create it: {e}") from e
        self.model_name = model_name
        self.weights_path = None if weights_path is None else str(Path(weights_path).expanduser())
        if self.weights_path is not None:
            self._load(model, self.weights_path)
        self.model = model
        self.frame_chunk = frame_chunk
        data_cfg = resolve_model_data_config(model)
        pe_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if img_size is not None:
            size = (img_size, img_size)
        elif pe_size is not None:
            size = tuple(pe_size)
        else:
            size = tuple(data_cfg["input_size"][-2:])
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.pixel_mean = tuple(float(v) for v in data_cfg["mean"])
        self.pixel_std = tuple(float(v) for v in data_cfg["std"])
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        self.embed_dim = int(model.num_features)
        self._grid_hw = self._spatial_grid(model)
        self._finalize({"model": model_name, "input_size": self.input_size, "mean": self.pixel_mean,
                        "std": self.pixel_std, "kwargs": kwargs}, [model])

    @staticmethod
    def _load(model: nn.Module, path: str) -> None:
        state = load_weights_file(path)
        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:  # timm's own key remapping / pos-embed resampling for this architecture
            try:
                state = filter_fn(state, model)
            except Exception:  # noqa: BLE001 - a filter that does not apply: load the raw dict
                pass
        own = model.state_dict()
        classifier = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or "head"
        classifiers = classifier if isinstance(classifier, (list, tuple)) else [classifier]
        state = {k: v for k, v in state.items()
                 if k in own or not any(k.startswith(c + ".") for c in classifiers)}  # num_classes=0: no head
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not fit timm model {type(model).__name__}: {e}") from e

    def _spatial_grid(self, model: nn.Module) -> tuple[int, int]:
        pe = getattr(model, "patch_embed", None)
        grid = getattr(pe, "grid_size", None)
        if grid is not None and not getattr(pe, "dynamic_img_size", False):
            return int(grid[0]), int(grid[1])
        with torch.no_grad():  # CNNs and dynamic-size models: one dummy frame tells the feature-map size
            feats = model.forward_features(torch.zeros(1, 3, *self.input_size))
        if feats.ndim == 4:
            return int(feats.shape[-2]), int(feats.shape[-1])
        if pe is not None and hasattr(pe, "dynamic_feat_size"):
            return tuple(int(v) for v in pe.dynamic_feat_size(self.input_size))  # type: ignore[return-value]
        n = feats.shape[1] - self.num_prefix_tokens
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"timm model {self.model_name!r}: cannot tell the token grid of {n} tokens")
        return side, side

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        return int(clip_shape[-3]), self._grid_hw[0], self._grid_hw[1]

    def _frames_to_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(frames)
        if feats.ndim == 4:  # CNN feature map [n, C, h, w]
            return rearrange(feats, "n c h w -> n (h w) c")
        return feats[:, self.num_prefix_tokens:]

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        b, _, t = clip.shape[:3]
        dtype = next(self.model.parameters()).dtype
        frames = rearrange(clip, "b c t h w -> (b t) c h w").to(dtype)
        if tuple(frames.shape[-2:]) != self.input_size:
            frames = F.interpolate(frames, size=self.input_size, mode="bilinear", align_corners=False,
                                   antialias=True)
        mean = torch.tensor(self.pixel_mean, device=frames.device, dtype=dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.pixel_std, device=frames.device, dtype=dtype).view(1, -1, 1, 1)
        frames = (frames - mean) / std
        chunk = self.frame_chunk or frames.shape[0]
        tokens = torch.cat([self._frames_to_tokens(frames[i:i + chunk]) for i in range(0, frames.shape[0], chunk)])
        return rearrange(tokens, "(b t) n d -> b (t n) d", b=b, t=t)


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
            return TimmFrameBackbone(name, weights_path=weights or None)
    except (ValueError, FileNotFoundError) as e:
        raise BackboneError(f"backbone spec {spec!r}: {e}") from e
    raise BackboneError(f"backbone spec {spec!r}: unknown kind {kind!r}; {_SPEC_HELP}")


__all__ = [
    "Backbone", "RandomInitBackbone", "SurgMotionBackbone", "TimmFrameBackbone", "VideoViTBackbone",
    "build_backbone", "infer_encoder_config", "load_weights_file", "state_dict_sha256",
]
