"""Benchmark adapters, one module per dataset family. Importing a module registers its adapters with
:func:`orchestrator.benchmarks.spec.register_adapter`; :mod:`orchestrator.benchmarks.registry` imports them all.

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
``synthetic``      synthetic_suite (the layout :mod:`orchestrator.synthetic.suite` writes)
=================  ===========================================================================

Adapters never decode videos; they check that files exist and parse annotations.
"""
