"""Ray Data clip throughput vs the raw decord decode limit on the same cores.

Both sides decode the SAME clip descriptors (balanced sampling over the synthetic corpus, T frames at 1 fps,
short side / crop as configured):
  - raw:  a plain single-process loop calling decord (decoder threads = auto, i.e. all cores) — the decode limit;
  - ray:  the pretraining pipeline (ClipDatasource → map_batches decode tasks → iter_batches), consumed by one
          reader like a Train worker.
Prints clips/s of both and the ratio (goal >= 0.8).

    python bench/bench_data.py --clips 48 --frames 16 --short-side 256 --crop 224 --tasks 2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray

from orchestrator.data.clip_index import build_clip_index
from orchestrator.data.config import DataConfig
from orchestrator.data.decode import VideoInfo, decode_clip
from orchestrator.data.manifest import load_manifest
from orchestrator.data.pipeline import clip_dataset
from orchestrator.data.sampling import SamplingPlan, descriptors
from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.corpus import generate_corpus


def data_config(args: argparse.Namespace) -> DataConfig:
    """The clip geometry and decode resources of this run as the pipeline's data config."""
    return DataConfig(frames=args.frames, sample_fps=1.0, short_side=args.short_side, crop=args.crop,
                      decode_tasks=args.tasks, decode_cpus=args.task_cpus, decode_batch=args.decode_batch,
                      read_block_rows=args.decode_batch * args.tasks)


def raw_loop(rows: dict, args: argparse.Namespace) -> float:
    cfg = data_config(args)
    t0 = time.perf_counter()
    for i in range(len(rows["index"])):
        video = VideoInfo(float(rows["fps"][i]), int(rows["num_frames"][i]), int(rows["width"][i]),
                          int(rows["height"][i]))
        decode_clip(str(rows["path"][i]), float(rows["start"][i]), video, cfg, int(rows["crop_seed"][i]),
                    threads=args.raw_threads)
    return len(rows["index"]) / (time.perf_counter() - t0)


def ray_pipeline(plan: SamplingPlan, n: int, args: argparse.Namespace, seed: int) -> float:
    ds = clip_dataset(plan, data_config(args), seed=seed, epoch_size=n, total=n)
    t0 = time.perf_counter()
    got = sum(len(b["index"]) for b in ds.iter_batches(batch_size=2, batch_format="numpy", prefetch_batches=4))
    assert got == n, (got, n)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--tasks", type=int, default=os.cpu_count() or 2, help="parallel Ray decode tasks")
    ap.add_argument("--task-cpus", type=float, default=1.0)
    ap.add_argument("--decode-batch", type=int, default=2)
    ap.add_argument("--raw-threads", type=int, default=0, help="decord threads in the raw loop (0 = auto)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved raw/Ray repetitions")
    ap.add_argument("--corpus", type=Path, help="manifest YAML (default: the synthetic demo corpus)")
    args = ap.parse_args()

    manifest_path = args.corpus or generate_corpus(Path(tempfile.gettempdir()) / "surgmotion_bench_corpus",
                                                   SyntheticConfig(), workers=2)
    index = build_clip_index(load_manifest(manifest_path), args.frames)
    plan = SamplingPlan.from_index(index)
    rows = descriptors(plan, seed=0, epoch_size=args.clips, first=0, last=args.clips, block=64)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_pipeline(plan, 4 * args.tasks * args.decode_batch, args, seed=1)  # warm-up: start every decode worker
    raw_loop({k: v[:2] for k, v in rows.items()}, args)
    results = []
    for rep in range(args.reps):  # interleave so both sides see the same machine state
        raw = raw_loop(rows, args)
        rd = ray_pipeline(plan, args.clips, args, seed=0)
        results.append((raw, rd))
        print(f"rep {rep}: raw decord {raw:.2f} clips/s | Ray Data {rd:.2f} clips/s | ratio {rd / raw:.2f}")
    raw = max(r for r, _ in results)
    rd = max(d for _, d in results)
    paired = sorted(d / r for r, d in results)
    print(f"{len(index.videos)} videos, {args.clips} clips of {args.frames} frames at 1 fps, short side "
          f"{args.short_side}, crop {args.crop}, {os.cpu_count()} cores, {args.tasks} decode tasks")
    print(f"best: raw decord loop {raw:.2f} clips/s, Ray Data pipeline {rd:.2f} clips/s, ratio {rd / raw:.2f}")
    print(f"median of paired ratios over {len(paired)} reps: {paired[len(paired) // 2]:.2f} (goal >= 0.8)")
    ray.shutdown()


if __name__ == "__main__":
    main()
