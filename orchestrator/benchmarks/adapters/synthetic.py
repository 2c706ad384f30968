"""Adapter for the synthetic benchmark suite (``orchestrator.synthetic.suite``): one on-disk layout,
six benchmarks (one per task type), all read by the ``synthetic_suite`` adapter.

On disk (written by :func:`orchestrator.synthetic.suite.build_synthetic_suite`)::

    <root>/videos/...                     the suite's synthetic corpus (generate_corpus: mp4 + npz + json)
    <root>/skill_videos/...               extra short videos for the skill benchmark
    <root>/clips/<video_id>/<k>.mp4       action clips cut from the videos (same fps and size)
    <root>/frames/<video_id>/<sec>.png    1-fps frames (RGB) for segmentation and depth
    <root>/masks/<video_id>/<sec>.png     blob masks (uint8, 0 / 255)
    <root>/depth/<video_id>/<sec>.png     uint16 depth, mm = raw / 32; 0 = invalid (instrument pixels)
    <root>/index.json                     :class:`SuiteIndex`: splits, vocabularies, every sample (relative paths)
    <root>/.complete                      :class:`SuiteMarker`, written LAST (absent = incomplete suite)

The adapter picks ``index.samples[spec.task]`` and keeps the samples whose ``video_id`` is in the requested
split (``index.splits``, or ``spec.splits.ids`` when the spec names its own). Paths become absolute under
``root``; every referenced file must exist. It never decodes a video.

The split rule used at build time lives here too (:func:`deal_splits`, :func:`choose_splits`): video-level,
per source 20 % test / 20 % val (at least one video each) / the rest train, and of several seeded candidates
the one whose splits cover the most labels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.benchmarks.spec import BenchmarkError, BenchmarkSpec, Sample, SplitName, register_adapter
from orchestrator.benchmarks.splits import SPLITS, official_groups, seeded_order, select_split

SUITE_FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SUITE_MARKER = ".complete"
DEPTH_SCALE_MM = 1.0 / 32.0
"""Depth PNGs store round(depth_mm * 32) as uint16 (the generator quantises depth to 1/32 mm: lossless)."""
MAIN_TASKS = ("phase", "action", "triplet", "segmentation", "depth")   # built on the main videos (skill: extra)
_BUILD_HINT = "build it with orchestrator.synthetic.suite.build_synthetic_suite(root)"


class SuiteIndex(BaseModel):
    """``<root>/index.json``: everything the adapter needs; sample paths are relative to the root."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = SUITE_FORMAT_VERSION
    digest: str
    config: dict[str, Any]                        # the SuiteConfig it was built from
    splits: dict[str, list[str]]                  # train / val / test -> video ids (main and skill videos)
    phase_classes: list[str]                      # "<source>/<phase>"
    motion_types: list[str]
    triplets: list[tuple[int, int, int]]          # triplet class -> (instrument, verb, target) ids
    vocabularies: dict[str, list[str]]            # instruments, verbs, targets
    samples: dict[str, list[Sample]]              # task -> samples


class SuiteMarker(BaseModel):
    """``<root>/.complete``: written last; names every file the build wrote (relative to the root)."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = SUITE_FORMAT_VERSION
    digest: str
    files: list[str]
    seconds_taken: float


def read_marker(root: Path) -> SuiteMarker | None:
    try:
        return SuiteMarker.model_validate_json((Path(root) / SUITE_MARKER).read_text())
    except (OSError, ValidationError, ValueError):
        return None


def read_suite_index(root: str | Path, what: str = "synthetic suite") -> SuiteIndex:
    """The index of a complete suite under ``root``; one clear :class:`BenchmarkError` otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkError(f"{what}: {root} does not exist; {_BUILD_HINT}")
    marker = read_marker(root)
    if marker is None:
        raise BenchmarkError(f"{what}: {root} is incomplete (no valid {root / SUITE_MARKER} completion marker: "
                             f"the build was interrupted or never ran); {_BUILD_HINT}")
    path = root / INDEX_FILE
    try:
        index = SuiteIndex.model_validate_json(path.read_text())
    except OSError:
        raise BenchmarkError(f"{what}: {path} does not exist; {_BUILD_HINT}") from None
    except ValidationError as exc:
        raise BenchmarkError(f"{what}: {path} is not a valid suite index: {exc}") from None
    if index.digest != marker.digest or index.format_version != SUITE_FORMAT_VERSION:
        raise BenchmarkError(f"{what}: {path} (digest {index.digest}, format {index.format_version}) does not match "
                             f"{root / SUITE_MARKER} (digest {marker.digest}); rebuild with force=True")
    return index


