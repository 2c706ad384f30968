"""Frozen attentive-probe sweeps (lr x wd grid with Ray Tune, best head on val, test once, MLflow).

    python experiments/sweep_probes.py --all                      # synthetic suite x newest checkpoint (or random:tiny)
    python experiments/sweep_probes.py --benchmark synthetic-phase --backbone random:tiny --set epochs=2
    python experiments/sweep_probes.py --config experiments/configs/sweep/paper.yaml --data-root /data/cholec80 \\
        --benchmark Cholec80 --backbone surgmotion:~/.surgmotion/ray_results/run/checkpoint_000010
    python experiments/sweep_probes.py --benchmark JIGSAWS --data-root /data/jigsaws --fold all
    python experiments/sweep_probes.py --all --resume             # finish interrupted sweeps

Prints a summary table (benchmark x backbone -> primary test metric, best lr / wd). Docs: docs/sweeps.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _cli

from orchestrator.config import ConfigError, load_config, work_dir
from orchestrator.probe.config import SweepConfig
from orchestrator.probe.plan import plan_sweeps
from orchestrator.synthetic.suite import build_synthetic_suite

DEFAULT_CONFIG = _cli.REPO_ROOT / "experiments" / "configs" / "sweep" / "default.yaml"


def latest_checkpoint(home: Path) -> Path | None:
    """The newest ``<work dir>/ray_results/*/checkpoint_*/`` holding a ``model.pt`` (by mtime), or None."""
    found = [p.parent for p in home.glob("ray_results/*/checkpoint_*/model.pt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def default_backbones(home: Path) -> list[str]:
    ckpt = latest_checkpoint(home)
    return [f"surgmotion:{ckpt}"] if ckpt else ["random:tiny"]


def parse_folds(values: list[str]) -> list[int] | str:
    """``--fold`` values → ``SweepConfig.folds`` ('all', or a list of fold numbers)."""
    if "all" in values:
        return "all"
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ConfigError(f"--fold {values}: give fold numbers or 'all'") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="every benchmark of the config (default: synthetic suite)")
    ap.add_argument("--benchmark", action="append", default=[], metavar="NAME", help="benchmark (repeatable)")
    ap.add_argument("--backbone", action="append", default=[], metavar="SPEC",
                    help="random[:size] | surgmotion:<ckpt dir> | timm:<name>[@<weights>] | "
                         "vjepa2:<official .pt>[#encoder][,heads=<n>] (repeatable; docs/sweeps.md)")
    ap.add_argument("--data-root", help="root of the benchmark data (default: the config's / the synthetic suite)")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="sweep YAML (default: %(default)s)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set epochs=2 (repeatable)")
    ap.add_argument("--fold", action="append", default=[], metavar="N|all",
                    help="fold of a fold-split benchmark (JIGSAWS, CholecT50, SurgicalActions160; repeatable) or "
                         "'all'; benchmarks without folds run once")
    ap.add_argument("--resume", action="store_true", help="restore the sweeps and finish unfinished trials")
    return ap


def main() -> int:
    args = build_parser().parse_args()

    cfg = load_config(SweepConfig, args.config, args.overrides)
    if not args.all and not args.benchmark:
        raise ConfigError("nothing to do: give --all or --benchmark NAME")
    if args.benchmark:
        cfg.benchmarks = args.benchmark
    if args.fold:
        cfg.folds = parse_folds(args.fold)
    home = work_dir()
    cfg.backbones = args.backbone or cfg.backbones or default_backbones(home)
    if args.data_root:
        root = Path(args.data_root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"--data-root {root} does not exist")
        cfg.data_root = str(root)
    if cfg.data_root is None and all(b.lower().startswith("synthetic-") for b in cfg.benchmarks):
        print(f"[sweep] synthetic suite at {home / 'synthetic_suite'} (built if absent)", flush=True)
        cfg.data_root = str(build_synthetic_suite(home / "synthetic_suite", seed=0, workers=1,
                                                  progress=lambda m: print(f"[suite] {m}", flush=True)))

    plan = plan_sweeps(cfg)  # checks the config and reads every annotation before Ray starts (bad input: exit 2)
    from orchestrator.probe.sweep import run_sweeps, summary_table  # deferred: Ray Tune / Data, only to run

    results = run_sweeps(cfg, resume=args.resume, plan=plan)
    print(summary_table(results))
    total = sum(r.seconds for r in results)
    print(f"[sweep] {len(results)} sweep(s) in {total:.0f} s; MLflow experiment {cfg.experiment!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    _cli.run_cli(main)
