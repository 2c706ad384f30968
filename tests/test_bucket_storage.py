"""Runs whose shared storage is a bucket (a local moto S3 server, tests/s3_server.py): pretraining checkpoints
there and a re-run resumes from there; a sweep caches features there and a second driver (another home, so
another local mirror) reads them from there instead of extracting again."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from conftest import metric_history, tiny_config, tiny_overrides, tiny_phase_benchmark

from orchestrator.config import REPO_ROOT, load_config
from orchestrator.pretrain.config import PretrainConfig
from orchestrator.pretrain.driver import run_pretraining
from orchestrator.probe.cache_store import INDEX_FILE
from orchestrator.probe.features import EXTRACTION_COUNTER
from orchestrator.probe.sweep import run_probe_sweep
from orchestrator.storage import resolve_storage

pytestmark = pytest.mark.slow


def bucket_files(uri: str) -> list[str]:
    """Every object under ``uri``, relative to it."""
    loc = resolve_storage(uri)
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    return sorted(i.path[len(loc.path) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_pretraining_checkpoints_to_a_bucket_and_resumes_from_it(ray_cluster: str, s3_bucket: str,
                                                                  tiny_corpus: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    storage = f"{s3_bucket}/ray-{uuid.uuid4().hex[:8]}"
    demo = REPO_ROOT / "experiments" / "configs" / "pretrain" / "demo.yaml"
    over = tiny_overrides(tiny_corpus, "bucket-run", steps=6, workers=1) + [f"ray.storage_path={storage}"]
    first = run_pretraining(load_config(PretrainConfig, demo, over + ["train.stop_after_step=4"]))
    assert first.steps == 4
    assert not (tmp_path / "ray_results").exists()  # nothing of the run on the driver's disk
    objects = bucket_files(f"{storage}/bucket-run")
    ckpts = sorted({f.split("/")[0] for f in objects if f.endswith("/model.pt")})
    assert len(ckpts) == 2 and all(f"{c}/train_state.pt" in objects for c in ckpts), objects  # steps 2 and 4
    t_restart = int(time.time() * 1000)
    second = run_pretraining(load_config(PretrainConfig, demo, over))
    assert second.steps == 6 and second.run_id == first.run_id  # the same MLflow run, continued
    history = metric_history(second.tracking_uri, second.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 7))  # each step once: nothing lost, nothing re-logged
    assert sorted(m.step for m in history if m.timestamp >= t_restart) == [5, 6]  # resumed at step 4's checkpoint
    assert second.checkpoint_dir is not None and second.checkpoint_dir.startswith(f"{storage}/bucket-run/")


def test_sweep_feature_cache_in_a_bucket_is_shared_between_drivers(ray_cluster: str, s3_bucket: str,
                                                                   tiny_root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"{s3_bucket}/sweep-{uuid.uuid4().hex[:8]}"
    cfg = tiny_config(tmp_path, lr=[1e-2], wd=[0.01], epochs=2).model_copy(
        update={"cache_dir": f"{prefix}/cache", "storage_dir": f"{prefix}/sweeps"})
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path / "driver_a"))
    before = EXTRACTION_COUNTER["extractions"]
    first = run_probe_sweep(cfg, "random:tiny", tiny_phase_benchmark(), root=tiny_root)
    assert EXTRACTION_COUNTER["extractions"] == before + 1
    cached = bucket_files(f"{prefix}/cache")
    assert any(f.endswith(f"/{INDEX_FILE}") for f in cached) and any(f.endswith(".npy") for f in cached), cached
    outputs = bucket_files(f"{prefix}/sweeps")
    assert any(f.endswith("result.json") for f in outputs), outputs
    # another driver: a fresh home, so an empty local mirror; the features come from the bucket
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path / "driver_b"))
    second = run_probe_sweep(cfg, "random:tiny", tiny_phase_benchmark(), root=tiny_root)
    assert EXTRACTION_COUNTER["extractions"] == before + 1
    assert any((tmp_path / "driver_b" / "feature_cache_mirror").rglob(INDEX_FILE))
    assert second.test_metrics == first.test_metrics  # same features, same seed, same head
