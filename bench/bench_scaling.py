"""Scale-out on a local 2-node Ray cluster (cluster/local.sh: head + 1 worker node, 1 CPU each, on 127.0.0.1).

1. Data: Ray Data clip throughput (clip_dataset: read → decode tasks → iter_batches on the driver) with 1 vs 2
   decode tasks of 1 CPU each — with 1 CPU per node the 2 tasks must run on different nodes.
2. Train: orchestrator.pretrain.run_pretraining on a tiny config with 1 vs 2 Ray Train workers (DDP, gloo),
   same global batch (1 worker accumulates 2 micro-batches); throughput = median `clips_per_s` of the
   steady-state steps from MLflow.
Prints clips/s and the scaling ratio (2 / 1) of each. Only a plumbing check on a 2-core box: both "nodes"
share the same cores (and whatever else runs on the machine: the load average is printed), so ratios near
1.0 are expected; on real nodes each one brings its own cores.

    python bench/bench_scaling.py                       # starts and stops its own local cluster
    python bench/bench_scaling.py --address 127.0.0.1:6390 --skip-train   # an already running one
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # must match the cluster (local.sh uses disabled)

import ray

from orchestrator.config import load_config
from orchestrator.data.clip_index import build_clip_index
from orchestrator.data.config import DataConfig
from orchestrator.data.manifest import load_manifest
from orchestrator.data.pipeline import clip_dataset
from orchestrator.data.sampling import SamplingPlan
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.driver import run_pretraining
from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.corpus import generate_corpus
from orchestrator.tracking import client

PORT = 6420  # (+1..+3: client / agent ports) not Ray's default 6379 nor local.sh's default 6390


def local_sh(cmd: str, env: dict[str, str]) -> None:
    r = subprocess.run(["bash", str(REPO_ROOT / "cluster" / "local.sh"), cmd], env=env, capture_output=True,
                       text=True, timeout=240)
    sys.stderr.write(r.stderr)
    if r.returncode:
        raise RuntimeError(f"cluster/local.sh {cmd} failed:\n{r.stdout}\n{r.stderr}")


def data_rate(plan, n: int, tasks: int, args: argparse.Namespace) -> float:

    cfg = DataConfig(frames=args.frames, sample_fps=1.0, short_side=args.short_side, crop=args.crop,
                     decode_tasks=tasks, decode_cpus=1.0, decode_batch=args.decode_batch,
                     read_block_rows=args.decode_batch * tasks)
    ds = clip_dataset(plan, cfg, seed=0, epoch_size=n, total=n)
    t0 = time.perf_counter()
    got = sum(len(b["index"]) for b in ds.iter_batches(batch_size=2, batch_format="numpy", prefetch_batches=4))
    assert got == n, (got, n)
    return n / (time.perf_counter() - t0)


def train_rate(manifest: Path, workers: int, work: Path, args: argparse.Namespace) -> float:

    uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg = load_config(PretrainConfig, None, [
        f"name=scale-w{workers}-{int(time.time())}", "model.encoder.size=tiny", f"data.manifest={manifest}",
        f"data.frames={args.frames}", f"data.short_side={args.train_short_side}", f"data.crop={args.train_crop}",
        "data.decode_tasks=2", "data.decode_cpus=0.5", "data.decode_batch=2",
        f"train.max_steps={args.train_steps}", "train.global_batch=4", "train.batch_per_worker=2",
        "train.checkpoint_every=1000", "train.log_every=5",
        f"scaling.num_workers={workers}", "scaling.use_gpu=false", "scaling.cpus_per_worker=0.5",
        "scaling.torch_threads=1", f"tracking.tracking_uri={uri}", f"ray.storage_path={work / 'ray_results'}",
        "optim.warmup_steps=2"])
    res = run_pretraining(cfg)
    hist = sorted(client(uri).get_metric_history(res.run_id, "clips_per_s"), key=lambda m: m.step)
    steady = [m.value for m in hist[len(hist) // 3:]] or [m.value for m in hist]  # drop the warm-up third
    return statistics.median(steady)


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="use this running cluster (host:port) instead of starting one")
    ap.add_argument("--clips", type=int, default=32, help="clips per data measurement")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--decode-batch", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=15)
    ap.add_argument("--train-short-side", type=int, default=128)
    ap.add_argument("--train-crop", type=int, default=112)
    ap.add_argument("--skip-data", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    return ap.parse_args()


def _start_local_cluster() -> tuple[int, dict[str, str]]:
    """Start cluster/local.sh on the first free port of a few (it refuses ports in use) → (port, its env)."""
    for port in (PORT, PORT + 20, PORT + 40):
        env = dict(os.environ, SURGMOTION_RAY_PORT=str(port), SURGMOTION_RAY_DASHBOARD_PORT=str(port + 1900),
                   SURGMOTION_RAY_TEMP_DIR=f"/tmp/smray-bench-{port}", RAY_AUTH_MODE=os.environ["RAY_AUTH_MODE"])
        env.pop("RAY_ADDRESS", None)
        try:
            local_sh("up", env)
        except RuntimeError:
            continue
        return port, env
    raise RuntimeError("could not start the local cluster")


def _measure(manifest: Path, args: argparse.Namespace, out: list[str]) -> None:

    if not args.skip_data:
        plan = SamplingPlan.from_index(build_clip_index(load_manifest(manifest), args.frames))
        data_rate(plan, 4, 2, args)  # warm-up: start workers on both nodes, import decord
        r1 = max(data_rate(plan, args.clips, 1, args) for _ in range(2))
        r2 = max(data_rate(plan, args.clips, 2, args) for _ in range(2))
        out.append(f"data  (T={args.frames}, short side {args.short_side}, crop {args.crop}): "
                   f"1 decode task {r1:.2f} clips/s | 2 tasks (1 per node) {r2:.2f} clips/s | "
                   f"scaling {r2 / r1:.2f}x")
        print(out[-1], flush=True)
    if not args.skip_train:
        with tempfile.TemporaryDirectory(prefix="surgmotion_scaling_") as tmp:
            t1 = train_rate(manifest, 1, Path(tmp), args)
            t2 = train_rate(manifest, 2, Path(tmp), args)
        out.append(f"train (tiny ViT, T={args.frames}, {args.train_crop} px, global batch 4, "
                   f"{args.train_steps} steps): 1 worker {t1:.2f} clips/s | 2 workers (DDP) {t2:.2f} clips/s | "
                   f"scaling {t2 / t1:.2f}x")


def main() -> None:
    args = _parse()

    manifest = generate_corpus(Path(tempfile.gettempdir()) / "surgmotion_bench_corpus", SyntheticConfig(), workers=2)
    port, env = _start_local_cluster() if not args.address else (PORT, {})
    address = args.address or f"127.0.0.1:{port}"
    out: list[str] = []
    try:
        ray.init(address=address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        nodes = [n for n in ray.nodes() if n["Alive"]]
        out.append(f"cluster {address}: {len(nodes)} nodes, {ray.cluster_resources().get('CPU', 0):.0f} CPUs; "
                   f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        _measure(manifest, args, out)
        out.append(f"load average at end {os.getloadavg()[0]:.1f}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if not args.address:
            local_sh("down", env)
            shutil.rmtree(env["SURGMOTION_RAY_TEMP_DIR"], ignore_errors=True)
    print("\n".join(out))


if __name__ == "__main__":
    main()
