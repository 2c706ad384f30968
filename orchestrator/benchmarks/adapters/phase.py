"""Phase-recognition adapters with per-frame annotation files: Cholec80, M2CAI16-workflow, AutoLaparo,
EgoSurgery-Phase, PitVis.

Each yields one :class:`Sample` per labelled instant at ``spec.sample_fps`` (1 fps): ``source`` is the video
(or a frame folder), ``time_s`` the instant, ``label`` the phase id; the clip is the ``clip_frames`` frames
ending at ``time_s``. Per-frame labels at ``spec.annotation_fps`` are subsampled with
:func:`~orchestrator.benchmarks.splits.labels_at_sample_fps` (label at second s = annotation of frame
round(s * fps)). Only the videos of the requested split are read; each must exist.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.benchmarks.adapters.common import (
    class_lookup,
    find_existing,
    find_video,
    frame_folder_meta,
    label_from_name,
    parse_int,
    read_csv_rows,
    read_whitespace_table,
    row_error,
    timeline_samples,
    trailing_int,
)
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import labels_at_sample_fps, official_groups, select_split

LabelFn = Callable[[str, Path, int], int | None]  # (raw label, file, line) -> class id, or None to drop the row


def _annotation_fps(spec: BenchmarkSpec) -> float:
    if not spec.annotation_fps:
        raise BenchmarkError(f"{spec.name}: spec.annotation_fps must be set for per-frame annotations")
    return float(spec.annotation_fps)


def parse_frame_table(path: Path, what: str, to_label: LabelFn) -> list[tuple[int, int]]:
    """``<frame> <label>`` rows separated by whitespace; a first line whose first field is not a number is a
    header. Returns (frame, class id) with unique frames; rows mapped to None are dropped."""
    rows = read_whitespace_table(path, what, header=False)
    if rows and not rows[0][1][0].replace(".", "", 1).isdigit():
        rows = rows[1:]
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    for line, fields in rows:
        if len(fields) < 2:
            raise row_error(path, line, f"expected '<frame> <phase>', got {' '.join(fields)!r}")
        frame = parse_int(fields[0], path, line, "Frame")
        if frame < 0 or frame in seen:
            raise row_error(path, line, f"field 'Frame': negative or duplicate frame {frame}")
        seen.add(frame)
        label = to_label(" ".join(fields[1:]), path, line)
        if label is not None:
            out.append((frame, label))
    return out


def by_name(spec: BenchmarkSpec) -> LabelFn:
    lookup = class_lookup(spec)
    return lambda raw, path, line: label_from_name(raw, lookup, path, line, "Phase")


def one_based(spec: BenchmarkSpec) -> LabelFn:
    def fn(raw: str, path: Path, line: int) -> int:
        k = parse_int(raw, path, line, "Phase")
        if not 1 <= k <= len(spec.classes):
            raise row_error(path, line, f"field 'Phase': {k} outside 1..{len(spec.classes)}")
        return k - 1

    return fn


def per_frame_video(
    spec: BenchmarkSpec, video_id: str, ann: Path, source: Path, rows: list[tuple[int, int]], extra: dict,
    folder_fps: float = 1.0,
) -> list[Sample]:
    """Subsample one video's per-frame labels to ``spec.sample_fps`` instants. ``folder_fps``: frame rate of a
    frame-folder source (recorded as ``meta["frames_fps"]``)."""
    if not rows:
        raise BenchmarkError(f"{spec.name}: {ann} has no labelled frames")
    points = labels_at_sample_fps(rows, _annotation_fps(spec), spec.sample_fps)
    return timeline_samples(video_id, source, points, {**extra, **frame_folder_meta(source, folder_fps)})


# ------------------------------------------------------------------------------------------------ Cholec80
@register_adapter("cholec80")
def load_cholec80(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``videos/videoXX.mp4`` + ``phase_annotations/videoXX-phase.txt`` (``Frame<TAB>Phase`` at 25 fps)."""
    vids = select_split(spec, split, official_groups(spec))
    out: list[Sample] = []
    for vid in vids:
        ann = root / "phase_annotations" / f"{vid}-phase.txt"
        rows = parse_frame_table(ann, f"{spec.name} phase annotation", by_name(spec))
        source = find_video(root / "videos", [vid], f"{spec.name} video {vid}")
        out += per_frame_video(spec, vid, ann, source, rows, {})
    return out


