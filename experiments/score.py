"""Score saved predictions: prints one JSON object {metric: value} on stdout.

    python experiments/score.py --task phase --input preds.npz [--num-classes 7] [--relaxed --fps 1]
    python experiments/score.py --task triplet --input preds.npz [--maps CholecT50/label_mapping.txt]

NPZ keys per task and metric definitions: docs/metrics.md. Phase: unrelaxed video-wise metrics, the union-convention
f1_union / jaccard_union, and with --relaxed the relaxed metrics as <name>_relaxed. Triplet: the component map is the
official CholecT50 table shipped with the package unless the NPZ has a 'maps' key or --maps is given.
Input errors go to stderr with exit code 2.
Undefined values (e.g. Spearman of a constant prediction) are printed as JSON null.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pydantic import ValidationError  # noqa: E402

from model.tasks import TASKS
from orchestrator.benchmarks.metrics import ScoreOptions  # noqa: E402
from orchestrator.benchmarks.metrics_io import ScoreInputError, score_npz


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--input", required=True, type=Path, help="prediction .npz (keys: docs/metrics.md)")
    parser.add_argument("--num-classes", type=int, help="label-space size (phase/action; default max label + 1)")
    parser.add_argument("--relaxed", action="store_true",
                        help="phase: add the Cholec80/M2CAI16 relaxed-boundary metrics (<name>_relaxed)")
    parser.add_argument("--fps", type=float, help="phase --relaxed: evaluation sampling rate (window = 10*fps)")
    parser.add_argument("--relaxed-protocol", choices=("cholec80", "m2cai16"),
                        help="phase --relaxed: phase rules (default: m2cai16 for 8 classes, else cholec80)")
    parser.add_argument("--aggregation", choices=("video", "phase"), default="video",
                        help="phase: video-wise (default) or MATLAB phase-wise aggregation")
    parser.add_argument("--maps", type=Path,
                        help="triplet: component map overriding the packaged CholecT50 table: .npz with key 'maps' "
                             "([N, 3] instrument, verb, target) or a text table IVT,I,V,T[,IV,IT]")
    parser.add_argument("--ignore-null", action="store_true", help="triplet: drop null triplets 94-99 from ap_ivt")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = ScoreOptions(
            num_classes=args.num_classes, relaxed=args.relaxed, fps=args.fps, relaxed_protocol=args.relaxed_protocol,
            aggregation=args.aggregation, maps_path=args.maps, ignore_null=args.ignore_null,
        )
        result = score_npz(args.task, args.input, options)
    except ValidationError as exc:
        messages = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        print(f"score.py: error: {messages}", file=sys.stderr)
        return 2
    except ScoreInputError as exc:
        print(f"score.py: error: {exc}", file=sys.stderr)
        return 2
    clean = {name: (None if math.isnan(value) else value) for name, value in result.items()}
    print(json.dumps(clean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
