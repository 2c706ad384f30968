"""Backbone spec strings: parse, check cheaply, label, build.

``random[:size]`` (a seeded random VideoViT, seed 0), ``surgmotion:<checkpoint dir or model.pt>`` (the EMA target
encoder of our pretraining), ``vjepa2:<checkpoint file>[#<options>]`` (a checkpoint in the official V-JEPA 2 layout,
e.g. V-JEPA 2's ``vitg.pt`` or a released SurgMotion ``.pt``; options, comma-separated: ``encoder`` or
``target_encoder`` (default) picks the state dict, ``heads=<n>`` overrides the heads V-JEPA 2's table gives the
width; :mod:`model.backbones.vjepa2`), ``timm:<model_name>[@<weights file>]`` (a timm image model per frame) and
``hf:<checkpoint dir>`` (a video model in the Hugging Face ``transformers`` format, e.g. VideoMAE; the optional
extra ``.[video-baselines]``; :mod:`model.backbones.hf_video`). Nothing is downloaded. :func:`parse_spec` reads the
syntax only; :func:`check_spec` also checks that the named files exist, the timm model is known and an ``hf:``
directory holds a supported config and a weights file, without loading any weights (the sweep's fail-fast
validation); :func:`build_backbone` builds the module. Every problem raises :class:`BackboneError` (a
``ValueError``) naming the spec.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import timm
from pydantic import BaseModel, ConfigDict

from model.backbones.base import Backbone
from model.backbones.hf_video import HFVideoBackbone, check_hf_dir
from model.backbones.timm_frames import TimmFrameBackbone
from model.backbones.video_vit import RandomInitBackbone, SurgMotionBackbone
from model.backbones.vjepa2 import ENCODER_KEYS, VJEPA2Backbone
from model.vit import VIT_SIZES

SPEC_HELP = ("use random[:<size>], surgmotion:<checkpoint dir or model.pt>, "
             "vjepa2:<checkpoint file>[#encoder|#target_encoder][,heads=<n>], timm:<model_name>[@<weights file>], "
             "or hf:<Hugging Face checkpoint dir>")
_TIMM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
BackboneKind = Literal["random", "surgmotion", "vjepa2", "timm", "hf"]


class BackboneError(ValueError):
    """A backbone spec string is malformed or points at something that cannot be loaded; names the spec."""


class BackboneSpec(BaseModel):
    """A parsed spec string: ``kind`` plus its argument (size, checkpoint path, or timm name and weights file)."""

    model_config = ConfigDict(frozen=True)

    text: str
    kind: BackboneKind
    size: str = "tiny"           # random
    path: str | None = None      # surgmotion / vjepa2 checkpoint, timm weights file, or hf checkpoint dir
    timm_name: str | None = None
    checkpoint_key: str = "target_encoder"  # vjepa2: which state dict
    heads: int | None = None                # vjepa2: heads override

    @property
    def label(self) -> str:
        """Short display name: ``surgmotion:/a/b/checkpoint_04`` → ``surgmotion:checkpoint_04``,
        ``vjepa2:/ckpts/vitg.pt#encoder`` → ``vjepa2:vitg.pt#encoder``, ``hf:/ckpts/videomae-large/`` →
        ``hf:videomae-large``; else the spec."""
        if self.kind in ("surgmotion", "vjepa2", "hf") and self.path:
            options = self.text.rpartition("#")[2] if self.kind == "vjepa2" and "#" in self.text else ""
            return f"{self.kind}:{Path(self.path).name}" + (f"#{options}" if options else "")
        return self.text


def _parse_vjepa2(spec: str, text: str, arg: str) -> BackboneSpec:
    """``<file>[#<option>,...]``: options ``encoder`` / ``target_encoder`` and ``heads=<n>``."""
    path, _, options = arg.rpartition("#") if "#" in arg else (arg, "", "")
    path, key, heads = path.strip(), "target_encoder", None
    if not path:
        raise BackboneError(f"backbone spec {spec!r}: missing checkpoint file; {SPEC_HELP}")
    for opt in (o.strip() for o in options.split(",") if o.strip()):
        name, eq, value = opt.partition("=")
        if not eq and name in ENCODER_KEYS:
            key = name
        elif name == "heads" and value.strip().isdigit() and int(value) > 0:
            heads = int(value)
        else:
            raise BackboneError(f"backbone spec {spec!r}: unknown option {opt!r}; options: "
                                f"{' | '.join(ENCODER_KEYS)}, heads=<n>")
    return BackboneSpec(text=text, kind="vjepa2", path=path, checkpoint_key=key, heads=heads)


def parse_spec(spec: str) -> BackboneSpec:
    """The syntax of a spec string (no file is touched)."""
    if not isinstance(spec, str) or not spec.strip():
        raise BackboneError(f"backbone spec {spec!r}: empty; {SPEC_HELP}")
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "random":
        if sep and not arg:
            raise BackboneError(f"backbone spec {spec!r}: missing size after 'random:'; sizes: {sorted(VIT_SIZES)}")
        size = arg or "tiny"
        if size not in VIT_SIZES:
            raise BackboneError(f"backbone spec {spec!r}: unknown size {size!r}; sizes: {sorted(VIT_SIZES)}")
        return BackboneSpec(text=text, kind="random", size=size)
    if kind == "surgmotion":
        if not arg:
            raise BackboneError(f"backbone spec {spec!r}: missing checkpoint path; {SPEC_HELP}")
        return BackboneSpec(text=text, kind="surgmotion", path=arg)
    if kind == "vjepa2":
        return _parse_vjepa2(spec, text, arg)
    if kind == "hf":
        if not arg:
            raise BackboneError(f"backbone spec {spec!r}: missing checkpoint directory; expected hf:<dir> (config.json "
                                f"+ model.safetensors)")
        return BackboneSpec(text=text, kind="hf", path=arg)
    if kind == "timm":
        name, at, weights = arg.partition("@")
        name, weights = name.strip(), weights.strip()
        if not name or not _TIMM_NAME.match(name) or (at and not weights):
            raise BackboneError(f"backbone spec {spec!r}: expected timm:<model_name>[@<weights file>]")
        return BackboneSpec(text=text, kind="timm", timm_name=name, path=weights or None)
    raise BackboneError(f"backbone spec {spec!r}: unknown kind {kind!r}; {SPEC_HELP}")


def check_spec(spec: str) -> BackboneSpec:
    """:func:`parse_spec` plus the cheap checks: the named file exists, timm knows the model name."""
    parsed = parse_spec(spec)
    if parsed.path and not Path(parsed.path).expanduser().exists():
        raise BackboneError(f"backbone spec {spec!r}: {parsed.path} does not exist")
    if parsed.kind == "timm" and not timm.is_model(parsed.timm_name or ""):
        raise BackboneError(f"backbone spec {spec!r}: timm has no model {parsed.timm_name!r} (see timm.list_models())")
    if parsed.kind == "hf":
        assert parsed.path is not None
        try:
            check_hf_dir(parsed.path)
        except (ValueError, FileNotFoundError) as e:
            raise BackboneError(f"backbone spec {spec!r}: {e}") from e
    return parsed


def backbone_label(spec: str) -> str:
    """Short display name of a spec string (:attr:`BackboneSpec.label`); the text itself when it does not parse."""
    try:
        return parse_spec(spec).label
    except BackboneError:
        return spec


def build_backbone(spec: str) -> Backbone:
    """Backbone from a spec string. Any problem (bad syntax, unknown size/model, missing or unfitting file) raises
    :class:`BackboneError` naming the spec."""
    parsed = parse_spec(spec)
    try:
        if parsed.kind == "random":
            return RandomInitBackbone(size=parsed.size)
        if parsed.kind == "surgmotion":
            assert parsed.path is not None
            return SurgMotionBackbone.from_checkpoint(parsed.path)
        if parsed.kind == "vjepa2":
            assert parsed.path is not None
            return VJEPA2Backbone.from_checkpoint(parsed.path, parsed.checkpoint_key, parsed.heads)
        if parsed.kind == "hf":
            assert parsed.path is not None
            return HFVideoBackbone(parsed.path)
        assert parsed.timm_name is not None
        return TimmFrameBackbone(parsed.timm_name, weights_path=parsed.path)
    except (ValueError, FileNotFoundError) as e:
        raise BackboneError(f"backbone spec {spec!r}: {e}") from e
