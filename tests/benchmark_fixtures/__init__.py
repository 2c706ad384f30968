"""Builders that write a tiny fixture of each benchmark in its real on-disk format (synthetic pixels, a few
seconds of annotations, real MP4 files). ``BUILDERS[name](root) -> root`` for each of the 19 registry names."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmark_fixtures import generic, other, phase
from orchestrator.benchmarks.spec import BenchmarkSpec, Sample

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "Cholec80": phase.build_cholec80,
    "M2CAI16-workflow": phase.build_m2cai16,
    "AutoLaparo": phase.build_autolaparo,
    "EgoSurgery-Phase": phase.build_egosurgery,
    "PitVis": phase.build_pitvis,
    "Atlas-Neurosurgical": phase.build_atlas,
    "OphNet": phase.build_ophnet,
    "PmLR50": phase.build_pmlr50,
    "SurgicalActions160": other.build_sa160,
    "AVOS": other.build_avos,
    "PolypDiag": other.build_polypdiag,
    "CholecT50": other.build_cholect50,
    "JIGSAWS": other.build_jigsaws,
    "Kvasir-SEG": other.build_pranet,
    "CVC-ClinicDB": other.build_pranet,
    "CVC-300": other.build_pranet,
    "CVC-ColonDB": other.build_pranet,
    "ETIS-LaribPolypDB": other.build_pranet,
    "C3VD": other.build_c3vd,
}

__all__ = ["BUILDERS", "generic", "other", "phase"]


def load_all_splits(name_or_spec: str | BenchmarkSpec, root: Path) -> dict[str, list[Sample]]:
    """Load train/val/test and check the split invariants shared by every benchmark: non-empty, video-level
    (no video id in two splits, hence val != test), and deterministic (a second load gives the same ids)."""
    from orchestrator.benchmarks.registry import load_samples

    out = {s: load_samples(name_or_spec, root, s) for s in ("train", "val", "test")}
    vids = {s: {x.video_id for x in v} for s, v in out.items()}
    for s, v in out.items():
        assert v, f"split {s} is empty"
    assert not vids["train"] & vids["val"], vids
    assert not vids["train"] & vids["test"], vids
    assert not vids["val"] & vids["test"], vids
    again = load_samples(name_or_spec, root, "val")
    assert [x.sample_id for x in again] == [x.sample_id for x in out["val"]]
    return out
