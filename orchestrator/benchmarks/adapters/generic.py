"""Generic adapters for private data. The user builds the :class:`BenchmarkSpec` (class list, metrics, split
kind) - see :func:`orchestrator.benchmarks.registry.make_generic_spec` and docs/datasets.md - and lays the
data out as below. Split files list video ids; with ``kind="seeded_val_from_train"`` a val file is ignored and
val is a seeded video-level part of train, with ``kind="official"`` all three split files are required.

* ``generic_phase_csv``: ``videos/<video_id>.<ext>`` (or a frame folder ``videos/<video_id>/``),
  ``annotations/<video_id>.csv`` with header ``frame,phase`` (frame index at ``spec.annotation_fps``,
  default 1; phase = class name or id), ``splits/{train,val,test}.txt`` (one video id per line).
* ``generic_clip_csv``: ``splits/{train,val,test}.csv`` with header ``path,label`` and optional ``video_id``
  (default: the path's stem), ``start_s``, ``end_s``; paths relative to the root.
* ``generic_image_mask``: ``<split>/images/<stem>.<img>`` + ``<split>/masks/<stem>.<img>``.
* ``generic_image_depth``: ``<split>/images/<stem>.<img>`` + ``<split>/depth/<stem>.{png,tif,tiff,npy}`` and
  an optional ``depth_scale.json`` ``{"scale_to_mm": 1.0, "max_depth_mm": null}`` (raw value x scale = mm).

Image folders may hold one sub-folder per video (``images/<video_id>/<stem>.png``, targets mirrored); then
splits and ``video_id`` are per sub-folder (a video in two split folders is an error), otherwise per image
(``video_id = "<split>/<stem>"``).
"""
from __future__ import annotations

import json
from pathlib import Path

from orchestrator.benchmarks.adapters.common import (
    find_video,
    frame_folder_meta,
    label_from_value,
    parse_float,
    parse_int,
    read_csv_rows,
    read_text_lines,
    row_error,
    timeline_samples,
)
from orchestrator.benchmarks.adapters.dense import pair_by_stem
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import SPLITS, labels_at_sample_fps, official_groups, select_split

CLASSES_FROM_ROOT = "<classes.txt>"
"""Placeholder class list entry: the registry replaces ``[CLASSES_FROM_ROOT]`` by ``<root>/classes.txt``."""


def read_classes_file(root: Path) -> list[str]:
    """``<root>/classes.txt``: one class name per line, in class-id order."""
    names = [s for _, s in read_text_lines(root / "classes.txt", "class list")]
    if not names or len(set(names)) != len(names):
        raise BenchmarkError(f"class list {root / 'classes.txt'} is empty or has duplicate names")
    return names


def _split_files(root: Path, suffix: str, what: str) -> dict[str, Path]:
    files = {s: root / "splits" / f"{s}{suffix}" for s in SPLITS}
    for s in ("train", "test"):
        if not files[s].is_file():
            raise BenchmarkError(f"{what} split file: {files[s]} does not exist")
    return {s: p for s, p in files.items() if p.is_file()}


def _id_lists(root: Path, what: str) -> dict[str, list[str]]:
    files = _split_files(root, ".txt", what)
    return {s: [t for _, t in read_text_lines(p, f"{what} split file")] for s, p in files.items()}


# --------------------------------------------------------------------------------------------- phase CSV
def _phase_rows(path: Path, spec: BenchmarkSpec) -> list[tuple[int, int]]:
    rows: dict[int, int] = {}
    for line, row in read_csv_rows(path, f"{spec.name} annotation", ["frame", "phase"]):
        frame = parse_int(row["frame"], path, line, "frame")
        if frame < 0 or frame in rows:
            raise row_error(path, line, f"field 'frame': negative or duplicate frame {frame}")
        rows[frame] = label_from_value(row["phase"], spec, path, line, "phase")
    return sorted(rows.items())


