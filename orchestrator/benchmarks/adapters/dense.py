"""Dense-prediction adapters (one Sample per image; ``target_path`` = mask or depth map):
polyp segmentation in the PraNet layout (Kvasir-SEG, CVC-ClinicDB, CVC-300, CVC-ColonDB, ETIS-LaribPolypDB)
and C3VD depth.

Depth samples carry ``meta["depth_scale_mm"]`` (multiply the raw stored value to get millimetres) and
``meta["depth_max_mm"]``; :func:`read_depth_mm` applies them. C3VD stores depth along the camera z axis
clamped to 0-100 mm and linearly scaled to uint16 0-65535, so depth_mm = raw / 65535 * 100.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from orchestrator.benchmarks.adapters.common import IMAGE_SUFFIXES
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import official_groups, select_split
from orchestrator.data.views import read_image_array

C3VD_MAX_DEPTH_MM = 100.0
C3VD_DEPTH_SCALE_MM = C3VD_MAX_DEPTH_MM / 65535.0


def c3vd_depth_to_mm(raw: NDArray) -> NDArray[np.float32]:
    """C3VD uint16 depth -> millimetres (0 -> 0 mm, 65535 -> 100 mm)."""
    arr = np.asarray(raw)
    if arr.dtype != np.uint16:
        raise BenchmarkError(f"C3VD depth must be uint16, got {arr.dtype}")
    return (arr.astype(np.float32) * np.float32(C3VD_DEPTH_SCALE_MM)).astype(np.float32)


def read_depth_mm(path: str | Path, scale_mm: float = 1.0) -> NDArray[np.float32]:
    """Read a depth map (uint16/float PNG or TIFF, or ``.npy``) and multiply by ``scale_mm``."""
    p = Path(path)
    try:
        arr = read_image_array(p)
    except FileNotFoundError:
        raise BenchmarkError(f"depth map: {p} does not exist") from None
    if arr.ndim != 2:
        raise BenchmarkError(f"depth map {p}: expected a single-channel image, got shape {arr.shape}")
    return (arr.astype(np.float32) * np.float32(scale_mm)).astype(np.float32)


def pair_by_stem(images: Path, targets: Path, what: str, target_suffix: str = "") -> list[tuple[str, Path, Path]]:
    """(stem, image, target) for every image in ``images``; its target is ``targets/<stem><target_suffix>.*``."""
    for d in (images, targets):
        if not d.is_dir():
            raise BenchmarkError(f"{what}: {d} does not exist")
    tmap: dict[str, Path] = {}
    for t in targets.iterdir():
        if t.suffix.lower() in IMAGE_SUFFIXES + (".npy",):
            tmap[t.stem] = t
    out = []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        key = img.stem + target_suffix
        if key not in tmap:
            raise BenchmarkError(f"{what}: no target {targets}/{key}.* for image {img}")
        out.append((img.stem, img, tmap[key]))
    if not out:
        raise BenchmarkError(f"{what}: no images in {images}")
    return out


# ------------------------------------------------------------------------------------------------- PraNet
PRANET_TEST_FOLDERS: dict[str, str] = {
    "Kvasir-SEG": "Kvasir",
    "CVC-ClinicDB": "CVC-ClinicDB",
    "CVC-300": "CVC-300",
    "CVC-ColonDB": "CVC-ColonDB",
    "ETIS-LaribPolypDB": "ETIS-LaribPolypDB",
}
"""Benchmark name -> ``TestDataset/<folder>`` (a spec with another name uses its own name as the folder)."""


@register_adapter("pranet_polyp")
def load_pranet(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """PraNet layout: train = ``TrainDataset/{images,masks}`` (Kvasir 900 + ClinicDB 550, shared by the five
    benchmarks), test = ``TestDataset/<name>/{images,masks}``. Val is a seeded image-level 20 % of
    TrainDataset (the same for all five). Masks are binarised at > 128 by the consumer."""
    folder = PRANET_TEST_FOLDERS.get(spec.name, spec.name)
    parts = {"train": root / "TrainDataset", "test": root / "TestDataset" / folder}
    pairs = {s: pair_by_stem(d / "images", d / "masks", f"{spec.name} {s}") for s, d in parts.items()}
    ids = {s: [f"{s}/{stem}" for stem, _, _ in pairs[s]] for s in parts}
    table = {f"{s}/{stem}": (img, mask) for s in parts for stem, img, mask in pairs[s]}
    out: list[Sample] = []
    for sid in select_split(spec, split, official_groups(spec, ids)):
        img, mask = table[sid]
        out.append(Sample(sample_id=sid, video_id=sid, source=str(img), target_path=str(mask),
                          meta={"mask_threshold": 128}))
    return out


# --------------------------------------------------------------------------------------------------- C3VD
def _c3vd_pairs(seq_dir: Path) -> list[tuple[int, Path, Path]]:
    """(frame, color, depth) of one sequence: v1 ``NNNN_color.png`` + ``NNNN_depth.tiff`` in the sequence
    folder, or v2 ``rgb/NNNN.png`` + ``depth/NNNN_depth.tiff``."""
    v2 = (seq_dir / "rgb").is_dir()
    color_dir, depth_dir = (seq_dir / "rgb", seq_dir / "depth") if v2 else (seq_dir, seq_dir)
    pattern = re.compile(r"(\d+)\.png" if v2 else r"(\d+)_color\.png")
    colors = {m.group(1): p for p in color_dir.iterdir() if (m := pattern.fullmatch(p.name))}
    out = []
    for digits in sorted(colors, key=int):
        cands = [depth_dir / f"{digits}_depth{ext}" for ext in (".tiff", ".tif")]
        depth = next((c for c in cands if c.is_file()), None)
        if depth is None:
            raise BenchmarkError(f"C3VD: no depth map {cands[0]} for {colors[digits]}")
        out.append((int(digits), colors[digits], depth))
    if not out:
        raise BenchmarkError(f"C3VD: no color frames (NNNN_color.png or rgb/NNNN.png) in {seq_dir}")
    return out


@register_adapter("c3vd_depth")
def load_c3vd(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``<root>/<sequence>/`` folders (e.g. ``cecum_t1_a``; a folder counts as a sequence if it holds
    ``*_color.png`` or ``rgb/``). No official split: ``spec.splits.ids["test"]``
    fixes the test sequences; every other sequence found is train; val is a seeded sequence-level part of it."""
    if not root.is_dir():
        raise BenchmarkError(f"{spec.name}: {root} does not exist")
    seqs = sorted(p.name for p in root.iterdir()
                  if p.is_dir() and ((p / "rgb").is_dir() or next(p.glob("*_color.png"), None) is not None))
    test = list(spec.splits.ids.get("test", []))
    missing = [s for s in test if s not in seqs]
    if missing:
        raise BenchmarkError(f"{spec.name}: test sequence folder(s) {[str(root / s) for s in missing]} missing")
    from_disk = {"train": [s for s in seqs if s not in test], "test": test}
    groups = official_groups(spec, from_disk) if "train" in spec.splits.ids else from_disk
    out: list[Sample] = []
    for seq in select_split(spec, split, groups):
        for frame, color, depth in _c3vd_pairs(root / seq):
            out.append(Sample(sample_id=f"{seq}/{frame:04d}", video_id=seq, source=str(color),
                              target_path=str(depth), meta={"frame": frame, "depth_scale_mm": C3VD_DEPTH_SCALE_MM,
                                                            "depth_max_mm": C3VD_MAX_DEPTH_MM}))
    return out
