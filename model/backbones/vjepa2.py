"""Checkpoints in the official V-JEPA 2 layout (facebookresearch/vjepa2; SurgMotion's releases share it).

**Layout.** A ``torch.save`` dict as ``app/vjepa/train.py::save_checkpoint`` writes it: top-level ``encoder``,
``target_encoder``, ``predictor`` (state dicts) besides ``opt``, ``scaler``, ``epoch``, ``loss``, ``batch_size``,
``world_size``, ``lr``. State-dict keys carry ``module.`` and/or ``backbone.`` prefixes (DDP around
``MultiSeqWrapper``), stripped here. Encoder keys: ``patch_embed.proj.{weight,bias}`` (a Conv3d, kernel
``[D, C, tubelet, patch, patch]``), ``blocks.<i>.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``
and, for sin-cos models only, a ``pos_embed`` buffer ``[1, N, D]`` (RoPE models have none).

**What is inferred.** Width, channels, tubelet and patch size from the patch-embed kernel; depth from the block
indices; the MLP hidden width from ``blocks.0.mlp.fc1``; RoPE vs sin-cos from the presence of ``pos_embed``. Heads
cannot be read from shapes: V-JEPA 2's factory table gives them per width (:data:`HEADS_BY_WIDTH`; 1024 → 16,
1280 → 16, 1408 → 22, ...), or pass ``heads``. RoPE models run with ``pos_embed: rope`` (V-JEPA 2's pairing,
:mod:`model.rope`). A sin-cos model adds its *stored* table as V-JEPA 2 does: as is on the grid it was built for,
its first rows for fewer frames at the same size, otherwise trilinearly resized (``interpolate_pos_encoding``).

:class:`VJEPA2Backbone` is the frozen encoder (``target_encoder`` by default, or ``encoder``) on ImageNet-normalised
clips; :func:`load_vjepa2_modules` loads a file into the modules of a pretraining model (``train.init_from``).
"""
from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

from model.backbones.base import Backbone, level_blocks, strip_prefixes
from model.predictor import Predictor
from model.vit import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIT_SIZES,
    EncoderConfig,
    VideoViT,
    ViTSize,
    normalize_clip,
    sincos_pos_embed_3d,
)

HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 22}  # V-JEPA 2's vit_* factories
ENCODER_KEYS = ("target_encoder", "encoder")
ENCODER_RENAMES = (("patch_embed.proj.", "patch_embed."),)
PREDICTOR_RENAMES = (("predictor_embed.", "embed."), ("predictor_blocks.", "blocks."), ("predictor_norm.", "norm."),
                     ("predictor_proj.", "proj."), ("mask_tokens.0", "query"))
Grid = tuple[int, int, int]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (``weights_only``; memory-mapped when the file is a zip archive, so optimizer states and
    the unused encoder cost no memory)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{file}: V-JEPA 2 checkpoint file not found")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except Exception as e:  # noqa: BLE001 - corrupt / non-torch file, or pickled code refused by weights_only
        raise ValueError(f"{file}: cannot load the checkpoint: {e}") from e
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{file}: not a V-JEPA 2 checkpoint (a {type(ckpt).__name__}, expected a dict with "
                         f"'encoder' / 'target_encoder')")
    return dict(ckpt)


def is_vjepa2_layout(ckpt: Mapping[str, Any]) -> bool:
    """True for the official naming (``patch_embed.proj.*`` in the encoder), whatever the prefixes."""
    enc = ckpt.get("encoder")
    return isinstance(enc, Mapping) and "patch_embed.proj.weight" in strip_prefixes(enc)


