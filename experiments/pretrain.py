"""Pretrain SurgMotion on Ray.

    python experiments/pretrain.py                                   # embedded default (demo.yaml)
    python experiments/pretrain.py --config experiments/configs/pretrain/vitl_stage1.yaml --set data.manifest=...
    ray job submit --working-dir . -- python experiments/pretrain.py

Re-running with the same --name resumes from its latest checkpoint.
"""
from __future__ import annotations

import argparse

import _cli

from orchestrator.config import load_config
from orchestrator.pretrain.config import PretrainConfig

DEFAULT_CONFIG = _cli.REPO_ROOT / "experiments" / "configs" / "pretrain" / "demo.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="pretraining YAML (default: %(default)s)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set train.max_steps=100 (repeatable)")
    ap.add_argument("--name", help="run name (same name = resume); overrides the config's `name`")
    args = ap.parse_args()

    overrides = args.overrides + ([f"name={args.name}"] if args.name else [])
    cfg = load_config(PretrainConfig, args.config, overrides)
    from orchestrator.pretrain.driver import run_pretraining  # deferred: Ray Train, MLflow; a bad config exits first

    run_pretraining(cfg)
    return 0


if __name__ == "__main__":
    _cli.run_cli(main)
