"""Object storage through fsspec, with failures turned into errors a user can act on.

Credentials come from the environment the way each provider's own tools read them
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL for S3, and so on); on the
cluster they are a Secret mounted as environment variables, never part of the config.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import fsspec

from .errors import StorageAccessDenied, StorageUnavailable

REMOTE_PROTOCOLS = ("s3://", "gs://", "gcs://", "az://", "abfs://")


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_PROTOCOLS)


def is_storage_uri(uri: str) -> bool:
    return is_remote(uri) or uri.startswith("file://")


def _classify(uri: str, error: BaseException) -> Exception:
    """Maps the many shapes of storage errors onto two: denied (permanent), unavailable."""
    text = f"{type(error).__name__}: {error}"
    denied_words = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "Forbidden", "403", "NoCredentials", "Unable to locate credentials")
    if isinstance(error, PermissionError) or any(w in text for w in denied_words):
        return StorageAccessDenied(
            f"Storage refused access to {uri}: check the credentials ({text})")
    return StorageUnavailable(f"Cannot reach storage at {uri}: {text}")


@dataclass
class Location:
    """A folder in object storage (or on a local disk) and the filesystem that serves it."""

    uri: str
    endpoint_url: str | None = None

    def __post_init__(self):
        options = {}
        if self.uri.startswith("file://"):
            options["auto_mkdir"] = True  # object stores have no folders to create
        if self.uri.startswith("s3://"):
            endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint:
                options["endpoint_url"] = endpoint
            # Fail in seconds, not minutes, when the endpoint does not answer.
            # The body is covered by the CRC32 checksum botocore sends with every upload, not
            # by a SHA-256 of it in the signature: that is botocore's default over HTTPS, and
            # over plain HTTP (an in-cluster MinIO or SeaweedFS) it would hash every
            # checkpoint byte again on the training node's CPU.
            options["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 60,
                                        "retries": {"max_attempts": 2},
                                        "s3": {"payload_signing_enabled": False}}
        self.fs, self.root = fsspec.core.url_to_fs(self.uri.rstrip("/"), **options)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def display(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def call(self, what: str, fn, *args, **kwargs):
        """Runs one filesystem call, translating its failure."""
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001 - every backend raises its own types
            raise _classify(self.display(), error) from error

    def check_writable(self) -> None:
        """Preflight: write and remove a probe object, so bad credentials or an unreachable
        endpoint fail before any model is loaded."""
        probe = self.path(".ftjob-probe")
        self.call("write", self.fs.pipe_file, probe, b"ok")
        self.call("delete", self.fs.rm_file, probe)

    def exists(self, *parts: str) -> bool:
        return self.call("exists", self.fs.exists, self.path(*parts))

    def read_text(self, *parts: str) -> str:
        return self.call("read", self.fs.cat_file, self.path(*parts)).decode()

    def write_text(self, text: str, *parts: str) -> None:
        self.call("write", self.fs.pipe_file, self.path(*parts), text.encode())

    def list_dirs(self) -> list[str]:
        try:
            entries = self.call("list", self.fs.ls, self.root, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e["name"].rstrip("/")) for e in entries
                if e["type"] == "directory"]

    def upload_files(self, local_root: Path, relative: list[str], *prefix: str) -> None:
        self.call("upload", self.fs.put, [str(local_root / r) for r in relative],
                  [self.path(*prefix, r) for r in relative])

    def download_files(self, relative: list[str], local_root: Path, *prefix: str) -> None:
        for r in relative:
            (local_root / r).parent.mkdir(parents=True, exist_ok=True)
        self.call("download", self.fs.get, [self.path(*prefix, r) for r in relative],
                  [str(local_root / r) for r in relative])

    def remove(self, *parts: str) -> None:
        try:
            self.call("delete", self.fs.rm, self.path(*parts), recursive=True)
        except FileNotFoundError:
            pass

    def download_folder(self, local_root: Path) -> None:
        """Copies every file under this location into local_root (models from storage)."""
        files = [f for f in self.call("list", self.fs.find, self.root)]
        if not files:
            raise FileNotFoundError(self.uri)
        relative = [posixpath.relpath(f, self.root) for f in files]
        self.download_files(relative, local_root)


def local_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