def section(ckpt: Mapping[str, Any], key: str, where: str) -> dict[str, torch.Tensor]:
    """One top-level state dict, prefixes stripped; a clear error when it is absent or not a state dict."""
    if key not in ckpt:
        hint = " (use '#encoder' to take the context encoder)" if key == "target_encoder" and "encoder" in ckpt else ""
        raise ValueError(f"{where}: no {key!r} in the checkpoint (top-level keys: {sorted(map(str, ckpt))}); "
                         f"the V-JEPA 2 layout has 'encoder', 'target_encoder', 'predictor', 'opt', ...{hint}")
    state = ckpt[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{where}: {key!r} is not a state dict of tensors")
    return strip_prefixes(state)


def rename(state: Mapping[str, torch.Tensor], renames: Sequence[tuple[str, str]], reverse: bool = False
           ) -> dict[str, torch.Tensor]:
    """Official → our parameter names (``reverse``: ours → official) by prefix."""
    out = {}
    for k, v in state.items():
        for official, ours in renames:
            src, dst = (ours, official) if reverse else (official, ours)
            if k.startswith(src):
                k = dst + k[len(src):]
                break
        out[k] = v
    return out


def check_fits(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], where: str,
               renames: Sequence[tuple[str, str]], what: str) -> None:
    """One error naming the missing / unexpected keys and the shape mismatches (in the file's naming)."""
    official = lambda keys: sorted(rename(dict.fromkeys(keys), renames, reverse=True))  # type: ignore[arg-type]
    missing, extra = official(set(expected) - set(got)), official(set(got) - set(expected))
    shapes = [f"{official([k])[0]}: file {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(got) & set(expected)) if tuple(got[k].shape) != tuple(expected[k].shape)]
    if missing or extra or shapes:
        parts = [f"missing keys {missing[:12]}" if missing else "", f"unexpected keys {extra[:12]}" if extra else "",
                 f"shape mismatches {shapes[:6]}" if shapes else ""]
        raise ValueError(f"{where}: {what} does not fit: " + "; ".join(p for p in parts if p))


def _mlp_ratio(dim: int, hidden: int) -> float:
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def infer_encoder(state: Mapping[str, torch.Tensor], heads: int | None, where: str) -> tuple[EncoderConfig, ViTSize]:
    """Encoder config + dims of an official encoder state dict (module docstring: what is inferred)."""
    w = state.get("patch_embed.proj.weight")
    if w is None or w.ndim != 5 or w.shape[3] != w.shape[4]:
        raise ValueError(f"{where}: missing keys ['patch_embed.proj.weight'] (a Conv3d kernel [D, C, tubelet, patch, "
                         f"patch]); the encoder has {sorted(state)[:8]}...")
    dim, chans, tubelet, patch = (int(s) for s in w.shape[:4])
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if depth == 0 or fc1 is None:
        raise ValueError(f"{where}: missing keys ['blocks.0.mlp.fc1.weight'] (no transformer blocks)")
    n_heads = heads or HEADS_BY_WIDTH.get(dim)
    if n_heads is None or dim % n_heads:
        raise ValueError(f"{where}: cannot tell the heads of width {dim} (V-JEPA 2 widths: {HEADS_BY_WIDTH}); "
                         f"give them in the spec, e.g. '#heads=<n>' (n dividing {dim})")
    pos = "sincos" if "pos_embed" in state else "rope"
    arch = ViTSize(embed_dim=dim, depth=depth, num_heads=n_heads, mlp_ratio=_mlp_ratio(dim, int(fc1.shape[0])),
                   pos_embed=pos)
    named = [n for n, s in VIT_SIZES.items() if s.model_dump(include={"embed_dim", "depth", "num_heads", "mlp_ratio"})
             == arch.model_dump(include={"embed_dim", "depth", "num_heads", "mlp_ratio"})]
    cfg = EncoderConfig(size=named[0] if named else "custom", patch_size=patch, tubelet_size=tubelet,
                        in_chans=chans, pos_embed=pos)
    return cfg, arch


def table_grid(table: torch.Tensor, uniform_only: bool = False) -> Grid | None:
    """The ``(Tt, g, g)`` grid a V-JEPA sin-cos table ``[1, N, D]`` was made for (either of its two formulas;
    ``uniform_only``: only the one our encoder regenerates), or None when it is no such table."""
    t = table.reshape(-1, table.shape[-1]).float()
    n, dim = t.shape
    for g in range(1, math.isqrt(n) + 1):
        if n % (g * g):
            continue
        grid = (n // (g * g), g, g)
        for uniform in (True,) if uniform_only else (True, False):
            if torch.allclose(sincos_pos_embed_3d(dim, grid, uniform), t, atol=1e-5):
                return grid
    return None


def official_table_for(table: torch.Tensor, built: Grid | None, grid: Grid) -> torch.Tensor:
    """V-JEPA 2's ``interpolate_pos_encoding``: the stored table ``[N0, D]`` for a clip of ``grid``."""
    n = grid[0] * grid[1] * grid[2]
    if built is None or tuple(grid) == built:
        if table.shape[0] != n:
            raise ValueError(f"sin-cos table of {table.shape[0]} tokens (grid unknown) cannot serve a {grid} grid")
        return table
    if tuple(grid[1:]) == built[1:] and grid[0] < built[0]:
        return table[:n]
    vol = rearrange(table, "(t h w) d -> 1 d t h w", t=built[0], h=built[1], w=built[2])
    out = F.interpolate(vol, scale_factor=tuple(g / b for g, b in zip(grid, built)), mode="trilinear")
    if tuple(out.shape[2:]) != tuple(grid):
        raise ValueError(f"sin-cos table of grid {built} resized to {tuple(out.shape[2:])}, not {grid}")
    return rearrange(out, "1 d t h w -> (t h w) d")


def build_encoder(state: Mapping[str, torch.Tensor], heads: int | None, where: str
                  ) -> tuple[VideoViT, torch.Tensor | None]:
    """A VideoViT holding an official encoder state dict (built on the meta device, the tensors assigned: no
    random init, no copy) and its sin-cos table ``[N0, D]`` (None for RoPE)."""
    cfg, arch = infer_encoder(state, heads, where)
    ours = rename({k: v for k, v in state.items() if k != "pos_embed"}, ENCODER_RENAMES)
    with torch.device("meta"):
        encoder = VideoViT(cfg, arch)
    check_fits(encoder.state_dict(), ours, where, ENCODER_RENAMES, f"encoder ({arch.embed_dim}x{arch.depth})")
    encoder.load_state_dict(ours, strict=True, assign=True)
    table = state.get("pos_embed")
    return encoder, None if table is None else table.reshape(-1, table.shape[-1]).float()


class VJEPA2Backbone(Backbone):
    """An official V-JEPA 2 encoder, frozen: ``[B, C, T, H, W]`` in [0, 1] → ImageNet-normalised → tokens
    ``[B, N, D]`` after the final LayerNorm (the official ``VisionTransformer.forward``). See
    :meth:`from_checkpoint`."""

    kind = "vjepa2"
    source: str = ""
    checkpoint_key: str = "target_encoder"
    pos_table: torch.Tensor | None

    def __init__(self, encoder: VideoViT, pos_table: torch.Tensor | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.embed_dim = encoder.embed_dim
        self.pixel_mean, self.pixel_std = IMAGENET_MEAN, IMAGENET_STD
        self.table_grid = None if pos_table is None else table_grid(pos_table)
        self.register_buffer("pos_table", pos_table)
        cfg = encoder.cfg.model_dump(mode="json", exclude={"activation_checkpointing", "drop_path"})
        self._finalize({"encoder": cfg, "arch": encoder.arch.model_dump(mode="json"), "mean": self.pixel_mean,
                        "std": self.pixel_std, "table_grid": self.table_grid, **(extra or {})}, [self])

    @classmethod
    def from_checkpoint(cls, path: str | Path, key: str = "target_encoder", heads: int | None = None
                        ) -> VJEPA2Backbone:
        """``key``: ``target_encoder`` (the EMA encoder, default) or ``encoder``; ``heads`` overrides
        :data:`HEADS_BY_WIDTH`."""
        if key not in ENCODER_KEYS:
            raise ValueError(f"checkpoint key {key!r}: choose one of {list(ENCODER_KEYS)}")
        ckpt = read_checkpoint(path)
        where = f"{Path(path).expanduser()} [{key}]"
        encoder, table = build_encoder(section(ckpt, key, where), heads, where)
        backbone = cls(encoder, table, {"key": key})
        backbone.source, backbone.checkpoint_key = str(Path(path).expanduser()), key
        return backbone

    def token_grid(self, clip_shape: Sequence[int]) -> tuple[int, int, int]:
        return self.encoder.grid(clip_shape)

    def embed(self, clip: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Normalised, patch-embedded tokens (plus the checkpoint's own sin-cos table, if any) and their grid."""
        x = normalize_clip(clip.to(self.encoder.patch_embed.weight.dtype), self.pixel_mean, self.pixel_std)
        grid = self.encoder.grid(x.shape)
        tokens = self.encoder.patch_tokens(x)
        if self.pos_table is not None:
            tokens = tokens + official_table_for(self.pos_table, self.table_grid, grid).to(tokens.dtype)
        return tokens, grid

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_tokens(*self.embed(clip))

    def num_blocks(self) -> int:
        return len(self.encoder.blocks)

    def encode_levels(self, clip: torch.Tensor, levels: int) -> list[torch.Tensor]:
        tokens, grid = self.embed(clip)
        return self.encoder.forward_levels(tokens, grid, level_blocks(self.num_blocks(), levels))


def _load_encoder(module: VideoViT, state: Mapping[str, torch.Tensor], where: str) -> None:
    kind = "sincos" if "pos_embed" in state else "rope"
    if module.cfg.pos_embed != kind:
        raise ValueError(f"{where}: the checkpoint's encoder uses {kind} positions "
                         f"({'a' if kind == 'sincos' else 'no'} pos_embed tensor); set model.encoder.pos_embed: {kind}")
    if kind == "sincos" and table_grid(state["pos_embed"], uniform_only=True) is None:
        raise ValueError(f"{where}: its pos_embed is not the 3D sin-cos table this encoder regenerates "
                         f"(V-JEPA's uniform_power: true); it cannot be continued here")
    ours = rename({k: v for k, v in state.items() if k != "pos_embed"}, ENCODER_RENAMES)
    check_fits(module.state_dict(), ours, where, ENCODER_RENAMES,
               f"model.encoder (size {module.cfg.size}: {module.embed_dim}x{len(module.blocks)})")
    module.load_state_dict(ours, strict=True)


def _load_predictor(module: Predictor, state: Mapping[str, torch.Tensor], where: str) -> None:
    table = state.get("predictor_pos_embed")
    if (table is None) != (module.pos_embed is None):
        raise ValueError(f"{where}: the checkpoint's predictor uses {'rope' if table is None else 'sincos'} positions, "
                         f"model.predictor {module.pos_kind}")
    if table is not None and table_grid(table, uniform_only=True) is None:
        raise ValueError(f"{where}: its predictor_pos_embed is not the 3D sin-cos table this predictor regenerates")
    keep = {k: v for k, v in state.items() if k != "predictor_pos_embed" and not
            (k.startswith("mask_tokens.") and k != "mask_tokens.0")}
    ours = rename(keep, PREDICTOR_RENAMES)
    if "query" in ours:
        ours["query"] = ours["query"].reshape(-1)
    check_fits(module.state_dict(), ours, where, PREDICTOR_RENAMES,
               f"model.predictor (width {module.embed_dim}, depth {len(module.blocks)}; V-JEPA 2's: 384, 12, 12 "
               "heads: set model.predictor.embed_dim/depth/num_heads to match)")
    module.load_state_dict(ours, strict=True)


def load_vjepa2_modules(ckpt: Mapping[str, Any], where: str, encoder: VideoViT, target_encoder: VideoViT,
                        predictor: Predictor) -> str:
    """``encoder`` → the context encoder, ``target_encoder`` (else ``encoder``) → the target, ``predictor`` (if
    present; its first mask token becomes the query) → the predictor. Any misfit raises one ValueError. Returns a
    one-line account of what was loaded."""
    enc = section(ckpt, "encoder", f"{where} [encoder]")
    _load_encoder(encoder, enc, f"{where} [encoder]")
    has_target = "target_encoder" in ckpt
    tgt = section(ckpt, "target_encoder", f"{where} [target_encoder]") if has_target else enc
    _load_encoder(target_encoder, tgt, f"{where} [{'target_encoder' if has_target else 'encoder'}]")
    loaded = ["encoder", "target_encoder" if has_target else "target_encoder <- encoder"]
    if "predictor" in ckpt:
        _load_predictor(predictor, section(ckpt, "predictor", f"{where} [predictor]"), f"{where} [predictor]")
        loaded.append("predictor (mask_tokens.0 as the query)")
    return f"V-JEPA 2 layout: {', '.join(loaded)}"


__all__ = ["ENCODER_KEYS", "HEADS_BY_WIDTH", "VJEPA2Backbone", "build_encoder", "check_fits", "infer_encoder",
           "is_vjepa2_layout", "load_vjepa2_modules", "official_table_for", "read_checkpoint", "section",
           "table_grid"]