@register_adapter("generic_phase_csv")
def load_generic_phase(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    if spec.classes == [CLASSES_FROM_ROOT]:
        spec = spec.model_copy(update={"classes": read_classes_file(root)})
    fps = float(spec.annotation_fps or 1.0)
    out: list[Sample] = []
    for vid in select_split(spec, split, official_groups(spec, _id_lists(root, spec.name))):
        ann = root / "annotations" / f"{vid}.csv"
        rows = _phase_rows(ann, spec)
        if not rows:
            raise BenchmarkError(f"{spec.name}: {ann} has no labelled frames")
        source = find_video(root / "videos", [vid], f"{spec.name} video {vid}")
        points = labels_at_sample_fps(rows, fps, spec.sample_fps)
        out += timeline_samples(vid, source, points, frame_folder_meta(source, spec.sample_fps))
    return out


# ---------------------------------------------------------------------------------------------- clip CSV
def _clip_row(root: Path, path: Path, line: int, row: dict[str, str], spec: BenchmarkSpec) -> Sample:
    clip = root / row["path"]
    if not row["path"] or not clip.exists():
        raise row_error(path, line, f"field 'path': {clip} does not exist")
    label = label_from_value(row["label"], spec, path, line, "label")
    vid = row.get("video_id") or Path(row["path"]).stem
    meta: dict = {"line": line}
    for key in ("start_s", "end_s"):
        if row.get(key, "") != "":
            meta[key] = parse_float(row[key], path, line, key)
    return Sample(sample_id=f"{row['path']}#{line}", video_id=vid, source=str(clip), label=label, meta=meta)


@register_adapter("generic_clip_csv")
def load_generic_clips(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    files = _split_files(root, ".csv", spec.name)
    rows = {s: [(p, ln, r) for ln, r in read_csv_rows(p, f"{spec.name} clip list", ["path", "label"])]
            for s, p in files.items()}
    samples = {s: [_clip_row(root, p, ln, r, spec) for p, ln, r in rs] for s, rs in rows.items()}
    from_files = {s: sorted({x.video_id for x in v}) for s, v in samples.items()}
    keep = set(select_split(spec, split, official_groups(spec, from_files)))
    return [x for s in SPLITS for x in samples.get(s, []) if x.video_id in keep]


# ------------------------------------------------------------------------------------------- image pairs
Pairs = dict[str, list[tuple[str, Path, Path]]]  # video id -> [(sample id, image, target)]


def _image_pairs(root: Path, target_dir: str, spec: BenchmarkSpec) -> dict[str, Pairs]:
    """split -> video id -> [(sample id, image, target)] for the split folders present."""
    out: dict[str, Pairs] = {}
    for s in SPLITS:
        images = root / s / "images"
        if not images.is_dir():
            continue
        subdirs = sorted(p for p in images.iterdir() if p.is_dir())
        groups: Pairs = {}
        if subdirs:
            for d in subdirs:
                pairs = pair_by_stem(d, root / s / target_dir / d.name, f"{spec.name} {s}/{d.name}")
                groups[d.name] = [(f"{d.name}/{stem}", img, tgt) for stem, img, tgt in pairs]
        else:
            for stem, img, tgt in pair_by_stem(images, root / s / target_dir, f"{spec.name} {s}"):
                groups[f"{s}/{stem}"] = [(f"{s}/{stem}", img, tgt)]
        out[s] = groups
    for s in ("train", "test"):
        if s not in out:
            raise BenchmarkError(f"{spec.name}: {root / s / 'images'} does not exist")
    return out


def _image_samples(root: Path, split: str, spec: BenchmarkSpec, target_dir: str, meta: dict) -> list[Sample]:
    table = _image_pairs(root, target_dir, spec)
    flat = {vid: items for groups in table.values() for vid, items in groups.items()}
    from_disk = {s: sorted(g) for s, g in table.items()}
    out: list[Sample] = []
    for vid in select_split(spec, split, official_groups(spec, from_disk)):
        for sid, img, tgt in flat[vid]:
            out.append(Sample(sample_id=sid, video_id=vid, source=str(img), target_path=str(tgt), meta=dict(meta)))
    return out


@register_adapter("generic_image_mask")
def load_generic_masks(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    return _image_samples(root, split, spec, "masks", {"mask_threshold": 128})


def depth_scale(root: Path) -> dict:
    """``depth_scale.json`` -> {"depth_scale_mm": float, "depth_max_mm": float | None} (default scale 1)."""
    path = root / "depth_scale.json"
    if not path.is_file():
        return {"depth_scale_mm": 1.0, "depth_max_mm": None}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        scale = float(cfg.get("scale_to_mm", 1.0))
        cap = cfg.get("max_depth_mm")
        return {"depth_scale_mm": scale, "depth_max_mm": None if cap is None else float(cap)}
    except (ValueError, TypeError, AttributeError) as exc:
        raise BenchmarkError(f"{path}: expected {{'scale_to_mm': number, 'max_depth_mm': number|null}} "
                             f"({exc})") from None


@register_adapter("generic_image_depth")
def load_generic_depth(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    return _image_samples(root, split, spec, "depth", depth_scale(root))
