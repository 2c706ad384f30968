"""One storage layer for everything a multi-node run must share (pyarrow.fs; no hand-written clients).

A location is a local path, ``file://…``, ``s3://bucket/prefix`` or ``gs://bucket/prefix``. Local paths keep the
single-machine behaviour (``~`` expanded, made absolute). ``s3://`` honours the AWS SDK's environment:
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (an S3-compatible store: MinIO, Ceph, a local moto server),
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` and the usual credentials; ``gs://`` uses Google's default credentials.
The driver resolves a location once and hands its :attr:`StoragePath.uri` (a plain string) to Ray workers, which
resolve it again on their node with the same environment.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs")


class StorageError(ValueError):
    """A storage location that cannot be used (bad scheme, no bucket)."""


def s3_filesystem() -> pafs.S3FileSystem:
    """An S3 filesystem configured from the AWS SDK environment variables (endpoint override included)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if not endpoint:
        return pafs.S3FileSystem(region=region)
    url = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    return pafs.S3FileSystem(region=region, endpoint_override=url.netloc, scheme=url.scheme or "https")


@dataclass(frozen=True)
class StoragePath:
    """A resolved location: its filesystem, the path within it, and the URI that names it everywhere."""

    fs: pafs.FileSystem
    path: str   # within ``fs`` (no scheme): "/abs/dir" locally, "bucket/prefix" on a bucket
    scheme: str  # "" (local), "s3" or "gs"

    @property
    def uri(self) -> str:
        return self.path if not self.scheme else f"{self.scheme}://{self.path}"

    @property
    def is_local(self) -> bool:
        return not self.scheme

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> StoragePath:
        return StoragePath(self.fs, f"{self.path.rstrip('/')}/{name.strip('/')}", self.scheme)

    def parent(self) -> StoragePath:
        return StoragePath(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], self.scheme)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def local_path(self) -> Path:
        if not self.is_local:
            raise StorageError(f"{self.uri} is not a local path")
        return Path(self.path)

    # ------------------------------------------------------------------ queries
    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    # ------------------------------------------------------------------ small files
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return bytes(f.read())

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Whole-file write, never seen half-written: a local temp file renamed over the target; an object PUT
        (atomic by nature) on a bucket."""
        if self.is_local:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            return
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    # ------------------------------------------------------------------ folders
    def mkdir(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def rmtree(self) -> None:
        if self.info().type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)

    def listdir(self) -> list[str]:
        """Names directly under this folder ([] when it does not exist)."""
        if self.info().type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    # ------------------------------------------------------------------ transfers
    def upload(self, local: Path) -> None:
        """Copy a local file or folder (recursively) here. A local file target is written to a temp name and
        renamed (never half-written); a bucket object is one PUT."""
        if self.is_local and local.is_file():
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            shutil.copy2(local, part)
            os.replace(part, target)
            return
        if self.is_local:
            Path(self.path).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(str(local), self.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def download(self, local: Path) -> Path:
        """Copy this file or folder to ``local`` (a folder's content lands in ``local``); returns ``local``."""
        local.parent.mkdir(parents=True, exist_ok=True)
        if self.info().type == pafs.FileType.Directory:
            local.mkdir(exist_ok=True)  # copy_files makes the sub-folders it writes into, not the top one
        pafs.copy_files(self.path, str(local), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return local

    @contextlib.contextmanager
    def local_copy(self) -> Iterator[Path]:
        """A local file or folder with this location's content: itself when local, else a download into a temp
        folder on the caller's node, removed on exit."""
        if self.is_local:
            yield Path(self.path)
            return
        tmp = Path(tempfile.mkdtemp(prefix="surgmotion-fetch-"))
        try:
            yield self.download(tmp / self.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def ray_storage(self) -> dict[str, Any]:
        """``storage_path`` / ``storage_filesystem`` for Ray Train's and Tune's ``RunConfig``."""
        if self.is_local:
            return {"storage_path": self.path}
        return {"storage_path": self.path, "storage_filesystem": self.fs}


def resolve_storage(location: str | Path) -> StoragePath:
    """A local path, ``file://``, ``s3://`` or ``gs://`` location → :class:`StoragePath` (local: absolute)."""
    text = str(location)
    url = urlparse(text)
    if url.scheme in ("", "file") or (len(url.scheme) == 1 and os.name == "nt"):
        raw = url.path if url.scheme == "file" else text
        return StoragePath(pafs.LocalFileSystem(), str(Path(raw).expanduser().resolve()), "")
    if url.scheme not in REMOTE_SCHEMES:
        raise StorageError(f"{text}: unsupported storage scheme {url.scheme!r} (use a local path, file://, s3:// "
                           "or gs://)")
    if not url.netloc:
        raise StorageError(f"{text}: no bucket in the storage URI")
    path = f"{url.netloc}{url.path}".rstrip("/")
    fs = s3_filesystem() if url.scheme == "s3" else pafs.GcsFileSystem()
    return StoragePath(fs, path, url.scheme)


def is_remote(location: str | Path | None) -> bool:
    return location is not None and urlparse(str(location)).scheme in REMOTE_SCHEMES

