"""Action-recognition adapters (one Sample per clip, ``time_s=None``): SurgicalActions160, AVOS, PolypDiag.

For AVOS the clip is a labelled segment of a longer video: ``meta`` carries ``start_s``/``end_s`` (and/or
``start_frame``/``end_frame``) and the decoder must read only that segment.
"""
from __future__ import annotations

import re
from pathlib import Path

from orchestrator.benchmarks.adapters.common import (
    VIDEO_SUFFIXES,
    class_lookup,
    find_existing,
    find_video,
    label_from_name,
    norm_name,
    parse_float,
    parse_int,
    read_csv_rows,
    read_text_lines,
    row_error,
)
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import fold_groups, official_groups, select_split, stratified_folds

# ---------------------------------------------------------------------------------------- SurgicalActions160
SA160_NUM_FOLDS = 5
"""Our fixed protocol: 5 seeded folds stratified by class (2 clips per class per fold); fold k = test,
fold (k+1) % 5 = val, the other 3 folds = train. Report the mean over the 5 folds."""


def _sa160_clips(root: Path, spec: BenchmarkSpec) -> dict[str, tuple[Path, int]]:
    """clip id -> (video path, class id) from ``NN_<class name>/<clip>.mp4`` folders (NN = 01..16)."""
    if not root.is_dir():
        raise BenchmarkError(f"{spec.name}: {root} does not exist")
    clips: dict[str, tuple[Path, int]] = {}
    seen: set[int] = set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        m = re.fullmatch(r"(\d{2})_(.+)", folder.name)
        if not m:
            continue
        cid = int(m.group(1)) - 1
        if not 0 <= cid < len(spec.classes):
            raise BenchmarkError(f"{spec.name}: class folder {folder} has number outside 01..{len(spec.classes):02d}")
        seen.add(cid)
        for vid in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
            if vid.stem in clips:
                raise BenchmarkError(f"{spec.name}: clip id {vid.stem} appears twice ({vid})")
            clips[vid.stem] = (vid, cid)
    missing = [f"{i + 1:02d}_{spec.classes[i]}" for i in range(len(spec.classes)) if i not in seen]
    if missing:
        raise BenchmarkError(f"{spec.name}: class folder(s) {missing} missing under {root}")
    return clips


