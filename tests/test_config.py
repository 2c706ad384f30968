"""Config loading: shipped YAMLs validate; unknown keys, wrong types and malformed YAML give one clear error."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import CONFIG_DIR, REPO_ROOT, ConfigError, flatten, load_config
from orchestrator.pretrain.config import PretrainConfig


@pytest.mark.parametrize("name", ["demo", "vitl_stage1", "vitl_stage2"])
def test_shipped_pretrain_configs_validate(name: str) -> None:
    cfg = load_config(PretrainConfig, CONFIG_DIR / "pretrain" / f"{name}.yaml")
    enc = cfg.model.encoder  # the clip tiles into whole tubelets: the config can run
    assert cfg.data.frames % enc.tubelet_size == 0 and cfg.data.crop % enc.patch_size == 0


def test_stage2_config_continues_stage1() -> None:
    """Stage 2 loads stage 1's weights (the same model section) and only lengthens the clips (T=16 → 64)."""
    s1 = load_config(PretrainConfig, CONFIG_DIR / "pretrain" / "vitl_stage1.yaml")
    s2 = load_config(PretrainConfig, CONFIG_DIR / "pretrain" / "vitl_stage2.yaml")
    assert s2.model == s1.model
    assert s2.data.frames == 4 * s1.data.frames
    same = {"frames": s1.data.frames, "decode_batch": s1.data.decode_batch}  # decode batches shrink with T
    assert s2.data.model_copy(update=same) == s1.data and s2.train.init_from


def test_overrides_parse_yaml_scalars() -> None:
    cfg = load_config(PretrainConfig, None, ["train.max_steps=7", "optim.lr=1e-3", "model.mask.tube_ratio=[0.5, 0.6]",
                                            "data.manifest=null", "name=abc"])
    assert cfg.train.max_steps == 7 and cfg.optim.lr == 1e-3 and tuple(cfg.model.mask.tube_ratio) == (0.5, 0.6)
    assert cfg.name == "abc" and cfg.data.manifest is None


def test_unknown_key_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  max_stepz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.max_stepz: unknown key"):
        load_config(PretrainConfig, f)
    with pytest.raises(ConfigError, match=r"model\.encoder\.sise: unknown key"):
        load_config(PretrainConfig, None, ["model.encoder.sise=tiny"])


def test_wrong_type_and_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.global_batch"):
        load_config(PretrainConfig, None, ["train.global_batch=lots"])
    with pytest.raises(ConfigError, match=r"global_batch .* multiple"):
        load_config(PretrainConfig, None, ["train.global_batch=5", "train.batch_per_worker=2"])
    with pytest.raises(ConfigError, match=r"crop"):
        load_config(PretrainConfig, None, ["data.crop=300"])
    f = tmp_path / "bad.yaml"
    f.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: malformed YAML"):
        load_config(PretrainConfig, f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


def test_cli_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: fast\n")
    r = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "pretrain.py"), "--config", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "optim.lr" in r.stderr and "Traceback" not in r.stderr


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_every_config_key_is_documented() -> None:
    from pydantic import BaseModel

    def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += keys(ann, f"{prefix}{name}.")
            else:
                out.append(prefix + name)
        return out

    doc = (REPO_ROOT / "docs" / "configs.md").read_text()
    missing = [k for k in keys(PretrainConfig) if f"| `{k}` |" not in doc]
    assert not missing, f"undocumented config keys: {missing}"


def test_slug_keeps_safe_characters_and_trims() -> None:
    from orchestrator.config import slug

    assert slug("surgmotion:/a b/checkpoint_04") == "surgmotion_a_b_checkpoint_04"
    assert slug("synthetic-phase|fold1") == "synthetic-phase_fold1"
    assert slug("__x.y__") == "x.y" and slug(":::") == ""
    assert slug("a" * 200) == "a" * 120 and slug("a" * 200, 100) == "a" * 100


def test_iterations_per_epoch_sets_the_number_of_optimiser_steps() -> None:
    """V-JEPA's epoch is ``ipe`` optimiser steps, not a pass over the corpus."""
    from types import SimpleNamespace

    from orchestrator.pretrain.driver import plan_steps

    corpus = SimpleNamespace(default_epoch_size=lambda: 1000)  # 1000 clips of video
    ipe = load_config(PretrainConfig, None, ["train.epochs=2", "train.iterations_per_epoch=300"])
    assert plan_steps(ipe, corpus) == (300 * ipe.train.global_batch, 600)      # type: ignore[arg-type]
    passes = load_config(PretrainConfig, None, ["train.epochs=2"])
    assert plan_steps(passes, corpus) == (1000, 2 * 1000 // passes.train.global_batch)  # type: ignore[arg-type]
    capped = load_config(PretrainConfig, None, ["train.iterations_per_epoch=300", "train.max_steps=7"])
    assert plan_steps(capped, corpus)[1] == 7                                  # type: ignore[arg-type]
    paper = load_config(PretrainConfig, CONFIG_DIR / "pretrain" / "vitl_stage1.yaml")
    assert plan_steps(paper, corpus)[1] == paper.train.epochs * 300            # type: ignore[arg-type]
