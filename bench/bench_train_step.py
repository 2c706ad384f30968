"""Pretraining-step throughput and model FLOPs utilisation (MFU) of SurgMotion on this machine.

For each configuration: clips/s of a full training step (forward + backward + AdamW + EMA) at T frames, S px,
batch B; model FLOPs per step counted by ``torch.utils.flop_counter`` (matmuls, convolutions, attention);
MFU = (FLOPs per step / step time) ÷ the measured matmul peak of the same device and dtype, measured in the
same run. CPU runs fp32; CUDA runs bf16 autocast. Configurations (``--configs``):

* ``default``   — the tiny encoder with its narrow predictor (6 × 128) and the default masks (two multi-block sets);
* ``reference`` — V-JEPA's reference: the tiny encoder with V-JEPA's predictor (12 × 384, 12 heads), one tube
  mask at 85 % masked (the setting measured side by side with the official code);
* ``reference-multiblock`` — the same model with the default two multi-block mask sets;
* ``small``     — the small encoder with its default predictor and masks.

``--official-src DIR`` (a facebookresearch/vjepa2 checkout; nothing is downloaded) adds ``official-reference``:
V-JEPA 2's own encoder, predictor and step order at the reference configuration, timed on the same clip in the same
run (``bench/official_vjepa2.py``), and prints the speed ratio of ``reference`` to it.

    python bench/bench_train_step.py                          # default + reference, T=16, 224 px, batch 2
    python bench/bench_train_step.py --configs reference --steps 5 --threads 2
    python bench/bench_train_step.py --configs reference --official-src ~/src/vjepa2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.official_vjepa2 import load_official, official_step
from model.jepa import SurgMotion, SurgMotionConfig, surgmotion_param_groups
from model.masking import MaskConfig
from model.predictor import PredictorConfig
from model.vit import EncoderConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Best-of-reps FLOP/s of an n×n×n matmul (the device's practical peak for this dtype)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


TUBE_85 = MaskConfig(mode="tube", tube_ratio=(0.85, 0.85))  # fixed ratio: FLOPs per step comparable between runs
VJEPA_PREDICTOR = PredictorConfig(depth=12, embed_dim=384, num_heads=12)
CONFIGS: dict[str, dict] = {
    "default": {"size": "tiny"},
    "reference": {"size": "tiny", "predictor": VJEPA_PREDICTOR, "mask": TUBE_85},
    "reference-multiblock": {"size": "tiny", "predictor": VJEPA_PREDICTOR},
    "small": {"size": "small"},
}


def build(name: str, device: torch.device, checkpointing: bool) -> tuple[SurgMotion, torch.optim.Optimizer]:
    spec = CONFIGS[name]
    cfg = SurgMotionConfig(encoder=EncoderConfig(size=spec["size"], activation_checkpointing=checkpointing),
                           predictor=spec.get("predictor", PredictorConfig()), mask=spec.get("mask", MaskConfig()))
    model = SurgMotion(cfg).to(device).train()
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(surgmotion_param_groups(model, 0.04), lr=5e-4, fused=fused)
    return model, opt


def train_step(model: SurgMotion, opt: torch.optim.Optimizer, clip: torch.Tensor, gen: torch.Generator) -> float:
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if clip.is_cuda else nullcontext()
    with amp:
        out = model(clip, generator=gen)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    model.update_target()
    return out["loss"].item()


def count_flops(step: Callable[[], object], zero_grad: Callable[[], None]) -> float:
    """Model FLOPs of one step's forward + backward (matmuls, convolutions, attention), as counted by PyTorch.
    ``step`` runs forward and backward only (no optimiser step)."""
    with FlopCounterMode(display=False) as fc:
        step()
    zero_grad()
    return float(fc.get_total_flops())


def time_steps(step: Callable[[], object], device: torch.device, steps: int) -> float:
    """Median wall time of ``steps`` calls after one warm-up call."""
    step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def row(name: str, n_params: int, batch: int, step_s: float, flops: float) -> dict[str, float | str]:
    return {"config": name, "params_M": n_params / 1e6, "step_s": step_s, "clips_per_s": batch / step_s,
            "gflops_per_step": flops / 1e9, "achieved_gflops": flops / step_s / 1e9}


def bench_config(name: str, device: torch.device, clip: torch.Tensor, steps: int,
                 checkpointing: bool) -> dict[str, float | str]:
    model, opt = build(name, device, checkpointing)
    gen = torch.Generator().manual_seed(0)
    step_s = time_steps(lambda: train_step(model, opt, clip, gen), device, steps)

    def fwd_bwd() -> None:
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if clip.is_cuda else nullcontext()
        with amp:
            out = model(clip, generator=gen)
        out["loss"].backward()

    flops = count_flops(fwd_bwd, lambda: model.zero_grad(set_to_none=True))  # after timing: hooks slow steps
    return row(name, sum(p.numel() for p in model.online_parameters()), clip.shape[0], step_s, flops)


def bench_official(src: Path, device: torch.device, clip: torch.Tensor, steps: int) -> dict[str, float | str]:
    """V-JEPA 2's own code at the reference configuration (``bench/official_vjepa2.py``), same clip and timing."""
    m = load_official(src, device, clip.shape[2], clip.shape[-1])
    gen = torch.Generator().manual_seed(0)
    step_s = time_steps(lambda: official_step(m, clip, gen), device, steps)

    def fwd_bwd() -> None:
        official_step(m, clip, gen, momentum=1.0)  # includes the AdamW step: its FLOPs are not counted
    params = [*m.encoder.parameters(), *m.predictor.parameters()]
    flops = count_flops(fwd_bwd, m.optimizer.zero_grad)
    return row("official-reference", sum(p.numel() for p in params), clip.shape[0], step_s, flops)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["default", "reference"], choices=sorted(CONFIGS))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--px", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing in encoder blocks")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--official-src", type=Path, help="a facebookresearch/vjepa2 checkout: also time its own step "
                    "at the reference configuration, side by side (row official-reference)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype)
    print(f"device {device} ({torch.get_num_threads()} threads), {dtype}; measured matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s; T={args.frames}, {args.px} px, batch {args.batch}")
    clip = torch.rand(args.batch, 3, args.frames, args.px, args.px, device=device)
    rows = [bench_config(name, device, clip, args.steps, args.checkpointing) for name in args.configs]
    if args.official_src:
        rows.append(bench_official(args.official_src, device, clip, args.steps))
    peak2 = matmul_peak(device, dtype)  # re-measured: the CPU's peak drifts; MFU uses the higher of the two
    best = max(peak, peak2)
    print(f"matmul peak re-measured after the runs: {peak2 / 1e9:.1f} GFLOP/s; MFU below is against "
          f"{best / 1e9:.1f} GFLOP/s (the higher, so it is not flattered by a slow peak measurement)")
    for r in rows:
        r["mfu"] = float(r["achieved_gflops"]) * 1e9 / best
        print(f"  {r['config']:21s} {r['params_M']:7.1f} M params  step {r['step_s']:.3f} s  "
              f"{r['clips_per_s']:.2f} clips/s  {r['gflops_per_step']:.1f} GFLOP/step  "
              f"{r['achieved_gflops']:.1f} GFLOP/s  MFU {r['mfu']:.1%}")
    by_name = {str(r["config"]): r for r in rows}
    if "official-reference" in by_name and "reference" in by_name:
        ours, theirs = by_name["reference"], by_name["official-reference"]
        speed = float(theirs["step_s"]) / float(ours["step_s"])
        flops = float(ours["gflops_per_step"]) / float(theirs["gflops_per_step"])
        print(f"reference vs the official V-JEPA 2 step, same run: speed x{speed:.2f}, FLOPs ratio {flops:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": best / 1e9, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
