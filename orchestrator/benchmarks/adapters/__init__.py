"""Benchmark adapters, one module per dataset family. Importing this package registers every adapter with
:func:`orchestrator.benchmarks.spec.register_adapter`.

=================  ===========================================================================
module             adapters
=================  ===========================================================================
``phase``          cholec80, m2cai16_workflow, autolaparo, egosurgery_phase, pitvis
``phase_extra``    ophnet_phase, pmlr50
``action``         surgical_actions160, avos, polypdiag
``triplet``        cholect50 (+ :func:`triplet_component_map`)
``skill``          jigsaws_grs
``dense``          pranet_polyp, c3vd_depth (+ :func:`read_depth_mm`, :func:`c3vd_depth_to_mm`)
``generic``        generic_phase_csv, generic_clip_csv, generic_image_mask, generic_image_depth
=================  ===========================================================================

Adapters never decode videos; they check that files exist and parse annotations.
"""
from __future__ import annotations

from orchestrator.benchmarks.adapters import action, dense, generic, phase, phase_extra, skill, triplet
from orchestrator.benchmarks.adapters import synthetic  # noqa: F401  (the synthetic suite's adapter)
from orchestrator.benchmarks.adapters.dense import c3vd_depth_to_mm, read_depth_mm
from orchestrator.benchmarks.adapters.triplet import triplet_component_map, triplet_names

__all__ = [
    "action", "dense", "generic", "phase", "phase_extra", "skill", "triplet",
    "c3vd_depth_to_mm", "read_depth_mm", "triplet_component_map", "triplet_names",
]
