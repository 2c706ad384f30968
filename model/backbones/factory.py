"""Backbone spec strings: parse, check cheaply, label, build.

``random[:size]`` (a seeded random VideoViT, seed 0), ``surgmotion:<checkpoint dir or model.pt>`` (the EMA target
encoder of our pretraining) and ``timm:<model_name>[@<weights file>]`` (a timm image model per frame; nothing is
downloaded). :func:`parse_spec` reads the syntax only; :func:`check_spec` also checks that the named files exist
and the timm model is known, without loading any weights (the sweep's fail-fast validation); :func:`build_backbone`
builds the module. Every problem raises :class:`BackboneError` (a ``ValueError``) naming the spec.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import timm
from pydantic import BaseModel, ConfigDict

from model.backbones.base import Backbone
from model.backbones.timm_frames import TimmFrameBackbone
from model.backbones.video_vit import RandomInitBackbone, SurgMotionBackbone
from model.vit import VIT_SIZES

SPEC_HELP = "use random[:<size>], surgmotion:<checkpoint dir or model.pt>, or timm:<model_name>[@<weights file>]"
_TIMM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")
BackboneKind = Literal["random", "surgmotion", "timm"]


class BackboneError(ValueError):
    """A backbone spec string is malformed or points at something that cannot be loaded; names the spec."""


class BackboneSpec(BaseModel):
    """A parsed spec string: ``kind`` plus its argument (size, checkpoint path, or timm name and weights file)."""

    model_config = ConfigDict(frozen=True)

    text: str
    kind: BackboneKind
    size: str = "tiny"           # random
    path: str | None = None      # surgmotion checkpoint, or timm weights file
    timm_name: str | None = None

    @property
    def label(self) -> str:
        """Short display name: ``surgmotion:/a/b/checkpoint_04`` → ``surgmotion:checkpoint_04``; else the spec."""
        if self.kind == "surgmotion" and self.path:
            return f"surgmotion:{Path(self.path).name}"
        return self.text


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
        assert parsed.timm_name is not None
        return TimmFrameBackbone(parsed.timm_name, weights_path=parsed.path)
    except (ValueError, FileNotFoundError) as e:
        raise BackboneError(f"backbone spec {spec!r}: {e}") from e
