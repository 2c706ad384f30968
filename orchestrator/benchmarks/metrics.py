"""The one metric dispatcher: a task's prediction arrays → its metrics (``experiments/score.py``, the probe trials
and the report all call :func:`score_arrays`).

Arrays per task (the NPZ keys of docs/metrics.md): phase / action ``video``, ``target``, ``pred``; triplet
``video``, ``target``, ``score`` (+ ``maps``, default the official CholecT50 table); skill ``target``, ``pred``;
segmentation ``target``, ``score``; depth ``target``, ``pred`` (+ ``valid``). numpy arrays in, Python floats out;
ratio metrics are fractions in [0, 1]. Phase: unrelaxed metrics, ``f1_union`` / ``jaccard_union`` and, with
``relaxed``, ``<name>_relaxed`` beside them.
Protocols and sources: docs/metrics.md. The metric functions: :mod:`.metrics_phase`, :mod:`.metrics_clip`,
:mod:`.metrics_triplet`, :mod:`.metrics_dense`; reading and checking an ``.npz`` file: :mod:`.metrics_io`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, model_validator

from model.tasks import check_task
from orchestrator.benchmarks.metrics_clip import action_metrics, skill_metrics
from orchestrator.benchmarks.metrics_dense import depth_metrics, segmentation_metrics
from orchestrator.benchmarks.metrics_phase import (
    RELAXED_NUM_PHASES,
    Aggregation,
    RelaxedProtocol,
    phase_metrics,
    union_phase_metrics,
)
from orchestrator.benchmarks.metrics_triplet import cholect50_triplet_maps, triplet_metrics
from orchestrator.benchmarks.tasks import RELAXED_BASE_METRICS, RELAXED_SUFFIX


class ScoreOptions(BaseModel):
    """Task options of :func:`score_arrays` (the flags of ``experiments/score.py``; a trial sets them from its
    benchmark). ``relaxed`` adds the relaxed-boundary phase metrics (``<name>_relaxed``) beside the unrelaxed ones.
    ``maps_path`` (a triplet map overriding the packaged CholecT50 table) is read by
    :func:`orchestrator.benchmarks.metrics_io.score_npz` only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_classes: PositiveInt | None = None
    relaxed: bool = False
    fps: PositiveFloat | None = None
    relaxed_protocol: RelaxedProtocol | None = None
    aggregation: Aggregation = "video"
    maps_path: Path | None = None
    ignore_null: bool = False

    @model_validator(mode="after")
    def _check(self) -> ScoreOptions:
        if self.relaxed and self.fps is None:
            raise ValueError("--relaxed needs --fps (the evaluation sampling rate: 1 for 1-fps labels, 25 for full "
                             "rate)")
        if not self.relaxed and (self.fps is not None or self.relaxed_protocol is not None):
            raise ValueError("--fps / --relaxed-protocol only apply together with --relaxed")
        return self


def relaxed_protocol(options: ScoreOptions, arrays: Mapping[str, np.ndarray]) -> RelaxedProtocol:
    """The relaxed rule set: as given, else M2CAI16 for 8 classes and Cholec80 for up to 7 (``num_classes``, or
    the largest label + 1)."""
    if options.relaxed_protocol is not None:
        return options.relaxed_protocol
    n_cls = options.num_classes or int(max(arrays["target"].max(), arrays["pred"].max())) + 1
    for protocol, n_phases in RELAXED_NUM_PHASES.items():
        if n_cls <= n_phases:
            return protocol  # type: ignore[return-value]
    raise ValueError(f"relaxed boundary is defined for Cholec80 (7 phases) and M2CAI16 (8), not {n_cls} classes")


def triplet_maps(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The triplet → (instrument, verb, target) map: the ``maps`` array, else the official CholecT50 table."""
    return arrays["maps"] if "maps" in arrays else cholect50_triplet_maps()


def phase_scores(arrays: Mapping[str, np.ndarray], options: ScoreOptions) -> dict[str, float]:
    """Unrelaxed ``accuracy, precision, recall, jaccard, f1, edit`` (``options.aggregation``), the union-convention
    ``f1_union, jaccard_union`` (video-wise), and with ``options.relaxed`` the relaxed ``<name>_relaxed``."""
    o, a = options, arrays
    out = phase_metrics(a["video"], a["target"], a["pred"], o.num_classes, aggregation=o.aggregation)
    out |= union_phase_metrics(a["video"], a["target"], a["pred"], o.num_classes)
    if o.relaxed:
        relaxed = phase_metrics(a["video"], a["target"], a["pred"], o.num_classes, relaxed=True, fps=o.fps,
                                protocol=relaxed_protocol(o, a), aggregation=o.aggregation)
        out |= {name + RELAXED_SUFFIX: relaxed[name] for name in RELAXED_BASE_METRICS}
    return out


def score_arrays(task: str, arrays: Mapping[str, np.ndarray], options: ScoreOptions | None = None
                 ) -> dict[str, float]:
    """The metrics of ``task`` from its prediction arrays (module docstring); NaN where a metric is undefined."""
    o, a = options or ScoreOptions(), arrays
    runners: dict[str, Callable[[], dict[str, float]]] = {
        "phase": lambda: phase_scores(a, o),
        "action": lambda: action_metrics(a["target"], a["pred"], o.num_classes),
        "triplet": lambda: triplet_metrics(a["video"], a["target"], a["score"], triplet_maps(a),
                                           ignore_null=o.ignore_null),
        "skill": lambda: skill_metrics(a["target"], a["pred"]),
        "segmentation": lambda: segmentation_metrics(a["target"], a["score"]),
        "depth": lambda: depth_metrics(a["target"], a["pred"], a.get("valid")),
    }
    return runners[check_task(task)]()
