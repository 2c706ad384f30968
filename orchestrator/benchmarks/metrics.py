"""Evaluation metrics of the SurgMotion benchmarks: the public entry point.

numpy arrays in, Python floats out; ratio metrics are fractions in [0, 1]. Protocols and sources are in
docs/metrics.md. Implementation modules:

* :mod:`.metrics_phase`   phase recognition (video-wise / phase-wise, relaxed boundary, edit score)
* :mod:`.metrics_clip`    action classification and skill regression
* :mod:`.metrics_triplet` CholecT50 triplet video-wise AP (ivtmetrics convention)
* :mod:`.metrics_dense`   segmentation (PraNet protocol) and depth (C3VD style)
* :mod:`.metrics_io`      scoring from an ``.npz`` file (``experiments/score.py``)
"""
from __future__ import annotations

from orchestrator.benchmarks.metrics_clip import action_metrics, skill_metrics
from orchestrator.benchmarks.metrics_dense import (
    DEPTH_METRICS,
    PRANET_THRESHOLDS,
    depth_metrics,
    dice_curve,
    segmentation_metrics,
)
from orchestrator.benchmarks.metrics_io import (
    NPZ_KEYS,
    OPTIONAL_NPZ_KEYS,
    TASKS,
    ScoreInputError,
    ScoreOptions,
    read_task_arrays,
    score_npz,
)
from orchestrator.benchmarks.metrics_phase import (
    PHASE_METRICS,
    RELAXED_NUM_PHASES,
    RELAXED_WINDOW_S,
    PhaseTable,
    aggregate_phase_wise,
    aggregate_video_wise,
    edit_score,
    levenshtein,
    phase_metrics,
    phase_table,
    relaxed_correct,
    relaxed_window_frames,
    video_accuracy,
    video_edit_score,
)
from orchestrator.benchmarks.metrics_triplet import (
    CHOLECT50_NULL_TRIPLETS,
    CHOLECT50_NUM_TRIPLETS,
    TRIPLET_COMPONENTS,
    check_triplet_maps,
    component_groups,
    component_values,
    synthetic_triplet_maps,
    triplet_metrics,
    video_average_precision,
)

__all__ = [
    "CHOLECT50_NULL_TRIPLETS",
    "CHOLECT50_NUM_TRIPLETS",
    "DEPTH_METRICS",
    "NPZ_KEYS",
    "OPTIONAL_NPZ_KEYS",
    "PHASE_METRICS",
    "PRANET_THRESHOLDS",
    "RELAXED_NUM_PHASES",
    "RELAXED_WINDOW_S",
    "TASKS",
    "TRIPLET_COMPONENTS",
    "PhaseTable",
    "ScoreInputError",
    "ScoreOptions",
    "action_metrics",
    "aggregate_phase_wise",
    "aggregate_video_wise",
    "check_triplet_maps",
    "component_groups",
    "component_values",
    "depth_metrics",
    "dice_curve",
    "edit_score",
    "levenshtein",
    "phase_metrics",
    "phase_table",
    "read_task_arrays",
    "relaxed_correct",
    "relaxed_window_frames",
    "score_npz",
    "segmentation_metrics",
    "skill_metrics",
    "synthetic_triplet_maps",
    "triplet_metrics",
    "video_accuracy",
    "video_average_precision",
    "video_edit_score",
]
