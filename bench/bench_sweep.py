"""Probe-sweep wall time: cached features vs the naive way, and the re-run of a finished cached sweep.

    python bench/bench_sweep.py [--benchmark synthetic-phase] [--backbone random:tiny] [--epochs 8] [--fraction 0.4]

Same benchmark, backbone, 16-point grid (lr x wd), probe and Ray resources for both:

* cached — orchestrator.probe.sweep.run_probe_sweep: features extracted once (Ray Data) into a fresh cache, trials
  train heads on the cached tokens;
* naive  — every trial builds the backbone and decodes + encodes every batch of every epoch (train and val);
* re-run — the finished cached sweep again with ``resume=True`` (cache hit, nothing left to train), and again
  without resume (cache hit, all 16 heads retrained).

Goals: naive / cached >= 8; re-run / first <= 0.1. Uses a scratch SURGMOTION_HOME (removed at the end) unless
--home is given.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np
import ray
import torch
from ray import tune

from model.backbones.base import Backbone
from model.backbones.factory import build_backbone
from orchestrator.config import load_config, work_dir
from orchestrator.data.views import ClipReader, Preprocessing
from orchestrator.probe.config import DEFAULT_CONFIG, SweepConfig
from orchestrator.probe.features import backbone_info
from orchestrator.probe.plan import plan_job
from orchestrator.probe.sweep import SweepData, run_probe_sweep, run_tuner
from orchestrator.probe.trial import ProbeTask, SplitArrays, label_array, train_trial
from orchestrator.synthetic.suite import build_synthetic_suite


class NaiveTokens:
    """``tokens_fn`` of a naive trial: decode the clips of the rows and run the backbone on them, every time."""

    def __init__(self, backbone: Backbone, reader: ClipReader, samples: list[dict[str, Any]]) -> None:
        self.backbone, self.reader, self.samples = backbone, reader, samples

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        clips = np.stack([self.reader.clip(self.samples[r]["source"], self.samples[r]["time_s"]) for r in rows])
        return self.backbone(torch.from_numpy(clips).permute(0, 4, 1, 2, 3))


def naive_trainable(config: dict[str, Any], pt: ProbeTask | None = None, data: dict[str, Any] | None = None) -> None:
    """Tune trainable of the naive baseline (same train loop as the cached one)."""
    assert pt is not None and data is not None
    torch.set_num_threads(1)
    backbone, reader = build_backbone(data["backbone"]), ClipReader(pt.task, data["pre"])
    train_trial(config, pt, data["train"], data["val"], NaiveTokens(backbone, reader, data["train_samples"]),
                NaiveTokens(backbone, reader, data["val_samples"]))


def naive_sweep(cfg: SweepConfig, backbone: str, benchmark: str, root: Path) -> float:
    """The naive 16-trial sweep through the same Tuner setup and the same probe task; returns seconds."""
    t0 = time.time()
    job = plan_job(cfg, backbone, benchmark, root)
    spec, info = job.spec, backbone_info(backbone, cfg.features)
    samples = {s: job.samples[s] for s in ("train", "val")}
    splits = {s: SplitArrays(labels=label_array(spec.task, [x.label for x in v], spec.num_classes, None),
                             video=np.asarray([x.video_id for x in v]).astype(str)) for s, v in samples.items()}
    pt = ProbeTask.from_config(cfg, spec, info)
    pre: Preprocessing = cfg.features.preprocessing(spec)
    desc = {s: [{"source": x.source, "time_s": x.time_s} for x in v] for s, v in samples.items()}
    payload = {"backbone": backbone, "pre": pre, "train": splits["train"], "val": splits["val"],
               "train_samples": desc["train"], "val_samples": desc["val"]}
    trainable = tune.with_resources(tune.with_parameters(naive_trainable, pt=pt, data=payload),
                                    {"cpu": cfg.cpus_per_trial})
    data = SweepData(task=pt, tokens={}, splits=splits, cache_keys={}, backbone_identity=info.identity)
    grid = run_tuner(cfg, data, cfg.storage_path() / "naive" / spec.name, resume=False, trainable=trainable)
    assert not grid.errors, grid.errors
    return time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="synthetic-phase")
    ap.add_argument("--backbone", default="random:tiny")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--fraction", type=float, default=0.4, help="few-shot fraction of train videos (smaller = faster)")
    ap.add_argument("--home", help="SURGMOTION_HOME (default: a scratch dir; the suite is built there)")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    scratch = None if args.home else tempfile.mkdtemp(prefix="bench_sweep_")
    os.environ["SURGMOTION_HOME"] = args.home or str(scratch)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        return _bench(args)
    finally:
        if scratch:              # the suite, caches, runs and MLflow store of this bench (~200 MB)
            shutil.rmtree(scratch, ignore_errors=True)


def _bench(args: argparse.Namespace) -> int:
    home = work_dir()
    root = build_synthetic_suite(home / "synthetic_suite", seed=0, workers=1)
    cfg = load_config(SweepConfig, DEFAULT_CONFIG, [
        "grid.lr=[5.0e-3, 1.0e-3, 3.0e-4, 1.0e-4]", "grid.wd=[0.01, 0.1, 0.4, 0.8]", f"epochs={args.epochs}",
        f"few_shot.fraction={args.fraction}", f"cache_dir={home / 'bench_cache'}", "experiment=bench-sweep"])
    ray.init(include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    timings: dict[str, float] = {}
    t0 = time.time()
    first = run_probe_sweep(cfg, args.backbone, args.benchmark, root=root)
    timings["cached"] = time.time() - t0
    t0 = time.time()
    run_probe_sweep(cfg, args.backbone, args.benchmark, root=root, resume=True)
    timings["rerun_resume"] = time.time() - t0
    t0 = time.time()
    run_probe_sweep(cfg, args.backbone, args.benchmark, root=root)
    timings["rerun_fresh"] = time.time() - t0
    if not args.skip_naive:
        timings["naive"] = naive_sweep(cfg, args.backbone, args.benchmark, root)
    print(f"\nbench_sweep: {args.benchmark} x {args.backbone}, 16 settings, {args.epochs} epochs, "
          f"train fraction {args.fraction}; cached test {first.primary_metric} = "
          f"{first.test_metrics[first.primary_metric]:.3f}")
    for k, v in timings.items():
        print(f"  {k:<13} {v:8.1f} s")
    if "naive" in timings:
        print(f"  naive / cached          = {timings['naive'] / timings['cached']:.1f}  (goal >= 8)")
    print(f"  re-run (resume) / first = {timings['rerun_resume'] / timings['cached']:.3f}  (goal <= 0.1)")
    print(f"  re-run (fresh, cache hit) / first = {timings['rerun_fresh'] / timings['cached']:.3f}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
