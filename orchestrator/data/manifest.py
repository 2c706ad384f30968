"""Corpus manifest: which videos make up the pretraining corpus, grouped into sources (datasets) and specialties.

YAML form::

    name: my-corpus
    sources:
      - name: cholec80            # dataset d
        specialty: laparoscopy    # specialty s (balanced sampling groups datasets by this)
        videos: ["cholec80/videos/*.mp4"]   # globs or plain paths, relative to the manifest's folder
        fps: null                 # optional override of the container's fps

Relative paths resolve against the folder holding the manifest file.
"""
from __future__ import annotations

import glob
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class ManifestError(ValueError):
    """The manifest file is missing or malformed; the message names the file and the field."""


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    specialty: str = Field(min_length=1)
    videos: list[str] = Field(min_length=1)
    fps: float | None = Field(None, gt=0)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "corpus"
    sources: list[Source] = Field(min_length=1)
    root: str | None = None  # set by load_manifest: folder that relative video paths resolve against

    def resolve_videos(self, source: Source) -> list[Path]:
        """Expand a source's globs/paths (sorted, de-duplicated). Paths that match nothing are kept as-is so the
        clip index can count them as skipped ("missing") instead of silently dropping them."""
        base = Path(self.root) if self.root else Path.cwd()
        out: list[Path] = []
        for pattern in source.videos:
            p = Path(pattern).expanduser()
            full = p if p.is_absolute() else base / p
            if glob.has_magic(str(full)):
                out.extend(Path(m) for m in sorted(glob.glob(str(full), recursive=True)))
            else:
                out.append(full)
        return list(dict.fromkeys(out))  # first occurrence wins, order kept


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest YAML; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping with a 'sources' list, got {type(raw).__name__}")
    try:
        m = Manifest.model_validate(raw)
    except ValidationError as e:
        fields = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ManifestError(f"{path}: invalid manifest: {fields}") from None
    if m.root is None:
        m.root = str(path.parent.resolve())
    return m


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write ``manifest`` as YAML (paths stay as given; ``root`` is omitted so the file is relocatable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = manifest.model_dump(exclude={"root"}, exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
