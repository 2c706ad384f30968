"""Video-ViT backbones: :class:`SurgMotionBackbone` (our pretraining checkpoint) and :class:`RandomInitBackbone`.

- :class:`SurgMotionBackbone` — the **EMA target encoder** (``target_encoder`` key of ``model.pt``) in a
  :class:`model.vit.VideoViT` built from the checkpoint's ``config.yaml`` (``model.encoder``); normalised with the
  config's ``model.pixel_mean/pixel_std`` (ImageNet by default).
- :class:`RandomInitBackbone` — a seeded random :class:`model.vit.VideoViT` (the control).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from model.backbones.base import Backbone, level_blocks, seeded, strip_prefixes
from model.vit import IMAGENET_MEAN, IMAGENET_STD, VIT_SIZES, EncoderConfig, VideoViT, normalize_clip

MODEL_FILE = "model.pt"      # a pretraining checkpoint folder: weights (orchestrator/pretrain/checkpoint.py writes it)
CONFIG_FILE = "config.yaml"  # ... and the run's config


class VideoViTBackbone(Backbone):
    """A :class:`VideoViT` with its pixel normalisation (shared by the SurgMotion and random-init backbones)."""

    def __init__(self, encoder: VideoViT, pixel_mean: Sequence[float] = IMAGENET_MEAN,
                 pixel_std: Sequence[float] = IMAGENET_STD, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.embed_dim = encoder.embed_dim
        self.pixel_mean = tuple(float(v) for v in pixel_mean)
        self.pixel_std = tuple(float(v) for v in pixel_std)
        cfg = encoder.cfg.model_dump(mode="json", exclude={"activation_checkpointing", "drop_path"})
        if cfg.get("pos_embed") == "sincos":
            del cfg["pos_embed"]  # the default: identities (feature-cache keys) stay what they were before RoPE
        self._finalize({"encoder": cfg, "mean": self.pixel_mean, "std": self.pixel_std, **(extra or {})}, [encoder])

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        return self.encoder.grid(clip_shape)

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        dtype = self.encoder.patch_embed.weight.dtype
        return self.encoder(normalize_clip(clip.to(dtype), self.pixel_mean, self.pixel_std))

    def num_blocks(self) -> int:
        return len(self.encoder.blocks)

    def encode_levels(self, clip: torch.Tensor, levels: int) -> list[torch.Tensor]:
        x = normalize_clip(clip.to(self.encoder.patch_embed.weight.dtype), self.pixel_mean, self.pixel_std)
        return self.encoder.forward_levels(self.encoder.embed(x), self.encoder.grid(x.shape),
                                           level_blocks(self.num_blocks(), levels))



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
    source: str = ""  # the model.pt it was loaded from

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: str | Path | Mapping[str, Any] | None = None
                        ) -> SurgMotionBackbone:
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
        weights = strip_prefixes(state["target_encoder"])
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
        with seeded(seed):
            encoder = VideoViT(cfg)
        super().__init__(encoder, IMAGENET_MEAN, IMAGENET_STD)
        self.seed = seed