@register_adapter("surgical_actions160")
def load_sa160(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """One folder per class (``01_abdominal_access/01_08.mp4``); class id = folder number - 1. No official
    split: with ``kind="folds"`` the seeded stratified folds of :data:`SA160_NUM_FOLDS` apply."""
    clips = _sa160_clips(root, spec)
    if spec.splits.kind == "folds":
        labels = {cid: lab for cid, (_, lab) in clips.items()}
        groups = fold_groups(stratified_folds(labels, SA160_NUM_FOLDS, spec.splits.seed), spec.splits.fold or 0)
    else:
        groups = official_groups(spec)
    out: list[Sample] = []
    for cid in select_split(spec, split, groups, {c: lab for c, (_, lab) in clips.items()}):
        if cid not in clips:
            raise BenchmarkError(f"{spec.name}: clip {cid} of the split not found under {root}")
        path, lab = clips[cid]
        out.append(Sample(sample_id=cid, video_id=cid, source=str(path), label=lab, meta={}))
    return out


# ------------------------------------------------------------------------------------------------------ AVOS
AVOS_DISCARDED = frozenset({"none", "abstain"})
AVOS_CSV = "open_surgery_temporal_annotations_Jan16.csv"


def _video_list(path: Path, what: str) -> list[str]:
    """``train.csv``/``test.csv``: a header line, then one video id per line (first field)."""
    lines = read_text_lines(path, what)[1:]
    return [s.split(",")[0].strip() for _, s in lines if s.split(",")[0].strip()]


def _avos_segment(row: dict[str, str], path: Path, line: int) -> dict[str, float]:
    span: dict[str, float] = {}
    for unit, (a, b) in (("s", ("start_seconds", "end_seconds")), ("frame", ("start_frame", "end_frame"))):
        if row.get(a, "") != "" and row.get(b, "") != "":
            lo, hi = parse_float(row[a], path, line, a), parse_float(row[b], path, line, b)
            if hi < lo:
                raise row_error(path, line, f"fields {a!r}/{b!r}: end {hi} < start {lo}")
            span.update({f"start_{unit}": lo, f"end_{unit}": hi})
    if not span:
        raise row_error(path, line, "needs start_seconds/end_seconds or start_frame/end_frame")
    return span


@register_adapter("avos")
def load_avos(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``open_surgery_temporal_annotations_Jan16.csv`` (``video_id, label`` + segment bounds in seconds and/or
    frames), ``train.csv``/``test.csv`` video lists and ``videos/<video_id>.mp4``. Labels ``none``/``abstain``
    are discarded; one Sample per remaining segment. Val is a seeded video-level part of train."""
    ann = find_existing(root, [AVOS_CSV, f"annotations/{AVOS_CSV}"], f"{spec.name} temporal annotations")
    lists = {s: _video_list(root / f"{s}.csv", f"{spec.name} {s} video list") for s in ("train", "test")}
    vids = set(select_split(spec, split, official_groups(spec, lists)))
    lookup = class_lookup(spec)
    out: list[Sample] = []
    sources: dict[str, Path] = {}
    for line, row in read_csv_rows(ann, f"{spec.name} temporal annotations", ["video_id", "label"]):
        vid = row["video_id"]
        if vid not in vids or norm_name(row["label"]) in AVOS_DISCARDED:
            continue
        lab = label_from_name(row["label"], lookup, ann, line, "label")
        span = _avos_segment(row, ann, line)
        if vid not in sources:
            sources[vid] = find_video(root, [f"videos/{vid}", f"video/{vid}"], f"{spec.name} video {vid}")
        first = span.get("start_s", span.get("start_frame"))
        out.append(Sample(sample_id=f"{vid}@{first:g}#L{line}", video_id=vid, source=str(sources[vid]),
                          label=lab, meta={**span, "line": line}))
    return out


# ------------------------------------------------------------------------------------------------- PolypDiag
def _polypdiag_list(path: Path, spec: BenchmarkSpec) -> dict[str, tuple[str, int]]:
    """``<video>.mp4,<label>`` lines -> video id -> (file name, label)."""
    out: dict[str, tuple[str, int]] = {}
    for line, text in read_text_lines(path, f"{spec.name} split file"):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not parts[0]:
            raise row_error(path, line, f"expected '<video>.mp4,<label>', got {text!r}")
        lab = parse_int(parts[1], path, line, "label")
        if not 0 <= lab < len(spec.classes):
            raise row_error(path, line, f"field 'label': {lab} outside 0..{len(spec.classes) - 1}")
        out[Path(parts[0]).stem] = (parts[0], lab)
    return out


@register_adapter("polypdiag")
def load_polypdiag(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """Endo-FM release: ``videos/*.mp4`` and ``splits/{train,val}.txt``. Its ``val.txt`` is the test set (as
    in Endo-FM); our val is a seeded, label-stratified 20 % of ``train.txt``."""
    lists = {"train": _polypdiag_list(root / "splits" / "train.txt", spec),
             "test": _polypdiag_list(root / "splits" / "val.txt", spec)}
    table = {**lists["train"], **lists["test"]}
    strata = {vid: lab for vid, (_, lab) in table.items()}
    groups = official_groups(spec, {s: sorted(v) for s, v in lists.items()})
    out: list[Sample] = []
    for vid in select_split(spec, split, groups, strata):
        if vid not in table:
            raise BenchmarkError(f"{spec.name}: video {vid} of the split is in no split file")
        name, lab = table[vid]
        path = root / "videos" / name
        if not path.is_file():
            raise BenchmarkError(f"{spec.name} video: {path} does not exist")
        out.append(Sample(sample_id=vid, video_id=vid, source=str(path), label=lab, meta={}))
    return out
