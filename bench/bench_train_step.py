"""Pretraining-step throughput and model FLOPs utilisation (MFU) of SurgMotion on this machine.

For each encoder size: clips/s of a full training step (forward + backward + AdamW + EMA) at T frames, S px,
batch B; model FLOPs per step counted by ``torch.utils.flop_counter`` (matmuls, convolutions, attention);
MFU = (FLOPs per step / step time) ÷ the measured matmul peak of the same device and dtype, measured in the
same run. CPU runs fp32; CUDA runs bf16 autocast.

    python bench/bench_train_step.py                 # tiny + small, T=16, 224 px, batch 2
    python bench/bench_train_step.py --sizes tiny --steps 5 --threads 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.jepa import SurgMotion, SurgMotionConfig, surgmotion_param_groups  # noqa: E402
from model.vit import EncoderConfig  # noqa: E402


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


def build(size: str, device: torch.device, checkpointing: bool) -> tuple[SurgMotion, torch.optim.Optimizer]:
    cfg = SurgMotionConfig(encoder=EncoderConfig(size=size, activation_checkpointing=checkpointing))
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


def count_step_flops(model: SurgMotion, clip: torch.Tensor, gen: torch.Generator) -> float:
    """Model FLOPs of one forward + backward (matmuls, convolutions, attention), as counted by PyTorch."""
    with FlopCounterMode(display=False) as fc:
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if clip.is_cuda else nullcontext()
        with amp:
            out = model(clip, generator=gen)
        out["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def bench_size(size: str, device: torch.device, frames: int, px: int, batch: int, steps: int,
               checkpointing: bool) -> dict[str, float]:
    model, opt = build(size, device, checkpointing)
    clip = torch.rand(batch, 3, frames, px, px, device=device)
    gen = torch.Generator().manual_seed(0)
    # A fixed mask ratio (the mean of U(0.75, 0.95)) makes FLOPs per step comparable between runs.
    model.cfg.mask_ratio = (0.85, 0.85)
    train_step(model, opt, clip, gen)  # warm-up
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        train_step(model, opt, clip, gen)
        sync(device)
        times.append(time.perf_counter() - t0)
    step = sorted(times)[len(times) // 2]  # median
    flops = count_step_flops(model, clip, gen)  # after timing: the counter's hooks slow later steps down
    n_params = sum(p.numel() for p in model.online_parameters())
    return {"size": size, "params_M": n_params / 1e6, "step_s": step, "clips_per_s": batch / step,
            "gflops_per_step": flops / 1e9, "achieved_gflops": flops / step / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "small"])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--px", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing in encoder blocks")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype)
    print(f"device {device} ({torch.get_num_threads()} threads), {dtype}; measured matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s; T={args.frames}, {args.px} px, batch {args.batch}")
    rows = []
    for size in args.sizes:
        r = bench_size(size, device, args.frames, args.px, args.batch, args.steps, args.checkpointing)
        r["mfu"] = r["achieved_gflops"] * 1e9 / peak
        rows.append(r)
        print(f"  {size:6s} {r['params_M']:7.1f} M params  step {r['step_s']:.3f} s  {r['clips_per_s']:.2f} clips/s  "
              f"{r['gflops_per_step']:.1f} GFLOP/step  {r['achieved_gflops']:.1f} GFLOP/s  MFU {r['mfu']:.1%}")
    peak2 = matmul_peak(device, dtype)  # re-measure: the ratio is only meaningful if the peak was stable
    print(f"matmul peak re-measured after the runs: {peak2 / 1e9:.1f} GFLOP/s ({peak2 / peak:.2f}x of the first)")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak / 1e9, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
