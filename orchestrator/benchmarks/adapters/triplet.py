"""CholecT50 action-triplet adapter and the triplet -> (instrument, verb, target) component map.

On disk::

    CholecT50/
      videos/VIDxx/000000.png ...     1-fps frames (the dataset ships frames, not videos)
      labels/VIDxx.json               {video, fps, num_frames, categories, annotations{frame_id: [instance...]}}
      label_mapping.txt               IVT, I, V, T, IV, IT (one row per triplet id; the metrics default to the
                                      official copy shipped as package data, metrics_triplet.cholect50_triplet_maps)

Each instance is a 15-vector ``[triplet, instrument(id, score, bx, by, bw, bh), verb, target(id, score, bx,
by, bw, bh), phase]``; -1 means null/absent. One Sample per annotated frame: ``source`` = the frame folder,
``time_s = frame_id / fps``, ``label`` = sorted distinct triplet ids (possibly empty). Triplets 94-99 are the
``<instrument, null_verb, null_target>`` classes and are kept as labels (``ignore_null`` is a metric option);
instances whose triplet id is -1 add no triplet. ``meta`` has the instrument/verb/target ids and the phase.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.benchmarks.adapters.common import norm_name, read_text_lines
from orchestrator.benchmarks.metrics_triplet import read_triplet_maps
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import cholect50_fold_groups, official_groups, select_split

NUM_TRIPLETS, NUM_INSTRUMENTS, NUM_VERBS, NUM_TARGETS = 100, 6, 10, 15
COMPONENT_SIZES: tuple[int, int, int] = (NUM_INSTRUMENTS, NUM_VERBS, NUM_TARGETS)


# ---------------------------------------------------------------------------------------------- component map
def _map_from_label_mapping(path: Path) -> NDArray[np.int64]:
    """The dataset's ``label_mapping.txt`` (``IVT, I, V, T, IV, IT``; the format of the packaged official table,
    :func:`orchestrator.benchmarks.metrics_triplet.cholect50_triplet_maps`)."""
    read_text_lines(path, "CholecT50 label mapping")  # existence and encoding, with this adapter's messages
    try:
        return read_triplet_maps(path, NUM_TRIPLETS, COMPONENT_SIZES)
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None


def _map_from_categories(path: Path) -> NDArray[np.int64]:
    """Fallback: split each triplet name ``instrument,verb,target`` and look the parts up by name."""
    cats = _read_json(path).get("categories")
    if not isinstance(cats, dict) or not all(k in cats for k in ("triplet", "instrument", "verb", "target")):
        raise BenchmarkError(f"{path}: 'categories' lacks triplet/instrument/verb/target dictionaries")
    names = [{norm_name(str(n)): int(k) for k, n in cats[c].items()} for c in ("instrument", "verb", "target")]
    table = np.full((NUM_TRIPLETS, 3), -1, dtype=np.int64)
    for key, name in cats["triplet"].items():
        parts = [norm_name(p) for p in str(name).split(",")]
        if len(parts) != 3 or any(p not in n for p, n in zip(parts, names)) or not 0 <= int(key) < NUM_TRIPLETS:
            raise BenchmarkError(f"{path}: categories.triplet[{key!r}] = {name!r} is not 'instrument,verb,target'")
        table[int(key)] = [n[p] for p, n in zip(parts, names)]
    if (table < 0).any():
        raise BenchmarkError(f"{path}: categories.triplet does not cover all {NUM_TRIPLETS} triplets")
    return table


def triplet_component_map(root: Path) -> NDArray[np.int64]:
    """[100, 3] int64 array: row k = (instrument, verb, target) ids of triplet k, parsed from the dataset's own
    ``label_mapping.txt`` (or, if absent, from ``categories`` of the first ``labels/*.json``)."""
    mapping = Path(root) / "label_mapping.txt"
    if mapping.is_file():
        return _map_from_label_mapping(mapping)
    labels = sorted((Path(root) / "labels").glob("*.json"))
    if not labels:
        raise BenchmarkError(f"CholecT50: neither {mapping} nor any {Path(root) / 'labels'}/*.json exists")
    return _map_from_categories(labels[0])


def triplet_names(root: Path) -> list[str]:
    """The 100 triplet names (``instrument,verb,target``) from ``categories.triplet`` of the first label file."""
    labels = sorted((Path(root) / "labels").glob("*.json"))
    if not labels:
        raise BenchmarkError(f"CholecT50: no {Path(root) / 'labels'}/*.json")
    cats = _read_json(labels[0]).get("categories", {})
    trip = cats.get("triplet") if isinstance(cats, dict) else None
    if not isinstance(trip, dict) or len(trip) != NUM_TRIPLETS:
        raise BenchmarkError(f"{labels[0]}: categories.triplet must map {NUM_TRIPLETS} ids to names")
    return [str(trip[k]) for k in sorted(trip, key=int)]


# ------------------------------------------------------------------------------------------------- labels
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BenchmarkError(f"CholecT50 label file: {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a JSON object")
    return data


def _ids(values: list[Any], limit: int, path: Path, frame: str, field: str) -> list[int]:
    out = set()
    for v in values:
        k = int(v)
        if k == -1:
            continue
        if not 0 <= k < limit:
            raise BenchmarkError(f"{path}: frame {frame}: {field} id {k} outside 0..{limit - 1}")
        out.add(k)
    return sorted(out)


def parse_frame(path: Path, frame: str, instances: Any) -> dict[str, Any]:
    """One frame's instance list -> {"triplets", "instruments", "verbs", "targets", "phase"}."""
    if not isinstance(instances, list):
        raise BenchmarkError(f"{path}: annotations[{frame!r}] must be a list of instances")
    for j, inst in enumerate(instances):
        if not isinstance(inst, list) or len(inst) != 15:
            raise BenchmarkError(f"{path}: frame {frame} instance {j}: expected a 15-item vector, got {inst!r}")
        if not all(isinstance(x, (int, float)) for x in inst):
            raise BenchmarkError(f"{path}: frame {frame} instance {j}: non-numeric value in {inst!r}")
    phases = sorted({int(inst[14]) for inst in instances if int(inst[14]) != -1})
    return {
        "triplets": _ids([inst[0] for inst in instances], NUM_TRIPLETS, path, frame, "triplet"),
        "instruments": _ids([inst[1] for inst in instances], NUM_INSTRUMENTS, path, frame, "instrument"),
        "verbs": _ids([inst[7] for inst in instances], NUM_VERBS, path, frame, "verb"),
        "targets": _ids([inst[8] for inst in instances], NUM_TARGETS, path, frame, "target"),
        "phase": phases[0] if phases else None,
    }


def video_samples(root: Path, vid: str) -> list[Sample]:
    path = root / "labels" / f"{vid}.json"
    data = _read_json(path)
    ann = data.get("annotations")
    if not isinstance(ann, dict):
        raise BenchmarkError(f"{path}: missing 'annotations' object")
    fps = float(data.get("fps") or 1.0)
    folder = root / "videos" / vid
    if not folder.is_dir():
        raise BenchmarkError(f"CholecT50 frame folder: {folder} does not exist")
    out: list[Sample] = []
    for key in sorted(ann, key=lambda k: int(k) if str(k).lstrip("-").isdigit() else -1):
        if not str(key).isdigit():
            raise BenchmarkError(f"{path}: annotation key {key!r} is not a frame id")
        info = parse_frame(path, key, ann[key])
        frame = int(key)
        out.append(Sample(
            sample_id=f"{vid}@{frame:06d}", video_id=vid, source=str(folder), time_s=frame / fps,
            label=info.pop("triplets"), meta={**info, "frame": frame, "frame_file": f"{frame:06d}.png",
                                              "frames_fps": fps}))
    return out


@register_adapter("cholect50")
def load_cholect50(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """Official ``cholect50-crossval`` when ``kind="folds"`` (``spec.splits.ids`` = ``fold1..fold5``,
    ``fold`` = the held-out CAMMA fold number, val = last 5 videos of the remaining list); with
    ``kind="official"`` ``ids`` must give train/val/test (e.g. the challenge or Rendezvous split)."""
    if spec.splits.kind == "folds":
        fold = 1 if spec.splits.fold is None else spec.splits.fold
        groups = cholect50_fold_groups(spec.splits.ids, fold)
    else:
        groups = official_groups(spec)
    out: list[Sample] = []
    for vid in select_split(spec, split, groups):
        out += video_samples(root, vid)
    return out
