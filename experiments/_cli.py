"""Shared bits of the experiment CLIs: make the repo importable without installation, clean exit on user errors."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from model.backbones.factory import BackboneError
from orchestrator.benchmarks.spec import BenchmarkError
from orchestrator.config import ConfigError
from orchestrator.data.manifest import ManifestError


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; errors a user caused (bad config, manifest, path) print one line and exit with code 2."""
    try:
        code = main()
    except (ConfigError, ManifestError, BenchmarkError, BackboneError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
