"""Generate the synthetic surgical-like video corpus (the embedded default for pretraining and probing).

    python experiments/make_synthetic.py --out data/synthetic --seed 0 [--videos-per-source 2] [--seconds 30]
        [--width 320 --height 256] [--fps 25] [--workers 1] [--force]

Prints one line per video and, last, the manifest path. Re-running with the same arguments is a no-op.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.synthetic.config import SyntheticConfig
from orchestrator.synthetic.corpus import generate_corpus  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    defaults = SyntheticConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (manifest.yaml goes here)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--videos-per-source", type=int, default=defaults.videos_per_source)
    p.add_argument("--seconds", type=float, default=defaults.seconds)
    p.add_argument("--width", type=int, default=defaults.width)
    p.add_argument("--height", type=int, default=defaults.height)
    p.add_argument("--fps", type=int, default=defaults.fps)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (output is identical)")
    p.add_argument("--force", action="store_true", help="regenerate even if a complete corpus exists")
    args = p.parse_args(argv)
    try:
        config = SyntheticConfig(seed=args.seed, videos_per_source=args.videos_per_source, seconds=args.seconds,
                                 width=args.width, height=args.height, fps=args.fps)
    except ValueError as e:
        p.error(str(e))
    t0 = time.perf_counter()
    manifest = generate_corpus(args.out, config, force=args.force, workers=args.workers,
                               progress=lambda line: print(line, flush=True))
    print(f"done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    print(manifest)
    return manifest


if __name__ == "__main__":
    main()
