"""Phase-recognition adapters whose labels are not per-frame text files: OphNet (one interval CSV for all
videos, split column included) and PmLR50 (per-split pickles of per-second labels).

Same sample contract as :mod:`orchestrator.benchmarks.adapters.phase`.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from orchestrator.benchmarks.adapters.common import (
    find_existing,
    find_video,
    frame_folder_meta,
    parse_float,
    parse_int,
    read_csv_rows,
    row_error,
    timeline_samples,
)
from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import (
    SPLITS,
    intervals_at_sample_fps,
    labels_at_sample_fps,
    official_groups,
    select_split,
)

# ---------------------------------------------------------------------------------------------------- OphNet
OPHNET_CSV_CANDIDATES: tuple[str, ...] = (
    "annotation/OphNet2024_loca_challenge_phase.csv",
    "OphNet2024_loca_challenge_phase.csv",
)


def _ophnet_table(path: Path, spec: BenchmarkSpec) -> tuple[dict[str, list], dict[str, str]]:
    """video_id -> [(start, end, class id, line)], video_id -> split (must be the same on every row)."""
    cols = ["video_id", "start", "end", "split", "phase_id"]
    intervals: dict[str, list] = {}
    split_of: dict[str, str] = {}
    for line, row in read_csv_rows(path, f"{spec.name} phase CSV", cols):
        vid = row["video_id"]
        start = parse_float(row["start"], path, line, "start")
        end = parse_float(row["end"], path, line, "end")
        phase = parse_int(row["phase_id"], path, line, "phase_id")
        sp = row["split"].lower()
        if not vid:
            raise row_error(path, line, "field 'video_id' is empty")
        if end < start:
            raise row_error(path, line, f"fields 'start'/'end': end {end} < start {start}")
        if not 0 <= phase < len(spec.classes):
            raise row_error(path, line, f"field 'phase_id': {phase} outside 0..{len(spec.classes) - 1}")
        if sp not in SPLITS or split_of.setdefault(vid, sp) != sp:
            raise row_error(path, line, f"field 'split': {row['split']!r} invalid or differs from earlier rows "
                                        f"of {vid} ({split_of.get(vid)!r})")
        intervals.setdefault(vid, []).append((start, end, phase))
    return intervals, split_of


@register_adapter("ophnet_phase")
def load_ophnet(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``annotation/OphNet2024_loca_challenge_phase.csv`` (``video_id,start,end,split,surgery_id,phase_id``;
    seconds) and ``videos/<video_id>.mp4``. The official split comes from the ``split`` column. Instant t is
    labelled by the interval with start <= t < end (latest start wins on overlaps); instants in gaps are
    skipped. ``phase_id`` is the class id."""
    path = find_existing(root, OPHNET_CSV_CANDIDATES, f"{spec.name} phase CSV")
    intervals, split_of = _ophnet_table(path, spec)
    from_files = {s: sorted(v for v, sp in split_of.items() if sp == s) for s in SPLITS}
    out: list[Sample] = []
    for vid in select_split(spec, split, official_groups(spec, from_files)):
        if vid not in intervals:
            raise BenchmarkError(f"{spec.name}: video {vid} of the split has no rows in {path}")
        source = find_video(root, [f"videos/{vid}", vid], f"{spec.name} video {vid}")
        points = [(t, lab, round(t)) for t, lab in intervals_at_sample_fps(intervals[vid], spec.sample_fps)]
        out += timeline_samples(vid, source, points, frame_folder_meta(source, spec.sample_fps))
    return out


# ---------------------------------------------------------------------------------------------------- PmLR50
class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, numbers, strings and numpy scalars/arrays (no arbitrary code)."""

    ALLOWED: frozenset[tuple[str, str]] = frozenset({
        ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
        ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def load_plain_pickle(path: Path, what: str) -> Any:
    if not path.is_file():
        raise BenchmarkError(f"{what}: {path} does not exist")
    try:
        with path.open("rb") as fh:
            return _PlainUnpickler(fh).load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed file
        raise BenchmarkError(f"{what}: {path} is not a readable label pickle ({exc})") from None


def _pmlr50_rows(path: Path, vid: str, entries: Any, spec: BenchmarkSpec) -> list[tuple[int, int]]:
    if not isinstance(entries, (list, tuple)) or not entries:
        raise BenchmarkError(f"{path}: video {vid!r}: expected a non-empty list of frame records")
    rows: dict[int, int] = {}
    for k, rec in enumerate(entries):
        where = f"{path}: video {vid!r} record {k}"
        if not isinstance(rec, dict) or "frame_id" not in rec or "phase_gt" not in rec:
            raise BenchmarkError(f"{where}: expected a dict with 'frame_id' and 'phase_gt'")
        try:
            frame, phase = int(rec["frame_id"]), int(rec["phase_gt"])
        except (TypeError, ValueError):
            raise BenchmarkError(f"{where}: 'frame_id'/'phase_gt' are not integers") from None
        if not 0 <= phase < len(spec.classes) or frame < 0 or frame in rows:
            raise BenchmarkError(f"{where}: phase_gt {phase} outside 0..{len(spec.classes) - 1}, "
                                 f"or negative/duplicate frame_id {frame}")
        rows[frame] = phase
    return sorted(rows.items())


def _pmlr50_pickle(root: Path, split: str, spec: BenchmarkSpec) -> tuple[Path, dict]:
    names = [f"1fps{split}.pickle", f"1fps_{split}.pickle", "1fps.pickle"]
    path = find_existing(root / "labels" / split, names, f"{spec.name} {split} labels")
    data = load_plain_pickle(path, f"{spec.name} {split} labels")
    if not isinstance(data, dict):
        raise BenchmarkError(f"{path}: expected a dict video_id -> frame records, got {type(data).__name__}")
    return path, {str(k): v for k, v in data.items()}


@register_adapter("pmlr50")
def load_pmlr50(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """``labels/{train,val,test}/1fps{split}.pickle``: ``{video_id: [{"frame_id", "phase_gt", ...}, ...]}`` at
    1 fps (``frame_id`` = second). Source: ``videos/<video_id>.mp4`` or a 1-fps frame folder
    ``frames/<video_id>/`` (or ``frames/<split>/<video_id>/``)."""
    tables = {s: _pmlr50_pickle(root, s, spec) for s in SPLITS}
    from_files = {s: sorted(tables[s][1]) for s in SPLITS}
    out: list[Sample] = []
    owner = {vid: s for s in SPLITS for vid in tables[s][1]}
    for vid in select_split(spec, split, official_groups(spec, from_files)):
        if vid not in owner:
            raise BenchmarkError(f"{spec.name}: video {vid} is in no label pickle")
        path, table = tables[owner[vid]]
        rows = _pmlr50_rows(path, vid, table[vid], spec)
        source = find_video(root, [f"videos/{vid}", f"frames/{vid}", f"frames/{owner[vid]}/{vid}"],
                            f"{spec.name} video {vid}")
        points = labels_at_sample_fps(rows, float(spec.annotation_fps or 1.0), spec.sample_fps)
        out += timeline_samples(vid, source, points, frame_folder_meta(source, spec.sample_fps))
    return out
