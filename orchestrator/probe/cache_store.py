"""The feature cache on shared storage: a bucket (``s3://`` / ``gs://``) mirrored into a local folder.

Entries are written and read by the sweep's driver (:mod:`orchestrator.probe.features`), so a bucket cache only
has to move whole entries: a miss is extracted into the local mirror as usual, then pushed (every shard first,
``index.json`` last, so a reader never sees an entry without all its shards); a lookup that misses the mirror pulls
the entry when the bucket holds a complete one. A local ``cache_dir`` (a disk or a shared mount) is used directly.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from orchestrator.config import work_dir
from orchestrator.storage import StoragePath, resolve_storage

INDEX_FILE = "index.json"
MIRROR_DIR = "feature_cache_mirror"


class CacheStore:
    """Where entries live: ``root`` (local, read by the cache code) and, for a bucket cache, ``remote``."""

    def __init__(self, cache_dir: str | Path) -> None:
        location = resolve_storage(cache_dir)
        if location.is_local:
            self.root, self.remote = location.local_path(), None
        else:
            digest = hashlib.sha1(location.uri.encode()).hexdigest()[:12]
            self.root, self.remote = work_dir() / MIRROR_DIR / digest, location
        self.pulled = self.pushed = 0

    def __str__(self) -> str:
        return str(self.root) if self.remote is None else f"{self.remote.uri} (mirror {self.root})"

    def entry(self, key: str) -> Path:
        return self.root / key

    def remote_entry(self, key: str) -> StoragePath | None:
        return None if self.remote is None else self.remote / key

    def pull(self, key: str) -> bool:
        """Copy a complete bucket entry into the mirror; False when the bucket has none (or no bucket)."""
        remote = self.remote_entry(key)
        if remote is None or not (remote / INDEX_FILE).is_file():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".pull-{key}-{uuid.uuid4().hex[:8]}"
        try:
            remote.download(tmp)
            final = self.entry(key)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.pulled += 1
        return True

    def push(self, entry: Path) -> None:
        """Copy a committed mirror entry to the bucket: shards first, the index last (no-op without a bucket)."""
        remote = self.remote_entry(entry.name)
        if remote is None:
            return
        for f in sorted(entry.iterdir()):
            if f.name != INDEX_FILE:
                (remote / f.name).upload(f)
        (remote / INDEX_FILE).upload(entry / INDEX_FILE)
        self.pushed += 1
