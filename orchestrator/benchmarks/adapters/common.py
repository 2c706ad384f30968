"""File-reading helpers shared by the adapters: one clear :class:`BenchmarkError` per problem, naming the file
and, for annotation rows, the line and field. Nothing here decodes a video."""
from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def row_error(path: Path, line: int, msg: str) -> BenchmarkError:
    """``<file>:<line>: <msg>``."""
    return BenchmarkError(f"{path}:{line}: {msg}")


def parse_int(value: str, path: Path, line: int, field: str) -> int:
    try:
        f = float(value.strip())
    except (ValueError, AttributeError):
        raise row_error(path, line, f"field {field!r}: expected an integer, got {value!r}") from None
    if f != int(f):
        raise row_error(path, line, f"field {field!r}: expected an integer, got {value!r}")
    return int(f)


def parse_float(value: str, path: Path, line: int, field: str) -> float:
    try:
        return float(value.strip())
    except (ValueError, AttributeError):
        raise row_error(path, line, f"field {field!r}: expected a number, got {value!r}") from None


def read_text_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based line numbers."""
    if not path.is_file():
        raise BenchmarkError(f"{what}: {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BenchmarkError(f"{what}: {path} is not UTF-8 text ({exc})") from None
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]


def read_whitespace_table(path: Path, what: str, header: bool) -> list[tuple[int, list[str]]]:
    """Rows split on any whitespace (tabs, runs of spaces); the first non-empty line is dropped if ``header``."""
    lines = read_text_lines(path, what)
    if header:
        lines = lines[1:]
    return [(i, s.split()) for i, s in lines]


def read_csv_rows(path: Path, what: str, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """CSV rows as dicts keyed by stripped header names; checks the ``required`` columns exist (case-sensitive
    after stripping) and that no row is short."""
    lines = read_text_lines(path, what)
    if not lines:
        raise BenchmarkError(f"{what}: {path} is empty")
    reader = csv.reader([s for _, s in lines], skipinitialspace=True)
    rows = list(reader)
    head = [h.strip() for h in rows[0]]
    missing = [c for c in required if c not in head]
    if missing:
        raise row_error(path, lines[0][0], f"missing column(s) {missing}; header is {head}")
    out: list[tuple[int, dict[str, str]]] = []
    for (line, _), row in zip(lines[1:], rows[1:]):
        if len(row) < len(head):
            raise row_error(path, line, f"expected {len(head)} fields {head}, got {len(row)}: {row}")
        out.append((line, {h: v.strip() for h, v in zip(head, row)}))
    return out


def find_existing(root: Path, candidates: Iterable[str], what: str) -> Path:
    """The first of ``root / c`` that exists, else one error listing every candidate."""
    cands = list(candidates)
    for c in cands:
        p = root / c
        if p.exists():
            return p
    raise BenchmarkError(f"{what}: none of {[str(root / c) for c in cands]} exists")


def find_video(root: Path, stems: Sequence[str], what: str) -> Path:
    """A video ``<stem><suffix>`` (any common container) or a frame folder ``<stem>/``, relative to ``root``."""
    cands = [f"{s}{suf}" for s in stems for suf in VIDEO_SUFFIXES] + list(stems)
    for c in cands:
        p = root / c
        if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or p.is_dir():
            return p
    raise BenchmarkError(f"{what}: no video file ({'/'.join(VIDEO_SUFFIXES)}) or frame folder for "
                         f"{[str(root / s) for s in stems]}")


@functools.lru_cache(maxsize=4096)
def norm_name(name: str) -> str:
    """Class-name normal form for matching: lower case, only letters and digits."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def class_lookup(spec: BenchmarkSpec) -> dict[str, int]:
    """Normalised class name -> class id for ``spec.classes``."""
    return {norm_name(c): i for i, c in enumerate(spec.classes)}


def label_from_name(name: str, lookup: dict[str, int], path: Path, line: int, field: str) -> int:
    try:
        return lookup[norm_name(name)]
    except KeyError:
        raise row_error(path, line, f"field {field!r}: unknown class {name!r}") from None


def label_from_value(value: str, spec: BenchmarkSpec, path: Path, line: int, field: str) -> int:
    """A class given either by name (matched to ``spec.classes``) or by integer id."""
    lookup = class_lookup(spec)
    if norm_name(value) in lookup:
        return lookup[norm_name(value)]
    try:
        i = int(value.strip())
    except ValueError:
        raise row_error(path, line, f"field {field!r}: unknown class {value!r}; known {spec.classes}") from None
    if not 0 <= i < len(spec.classes):
        raise row_error(path, line, f"field {field!r}: class id {i} outside 0..{len(spec.classes) - 1}")
    return i


def trailing_int(text: str) -> int | None:
    """The last run of digits in ``text`` (e.g. ``01_1_000123`` -> 123), or None."""
    m = re.search(r"(\d+)(?!.*\d)", text)
    return int(m.group(1)) if m else None


def timeline_samples(
    video_id: str, source: Path, points: Sequence[tuple[float, int, int]], extra: dict | None = None
) -> list[Sample]:
    """One :class:`Sample` per (time_s, label, annotation frame) instant of one video."""
    base = dict(extra or {})
    return [
        Sample(sample_id=f"{video_id}@{t:.3f}", video_id=video_id, source=str(source), time_s=float(t),
               label=int(lab), meta={**base, "frame": int(frame)})
        for t, lab, frame in points
    ]


def frame_folder_meta(source: Path, fps: float) -> dict:
    """Meta for a frame-folder source: its frames are ``fps`` frames per second, in sorted file-name order."""
    return {"frames_fps": fps} if source.is_dir() else {}