# ------------------------------------------------------------------------------------------------ M2CAI16
@register_adapter("m2cai16_workflow")
def load_m2cai16(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``train_dataset/workflow_video_XX.{txt,mp4}`` and ``test_dataset/test_workflow_video_XX.{txt,mp4}``
    (header, then ``frame phase_name`` at 25 fps). Sidecar ``*_timestamp.txt``/``*_pred.txt`` are never read."""
    vids = select_split(spec, split, official_groups(spec))
    out: list[Sample] = []
    for vid in vids:
        folder = root / ("test_dataset" if vid.startswith("test_") else "train_dataset")
        ann = folder / f"{vid}.txt"
        rows = parse_frame_table(ann, f"{spec.name} annotation", by_name(spec))
        source = find_video(folder, [vid], f"{spec.name} video {vid}")
        out += per_frame_video(spec, vid, ann, source, rows, {})
    return out


# ---------------------------------------------------------------------------------------------- AutoLaparo
@register_adapter("autolaparo")
def load_autolaparo(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """Task 1: ``labels/label_XX.txt`` (``Frame Phase``, 1 fps, phases 1-7 -> ids 0-6) and ``videos/XX.mp4``
    (or a 1-fps frame folder ``frames/XX/``)."""
    vids = select_split(spec, split, official_groups(spec))
    out: list[Sample] = []
    for vid in vids:
        ann = root / "labels" / f"label_{vid}.txt"
        rows = parse_frame_table(ann, f"{spec.name} label file", one_based(spec))
        source = find_video(root, [f"videos/{vid}", f"frames/{vid}"], f"{spec.name} video {vid}")
        out += per_frame_video(spec, vid, ann, source, rows, {})
    return out


# ---------------------------------------------------------------------------------------------- EgoSurgery
def _egosurgery_rows(path: Path, spec: BenchmarkSpec) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """(frame number, class id) rows and frame number -> the file's ``Frame`` value (a frame name)."""
    lookup = class_lookup(spec)
    out: list[tuple[int, int]] = []
    names: dict[int, str] = {}
    for line, row in read_csv_rows(path, f"{spec.name} phase annotation", ["Frame", "Phase"]):
        frame = trailing_int(row["Frame"])
        if frame is None or frame in names:
            raise row_error(path, line, f"field 'Frame': no frame number or duplicate frame in {row['Frame']!r}")
        names[frame] = row["Frame"]
        out.append((frame, label_from_name(row["Phase"], lookup, path, line, "Phase")))
    return out, names


@register_adapter("egosurgery_phase")
def load_egosurgery(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``annotations/phase/XX_Y.csv`` (``Frame, Phase``; XX = case, Y = view/part). Splits are by case XX; each
    XX_Y file is its own timeline (``video_id = "XX_Y"``, ``meta["case_id"] = "XX"``). Source:
    ``videos/XX_Y.mp4`` or a frame folder ``images/XX_Y/`` / ``frames/XX_Y/`` whose files are the annotated
    frames (``meta["frame_name"]`` = the matching ``Frame`` value, ``meta["frames_fps"]`` = annotation fps)."""
    cases = select_split(spec, split, official_groups(spec))
    ann_dir = root / "annotations" / "phase"
    if not ann_dir.is_dir():
        raise BenchmarkError(f"{spec.name} annotations: {ann_dir} does not exist")
    out: list[Sample] = []
    for case in cases:
        files = sorted(ann_dir.glob(f"{case}_*.csv"))
        if not files:
            raise BenchmarkError(f"{spec.name}: no annotation file {ann_dir}/{case}_*.csv for case {case}")
        for ann in files:
            vid = ann.stem
            rows, names = _egosurgery_rows(ann, spec)
            source = find_video(root, [f"videos/{vid}", f"images/{vid}", f"frames/{vid}"], f"{spec.name} {vid}")
            samples = per_frame_video(spec, vid, ann, source, rows, {"case_id": case}, _annotation_fps(spec))
            for s in samples:
                s.meta["frame_name"] = names[s.meta["frame"]]
            out += samples
    return out


# -------------------------------------------------------------------------------------------------- PitVis
PITVIS_DROPPED_STEPS: frozenset[int] = frozenset({-1, 11, 13})
PITVIS_KEPT_STEPS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14)
"""PitVis ``int_step`` values kept, in class-id order (step 1 -> id 0, ..., step 12 -> id 10, step 14 -> id 11)."""


def _pitvis_rows(path: Path) -> list[tuple[int, int]]:
    cols = ["int_time", "int_step"]
    out: list[tuple[int, int]] = []
    seen: set[int] = set()
    for line, row in read_csv_rows(path, "PitVis annotation", cols):
        t = parse_int(row["int_time"], path, line, "int_time")
        step = parse_int(row["int_step"], path, line, "int_step")
        if t < 0 or t in seen:
            raise row_error(path, line, f"field 'int_time': negative or duplicate second {t}")
        seen.add(t)
        if step in PITVIS_DROPPED_STEPS:
            continue
        if step not in PITVIS_KEPT_STEPS:
            raise row_error(path, line, f"field 'int_step': unknown step {step}")
        out.append((t, PITVIS_KEPT_STEPS.index(step)))
    return out


@register_adapter("pitvis")
def load_pitvis(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``annotations_XX.csv`` (``int_video, int_time, int_step, ...``, 1 fps) and ``video_XX.mp4``, either in
    ``root`` or in ``root/annotations`` and ``root/videos``. Rows with step -1, 11 or 13 are dropped (the
    official metric ignores them); the 12 remaining steps become ids 0-11."""
    vids = select_split(spec, split, official_groups(spec))
    out: list[Sample] = []
    for vid in vids:
        ann = find_existing(root, [f"annotations_{vid}.csv", f"annotations/annotations_{vid}.csv"],
                            f"{spec.name} annotation for video {vid}")
        rows = _pitvis_rows(ann)
        source = find_video(root, [f"video_{vid}", f"videos/video_{vid}"], f"{spec.name} video {vid}")
        out += per_frame_video(spec, vid, ann, source, rows, {})
    return out
