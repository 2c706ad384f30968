"""timm image models as frozen per-frame backbones (:class:`TimmFrameBackbone`) and local weights files
(:func:`load_weights_file`). Nothing is downloaded: ``pretrained=False`` always, weights come from a local file.
The interface and the spec strings: :mod:`model.backbones`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from model.backbones import Backbone, _seeded, _strip_prefixes


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