# ------------------------------------------------------------------------------------------------------ splits
Coverage = dict[str, set[int]]


def deal_splits(by_source: dict[str, list[str]], seed: int, salt: str) -> dict[str, list[str]]:
    """Per source, in seeded order: the first 20 % (at least one) test, the next 20 % val, the rest train."""
    groups: dict[str, list[str]] = {s: [] for s in SPLITS}
    for source in sorted(by_source):
        order = seeded_order(by_source[source], seed, f"{salt}|{source}")
        n = max(1, round(0.2 * len(order)))
        groups["test"] += order[:n]
        groups["val"] += order[n:2 * n]
        groups["train"] += order[2 * n:]
    return {k: sorted(v) for k, v in groups.items()}


def label_coverage(samples: dict[str, list[Sample]]) -> Coverage:
    """The labels one video contributes per main task (segmentation / depth: {1} if it has a positive / any)."""
    cov: Coverage = {t: {int(s.label) for s in samples[t]} for t in ("phase", "action")}  # type: ignore[arg-type]
    cov["triplet"] = {k for s in samples["triplet"] for k in s.label}  # type: ignore[union-attr]
    cov["segmentation"] = {1} if any(s.meta["positive"] for s in samples["segmentation"]) else set()
    cov["depth"] = {1} if samples["depth"] else set()
    return cov


def _split_coverage(groups: dict[str, list[str]], cover: dict[str, Coverage]) -> dict[str, Coverage]:
    return {s: {t: set().union(*(cover[v][t] for v in vids)) for t in MAIN_TASKS} for s, vids in groups.items()}


def choose_splits(cover: dict[str, Coverage], by_source: dict[str, list[str]], seed: int,
                  candidates: int) -> dict[str, list[str]]:
    """The seeded per-source assignment (of ``candidates``) that maximises, in order: the number of (split, task)
    pairs with samples (segmentation: with a positive), the phase + action classes in train, those classes per
    split summed, the triplet classes per split summed. Ties go to the earlier candidate. Raises if a split
    still lacks a task."""
    def score(c: int) -> tuple[int, int, int, int, int]:
        per = _split_coverage(deal_splits(by_source, seed, f"split{c}"), cover)
        return (sum(bool(x) for p in per.values() for x in p.values()),
                len(per["train"]["phase"]) + len(per["train"]["action"]),
                sum(len(p["phase"]) + len(p["action"]) for p in per.values()),
                sum(len(p["triplet"]) for p in per.values()), -c)

    groups = deal_splits(by_source, seed, f"split{max(range(candidates), key=score)}")
    for split, per in _split_coverage(groups, cover).items():
        missing = [t for t, labels in per.items() if not labels]
        if missing:
            raise BenchmarkError(f"synthetic suite (seed {seed}): split {split!r} has no {missing} samples "
                                 f"(segmentation: none with the blob in view); use more or longer videos")
    return groups


def _absolute(root: Path, s: Sample, name: str) -> Sample:
    upd: dict[str, Any] = {"source": str(root / s.source)}
    if s.target_path is not None:
        upd["target_path"] = str(root / s.target_path)
    for p in upd.values():
        if not Path(p).is_file():
            raise BenchmarkError(f"{name}: {p} (sample {s.sample_id!r} in {root / INDEX_FILE}) does not exist; "
                                 f"rebuild the suite with force=True")
    return s.model_copy(update=upd)


@register_adapter("synthetic_suite")
def load_synthetic_suite(root: Path, split: SplitName, spec: BenchmarkSpec) -> list[Sample]:
    """Samples of ``spec.task`` from ``<root>/index.json`` whose video is in ``split``."""
    index = read_suite_index(root, spec.name)
    samples = index.samples.get(spec.task)
    if not samples:
        raise BenchmarkError(f"{spec.name}: {root / INDEX_FILE} field 'samples.{spec.task}' is empty or missing")
    keep = set(select_split(spec, split, official_groups(spec, index.splits)))
    return [_absolute(root, s, spec.name) for s in samples if s.video_id in keep]
