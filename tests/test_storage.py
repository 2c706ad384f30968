"""The storage layer (orchestrator/storage.py) and the bucket feature cache (orchestrator/probe/cache_store.py):
the same operations on a local folder and on a local S3 server (moto, tests/s3_server.py)."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from orchestrator.probe.cache_store import INDEX_FILE, CacheStore
from orchestrator.storage import StorageError, is_remote, resolve_storage


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return f"{request.getfixturevalue('s3_bucket')}/t-{uuid.uuid4().hex[:8]}"


def test_round_trip_on_local_and_s3(root: str, tmp_path: Path) -> None:
    base = resolve_storage(root)
    assert base.uri == root and base.is_local == (not is_remote(root))
    assert not (base / "a.json").exists() and base.listdir() == []
    (base / "sub" / "a.json").write_text('{"samples": 8}')
    assert (base / "sub" / "a.json").read_text() == '{"samples": 8}' and (base / "sub" / "a.json").is_file()
    assert base.listdir() == ["sub"] and (base / "sub").parent().uri == base.uri
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "x.bin").write_bytes(b"\x00\x01" * 1000)
    (src / "deep" / "y.txt").write_text("why")
    (base / "tree").upload(src)
    assert (base / "tree").listdir() == ["deep", "x.bin"]
    back = (base / "tree").download(tmp_path / "back")
    assert (back / "x.bin").read_bytes() == (src / "x.bin").read_bytes()
    assert (back / "deep" / "y.txt").read_text() == "why"
    with (base / "tree" / "x.bin").local_copy() as f:
        assert f.read_bytes() == (src / "x.bin").read_bytes()
        fetched = f
    assert fetched.exists() == base.is_local  # a downloaded copy is removed on exit, a local file never
    (base / "tree").rmtree()
    assert base.listdir() == ["sub"]


def test_locations_resolve_once_and_bad_ones_fail_clearly(tmp_path: Path) -> None:
    assert resolve_storage(f"file://{tmp_path}/x").uri == str(tmp_path / "x") == resolve_storage(tmp_path / "x").uri
    assert resolve_storage("~/y").uri == str(Path("~/y").expanduser().resolve())
    s3 = resolve_storage("s3://bucket/a/b/")
    assert (s3.uri, s3.path, s3.name) == ("s3://bucket/a/b", "bucket/a/b", "b")
    assert (s3 / "c").uri == "s3://bucket/a/b/c" and s3.ray_storage()["storage_path"] == "bucket/a/b"
    assert "storage_filesystem" not in resolve_storage(tmp_path).ray_storage()
    with pytest.raises(StorageError, match="unsupported storage scheme 'hdfs'"):
        resolve_storage("hdfs://nn/x")
    with pytest.raises(StorageError, match="no bucket"):
        resolve_storage("s3:///x")
    with pytest.raises(StorageError, match="not a local path"):
        s3.local_path()


def test_bucket_cache_pushes_index_last_and_pulls_only_complete_entries(s3_bucket: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path / "home_a"))
    uri = f"{s3_bucket}/cache-{uuid.uuid4().hex[:8]}"
    a = CacheStore(uri)
    assert a.remote is not None and a.root.is_relative_to(tmp_path / "home_a")
    entry = a.entry("k1")
    entry.mkdir(parents=True)
    (entry / "shard_00000.npy").write_bytes(b"tokens")
    (entry / INDEX_FILE).write_text('{"key": "k1"}')
    pushed: list[str] = []
    real_upload = type(a.remote).upload
    monkeypatch.setattr(type(a.remote), "upload", lambda self, local: (pushed.append(local.name),
                                                                         real_upload(self, local))[1])
    a.push(entry)
    assert pushed == ["shard_00000.npy", INDEX_FILE]  # a reader never sees an index before its shards
    # A second driver (another machine: another home, so another mirror) pulls it; an incomplete entry is no hit.
    monkeypatch.setenv("SURGMOTION_HOME", str(tmp_path / "home_b"))
    b = CacheStore(uri)
    assert b.root != a.root and not b.entry("k1").exists()
    assert b.pull("k1") and (b.entry("k1") / "shard_00000.npy").read_bytes() == b"tokens"
    (b.remote / "k2" / "shard_00000.npy").write_text("half")  # type: ignore[operator]
    assert not b.pull("k2") and not b.entry("k2").exists() and not b.pull("absent")
    assert (b.pulled, a.pushed) == (1, 1)
    local = CacheStore(tmp_path / "plain")
    assert local.remote is None and local.root == tmp_path / "plain" and not local.pull("k1")
