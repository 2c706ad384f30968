"""Shared config machinery: the strict pydantic base, YAML loading, ``--set key=value`` overrides, the work dir.

The configs themselves live with their job: :mod:`orchestrator.pretrain.config`, :mod:`orchestrator.data.config`,
:mod:`orchestrator.probe.config`.

Errors a user can cause (missing file, malformed YAML, unknown key, wrong type) raise :class:`ConfigError` with
one message naming the file and the dotted key; the CLIs turn it into exit code 2.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "experiments" / "configs"


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


def work_dir() -> Path:
    """Where runs, caches and the MLflow database live: ``$SURGMOTION_HOME`` or ``~/.surgmotion``.

    Absolute on purpose: ``ray job submit`` runs the driver in a temporary copy of the working dir."""
    return Path(os.environ.get("SURGMOTION_HOME", Path.home() / ".surgmotion")).expanduser().resolve()


def slug(text: str, max_len: int = 120) -> str:
    """``text`` as a file/folder-name part: runs of characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:max_len]


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


M = TypeVar("M", bound=BaseModel)


def parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars/lists: ``3`` → int, ``1e-3`` → float, ``[1, 2]`` → list, ``null``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply ``a.b.c=value`` to nested dict ``data`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"{source}: expected key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = parse_value(value)


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after")) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_config(model: type[M], path: str | Path | None, overrides: list[str] | None = None) -> M:
    """Load ``path`` (or defaults), apply ``key=value`` overrides, validate with ``model``."""
    source = str(path) if path else "<defaults>"
    data = read_yaml(Path(path)) if path else {}
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source + (" (with --set overrides)" if overrides else ""))
                          ) from None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → {"a.b.c": value} (lists and tuples kept as values)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
