"""Ablation of the SurgMotion objective on the synthetic corpus: every variant pretrained with the same budget, then
probed with the default sweep (16 settings, val-selected head, test once) against random init.

    python bench/bench_ablation.py                       # demo budget (40 steps), every variant, phase + triplet
    python bench/bench_ablation.py --steps 200 --variants vjepa full --benchmarks synthetic-phase

Variants (``--set`` overrides of experiments/configs/pretrain/demo.yaml):

* ``vjepa``       plain V-JEPA: no motion weighting, no affinity, no variance term;
* ``+motion``     V-JEPA + the paper's top-3 motion weighting;
* ``+affinity``   V-JEPA + affinity distillation (λ_st 0.1);
* ``+variance``   V-JEPA + the variance hinge (λ_var 0.3);
* ``full``        SurgMotion as shipped (multi-block masks, per-token loss, top-3 weighting, affinity, variance);
* ``full-dense``  full with the dense motion weighting (α = 2: the setting whose weight moves the gradient);
* ``full-tube``   full with random-tube masks instead of multi-block;
* ``full-tubeloss`` full with the time-averaged (per-tube) prediction loss.

Prints one table: test primary metric per (variant, benchmark) and its difference to random init. A scratch
SURGMOTION_HOME (removed at the end) unless ``--home`` is given. Single seed: differences of a few hundredths are
within the noise of one run (see docs/method.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray

from orchestrator.config import CONFIG_DIR, load_config, work_dir
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.driver import run_pretraining
from orchestrator.probe.config import DEFAULT_CONFIG, SweepConfig
from orchestrator.probe.sweep import run_probe_sweep
from orchestrator.synthetic.suite import build_synthetic_suite

PLAIN = ["model.loss.motion_weighting=none", "model.loss.lambda_st=0", "model.loss.lambda_var=0"]
VARIANTS: dict[str, list[str]] = {
    "vjepa": PLAIN,
    "+motion": ["model.loss.lambda_st=0", "model.loss.lambda_var=0"],
    "+affinity": ["model.loss.motion_weighting=none", "model.loss.lambda_var=0"],
    "+variance": ["model.loss.motion_weighting=none", "model.loss.lambda_st=0"],
    "full": [],
    "full-dense": ["model.loss.motion_weighting=dense"],
    "full-tube": ["model.mask.mode=tube"],
    "full-tubeloss": ["model.loss.granularity=tube"],
}


def pretrain(variant: str, steps: int, seed: int) -> str:
    """Pretrain one variant at the demo settings; returns its backbone spec."""
    overrides = VARIANTS[variant] + [f"name=ablation-{variant.strip('+')}-s{seed}", f"train.max_steps={steps}",
                                     f"train.seed={seed}", "tracking.registered_model=null"]
    result = run_pretraining(load_config(PretrainConfig, CONFIG_DIR / "pretrain" / "demo.yaml", overrides))
    assert result.checkpoint_dir, f"{variant}: no checkpoint"
    return f"surgmotion:{result.checkpoint_dir}"


def probe(backbone: str, benchmarks: list[str], root: Path) -> dict[str, float]:
    cfg = load_config(SweepConfig, DEFAULT_CONFIG, ["experiment=ablation"])
    out = {}
    for bench in benchmarks:
        res = run_probe_sweep(cfg, backbone, bench, root=root)
        out[bench] = res.test_metrics[res.primary_metric]
    return out


def table(scores: dict[str, dict[str, float]], benchmarks: list[str]) -> str:
    base = scores["random"]
    head = "| variant | " + " | ".join(f"{b} (Δ random)" for b in benchmarks) + " |"
    lines = [head, "|---|" + "---:|" * len(benchmarks)]
    for name, row in scores.items():
        cells = [f"{row[b]:.3f}" + ("" if name == "random" else f" ({row[b] - base[b]:+.3f})") for b in benchmarks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="optimiser steps per variant (default: the demo budget)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--benchmarks", nargs="+", default=["synthetic-phase", "synthetic-triplet"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", help="SURGMOTION_HOME (default: a scratch dir, removed at the end)")
    args = ap.parse_args()
    scratch = None if args.home else tempfile.mkdtemp(prefix="bench_ablation_")
    os.environ["SURGMOTION_HOME"] = args.home or str(scratch)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        t0 = time.time()
        root = build_synthetic_suite(work_dir() / "synthetic_suite", seed=0, workers=1)
        ray.init(include_dashboard=False)
        scores = {"random": probe("random:tiny", args.benchmarks, root)}
        for variant in args.variants:
            scores[variant] = probe(pretrain(variant, args.steps, args.seed), args.benchmarks, root)
            print(f"[ablation] {variant}: {scores[variant]} ({time.time() - t0:.0f} s)", flush=True)
        print(f"\nbench_ablation: {args.steps} steps per variant (demo config), seed {args.seed}, default sweep; "
              f"test primary metric (phase: F1, triplet: AP_IVT), {time.time() - t0:.0f} s\n")
        print(table(scores, args.benchmarks))
        ray.shutdown()
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
