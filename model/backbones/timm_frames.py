"""timm image models as frozen per-frame backbones (:class:`TimmFrameBackbone`).

Nothing is downloaded. Without weights the model is timm's random init (seeded). A local weights file is read by
timm's reader (``timm.models.load_state_dict``: ``.safetensors`` or a ``torch.load(weights_only=True)`` file,
``state_dict`` / ``model`` (and EMA) wrappers and ``module.`` prefixes unwrapped) and passed through the
architecture's own checkpoint filter (key remapping, position-embedding resampling); every weight of the model must
come from the file (the file's classifier head is dropped: ``num_classes=0``). The interface:
:mod:`model.backbones.base`.

Frames whose size differs from the model's input size are **resized** (bilinear, antialiased, aspect ratio not
preserved) to it; the input size is ``img_size`` if given, else the model's ``patch_embed.img_size``, else timm's
data config ``input_size``. Mean/std come from timm's data config (``resolve_model_data_config``). ViT-like models:
``forward_features`` → drop the ``num_prefix_tokens`` cls/register tokens → patch tokens; CNNs (``[B, C, h, w]``
features) → flattened feature map. Frames are concatenated over time → ``[B, T*Np, D]``, grid ``(T, Hp, Wp)``.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from einops import rearrange
from timm.data import resolve_model_data_config
from timm.models import load_state_dict
from torch import nn

from model.backbones.base import Backbone, seeded


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
        kwargs = dict(model_kwargs)
        if img_size is not None:
            kwargs["img_size"] = img_size
        self.model_name = model_name
        self.weights_path = None if weights_path is None else str(Path(weights_path).expanduser())
        model = self._create(model_name, self.weights_path, seed, kwargs)
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
        self.embed_dim = int(getattr(model, "num_features"))
        self._grid_hw = self._spatial_grid(model)
        self._finalize({"model": model_name, "input_size": self.input_size, "mean": self.pixel_mean,
                        "std": self.pixel_std, "kwargs": kwargs}, [model])

    @staticmethod
    def _create(name: str, weights: str | None, seed: int, kwargs: dict[str, Any]) -> nn.Module:
        """``timm.create_model`` (seeded, no head), then ``weights`` (if given) through timm's ``load_checkpoint``."""
        if not timm.is_model(name):
            raise ValueError(f"timm model {name!r}: unknown (see timm.list_models())")
        try:
            with seeded(seed):
                model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except Exception as e:  # noqa: BLE001 - bad kwargs for this architecture
            raise ValueError(f"timm model {name!r}: cannot create it: {e}") from e
        if weights is not None:
            _load_weights(model, name, weights)
        return model

    def _spatial_grid(self, model: nn.Module) -> tuple[int, int]:
        pe = getattr(model, "patch_embed", None)
        grid = getattr(pe, "grid_size", None)
        if grid is not None and not getattr(pe, "dynamic_img_size", False):
            return int(grid[0]), int(grid[1])
        with torch.no_grad():  # CNNs and dynamic-size models: one dummy frame tells the feature-map size
            feats = _forward_features(model, torch.zeros(1, 3, *self.input_size))
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
        feats = _forward_features(self.model, frames)
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


def _load_weights(model: nn.Module, name: str, path: str) -> None:
    """Load a local weights file with timm's reader (``load_state_dict``: safetensors or ``weights_only`` torch files,
    ``state_dict`` / ``model`` / EMA wrappers, ``module.`` prefixes) and the architecture's ``checkpoint_filter_fn``,
    then insist that every weight of the model came from the file; only the classifier head may be left over
    (the backbone is built with ``num_classes=0``)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        state = load_state_dict(path)
    except Exception as e:  # noqa: BLE001 - unreadable file, pickled code refused by weights_only
        raise ValueError(f"{path}: cannot read weights for timm model {name!r}: {e}") from e
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    try:
        result = model.load_state_dict(filter_fn(state, model) if filter_fn else state, strict=False)
    except (RuntimeError, KeyError, ValueError) as e:  # shape mismatch, or a filter that does not apply
        raise ValueError(f"{path}: weights do not fit timm model {name!r}: {e}") from e
    head = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier") or "head"
    heads = tuple(f"{h}." for h in (head if isinstance(head, (list, tuple)) else [head]))
    unexpected = [k for k in result.unexpected_keys if not k.startswith(heads)]
    if result.missing_keys or unexpected:
        raise ValueError(f"{path}: weights do not fit timm model {name!r}: missing {result.missing_keys[:8]}, "
                         f"unexpected {unexpected[:8]}")


def _forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's ``forward_features`` (every timm model has it; nn.Module does not declare it)."""
    out: torch.Tensor = getattr(model, "forward_features")(x)
    return out
