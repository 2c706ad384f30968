"""The synthetic suite's benchmark specs (``SYNTHETIC_BENCHMARKS``: synthetic-phase, -action, -triplet, -skill,
-segmentation, -depth) and their label vocabularies, derived from the generator's script. The files they read:
:mod:`orchestrator.synthetic.suite` writes them."""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from model.tasks import Task
from orchestrator.benchmarks.spec import BenchmarkSpec, SplitSpec
from orchestrator.synthetic.script import DEFAULT_VERB, INSTRUMENTS, MOTIONS, PROFILES, TARGETS, VERBS

ADAPTER = "synthetic_suite"

# ------------------------------------------------------------------------------------------------ vocabularies
PHASE_CLASSES: list[str] = [f"{src}/{ph}" for src, prof in PROFILES.items() for ph in prof.phases]
PHASE_OFFSET: dict[str, int] = {src: PHASE_CLASSES.index(f"{src}/{p.phases[0]}") for src, p in PROFILES.items()}


def _possible_triplets() -> list[tuple[int, int, int]]:
    """Every (instrument, verb, target) the generator's phase casting can produce: per profile, each phase's
    primary (tool, verb, target), and each helper instrument with verb ``idle`` or its default verb on any of
    the profile's targets. Sorted by (instrument, verb, target) id."""
    out: set[tuple[int, int, int]] = set()
    for prof in PROFILES.values():
        for tool, verb, target in zip(prof.tools, prof.verbs, prof.targets):
            if tool:
                out.add((INSTRUMENTS.index(tool), VERBS.index(verb), TARGETS.index(target)))
        for helper in prof.helpers:
            for verb in ("idle", DEFAULT_VERB[helper]):
                out.update((INSTRUMENTS.index(helper), VERBS.index(verb), TARGETS.index(t)) for t in prof.targets)
    return sorted(out)


TRIPLETS: tuple[tuple[int, int, int], ...] = tuple(_possible_triplets())
TRIPLET_NAMES: list[str] = [f"{INSTRUMENTS[i]},{VERBS[v]},{TARGETS[t]}" for i, v, t in TRIPLETS]
TRIPLET_ID: dict[tuple[int, int, int], int] = {ivt: k for k, ivt in enumerate(TRIPLETS)}


def suite_triplet_map() -> NDArray[np.int64]:
    """[n_triplets, 3] int64: row k = (instrument, verb, target) ids (into INSTRUMENTS / VERBS / TARGETS) of
    triplet class k, like CholecT50's component map; pass it as ``maps`` to ``triplet_metrics``."""
    return np.array(TRIPLETS, dtype=np.int64).reshape(-1, 3)


# ------------------------------------------------------------------------------------------------------ specs
_SPLITS = SplitSpec(kind="official", note=(
    "video-level, per source: 20% test, 20% val (>= 1 video each), the rest train (60/20/20 at 5 videos per "
    "source); of split_candidates seeded assignments (suite seed) the one covering most labels in every split; "
    "stored in <root>/index.json"))
_CLIP = ("source is the whole clip: decode clip_frames frames spread over it (meta duration_s; the default 2 s "
         "at 25 fps = 16 frames at sample_fps 8 from t=0). ")


def _spec(name: str, task: Task, notes: str, **kw: Any) -> BenchmarkSpec:
    """A suite spec: the task's metric set and primary metric (orchestrator.benchmarks.tasks)."""
    return BenchmarkSpec(name=name, task=task, adapter=ADAPTER, splits=_SPLITS,
                         notes="Synthetic (build_synthetic_suite). " + notes, **kw)


SYNTHETIC_BENCHMARKS: dict[str, BenchmarkSpec] = {s.name: s for s in [
    _spec("synthetic-phase", "phase", classes=PHASE_CLASSES, annotation_fps=1.0, notes=(
        "One sample per 1-fps instant of each main video; label = latent phase at frame round(t*fps); classes "
        "'<source>/<phase>' (7 per source).")),
    _spec("synthetic-action", "action", classes=list(MOTIONS), clip_frames=16,
          sample_fps=8.0, notes="MP4 clips (clip_seconds, default 2 s) cut inside one phase that has instruments "
          "(clip_margin_s from its ends); label = the phase's motion type. " + _CLIP + "meta: parent video, "
          "start_s/end_s, start_frame/end_frame."),
    _spec("synthetic-triplet", "triplet", classes=TRIPLET_NAMES, annotation_fps=1.0,
          notes="One sample per 1-fps instant; label = sorted ids of the active <instrument,verb,target> "
                "triplets (empty when no instrument is in view); component map: suite_triplet_map()."),
    _spec("synthetic-skill", "skill", clip_frames=16, sample_fps=8.0, notes=(
        "One whole short video (skill_seconds, default 2 s) per sample (<root>/skill_videos); label = its "
        "smoothness (-mean tip jerk, higher is smoother). " + _CLIP)),
    _spec("synthetic-segmentation", "segmentation", classes=["blob"], notes=(
        "1-fps frames with the polyp-like blob covering >= min_blob_fraction of the image, plus a few seeded "
        "frames without it (empty mask); masks uint8 0/255, binarise at > 128.")),
    _spec("synthetic-depth", "depth", notes=(
        "Every 1-fps frame; depth = uint16 PNG, mm = raw / 32 (meta depth_scale_mm); 0 = invalid (instrument "
        "pixels: the generator's depth is the tissue behind them). RMSE in mm, lower is better.")),
]}


def find_synthetic(name: str) -> BenchmarkSpec | None:
    """The synthetic spec ``name`` (exact, else case-insensitive), or None."""
    return SYNTHETIC_BENCHMARKS.get(name) or {k.lower(): v for k, v in SYNTHETIC_BENCHMARKS.items()}.get(name.lower())
