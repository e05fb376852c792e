"""Object storage through fsspec, with failures turned into errors a user can act on.

Credentials come from the environment the way each provider's own tools read them
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL for S3, and so on); on the
cluster they are a Secret mounted as environment variables, never part of the config.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import socket
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.exceptions import FSTimeoutError

from .errors import ConfigError, StorageAccessDenied, StorageUnavailable

REMOTE_PROTOCOLS = ("s3://", "gs://", "gcs://", "az://", "abfs://")
# Every storage call ends within this, or within CALL_SECONDS plus the time its bytes take at
# MIN_BYTES_PER_SECOND: a silent or frozen endpoint (which can hold a request forever, e.g.
# an upload waiting for "100 Continue") is then an error, not a hang.
CALL_SECONDS = 30.0
MIN_BYTES_PER_SECOND = 5 * 2**20
# So the storage check, a write and a delete, ends within 2 x CALL_SECONDS.
CHECK_SECONDS = 2 * CALL_SECONDS
# What a proxy in front of a restarting S3 server answers: worth another try.
GATEWAY_ERRORS = (502, 503, 504)
# S3 error codes that mean the credentials or the policy refuse the request.
S3_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
             "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled",
             "AccountProblem", "InvalidSecurity"}


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_PROTOCOLS)


def is_storage_uri(uri: str) -> bool:
    return is_remote(uri) or uri.startswith("file://")


def _causes(error: BaseException):
    """The error and what caused it (s3fs raises OSErrors caused by botocore's errors)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _s3_error(error: BaseException) -> tuple[str, int] | None:
    """(error code, HTTP status) of an S3 error response in the chain, if any."""
    for cause in _causes(error):
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return str(response["Error"].get("Code", "")), int(status)
    return None


def _is_type(error: BaseException, module: str, *names: str) -> bool:
    return any(type(cause).__module__.startswith(module) and type(cause).__name__ in names
               for cause in _causes(error))


def classify(uri: str, error: BaseException) -> Exception:
    """A storage failure as the error a user can act on, decided on exception types and S3
    error codes (never on message text, which holds the URI)."""
    s3 = _s3_error(error)
    if s3 is not None:
        code, status = s3
        if code in S3_DENIED or status == 403:
            return StorageAccessDenied(f"Storage refused access to {uri} ({code or status}): "
                                       "check the credentials and the bucket policy")
        if code == "NoSuchBucket":
            return ConfigError(f"The bucket of {uri} does not exist")
        if code.isdigit() and status not in GATEWAY_ERRORS:
            # botocore uses the HTTP status as the code when the body is no S3 error.
            return ConfigError(f"The endpoint for {uri} answered HTTP {status} without an "
                               "S3 error: is the endpoint URL an S3 server?")
        return StorageUnavailable(f"Storage at {uri} failed the request ({code or status}): "
                                  "it may be overloaded or starting")
    if _is_type(error, "botocore", "NoCredentialsError", "PartialCredentialsError"):
        return StorageAccessDenied(f"No credentials for {uri}: set AWS_ACCESS_KEY_ID and "
                                   "AWS_SECRET_ACCESS_KEY (a Secret on the cluster)")
    if any(isinstance(cause, (FSTimeoutError, asyncio.TimeoutError, TimeoutError,
                              socket.timeout)) for cause in _causes(error)) or \
            _is_type(error, "botocore", "ReadTimeoutError", "ConnectTimeoutError"):
        return StorageUnavailable(f"Storage at {uri} did not answer in time")
    if isinstance(error, PermissionError):
        return StorageAccessDenied(f"Storage refused access to {uri}: {error.strerror or error}")
    return StorageUnavailable(f"Cannot reach storage at {uri} ({type(error).__name__})")


def _deadline(byte_count: int = 0) -> float:
    return CALL_SECONDS + byte_count / MIN_BYTES_PER_SECOND


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
            options["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 20,
                                        "retries": {"max_attempts": 2},
                                        "s3": {"payload_signing_enabled": False}}
        self.fs, self.root = fsspec.core.url_to_fs(self.uri.rstrip("/"), **options)
        if self.uri.startswith("s3://"):
            self.fs.retries = 2  # s3fs's own retries, on top of botocore's; 5 by default

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def display(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def call(self, fn, *args, byte_count: int = 0, **kwargs):
        """Runs one filesystem call within its deadline, translating its failure."""
        if getattr(self.fs, "async_impl", False):
            kwargs["timeout"] = _deadline(byte_count)  # fsspec's sync() cancels it then
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001 - every backend raises its own types
            raise classify(self.display(), error) from error

    def check_writable(self) -> None:
        """Preflight: write and remove a probe object, so bad credentials or an unreachable
        endpoint fail before any model is loaded (within CHECK_SECONDS)."""
        probe = self.path(".ftjob-probe")
        self.call(self.fs.pipe_file, probe, b"ok")
        self.call(self.fs.rm_file, probe)

    def abort_incomplete_uploads(self) -> int:
        """Aborts S3 multipart uploads under this location that a killed upload left behind
        (their parts are billed and never listed). Returns how many."""
        if not self.uri.startswith("s3://"):
            return 0
        bucket, _, prefix = self.root.partition("/")
        listed = self.call(self.fs.call_s3, "list_multipart_uploads", Bucket=bucket,
                           Prefix=prefix.rstrip("/") + "/")
        uploads = listed.get("Uploads", [])
        for upload in uploads:
            self.call(self.fs.call_s3, "abort_multipart_upload", Bucket=bucket,
                      Key=upload["Key"], UploadId=upload["UploadId"])
        return len(uploads)

    def exists(self, *parts: str) -> bool:
        return self.call(self.fs.exists, self.path(*parts))

    def read_text(self, *parts: str) -> str:
        return self.call(self.fs.cat_file, self.path(*parts)).decode()

    def write_text(self, text: str, *parts: str) -> None:
        data = text.encode()
        self.call(self.fs.pipe_file, self.path(*parts), data, byte_count=len(data))

    def list_dirs(self) -> list[str]:
        try:
            entries = self.call(self.fs.ls, self.root, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e["name"].rstrip("/")) for e in entries
                if e["type"] == "directory"]

    def upload_files(self, local_root: Path, relative: list[str], *prefix: str) -> None:
        self.call(self.fs.put, [str(local_root / r) for r in relative],
                  [self.path(*prefix, r) for r in relative],
                  byte_count=sum((local_root / r).stat().st_size for r in relative))

    def download_files(self, relative: list[str], local_root: Path, *prefix: str,
                       byte_count: int = 0) -> None:
        """`byte_count`, their total size, lengthens the deadline for big downloads."""
        for r in relative:
            (local_root / r).parent.mkdir(parents=True, exist_ok=True)
        self.call(self.fs.get, [self.path(*prefix, r) for r in relative],
                  [str(local_root / r) for r in relative], byte_count=byte_count)

    def remove(self, *parts: str) -> None:
        try:
            self.call(self.fs.rm, self.path(*parts), recursive=True)
        except FileNotFoundError:
            pass

    def download_folder(self, local_root: Path) -> None:
        """Copies every file under this location into local_root (models from storage)."""
        files = self.call(self.fs.find, self.root, detail=True)
        if not files:
            raise FileNotFoundError(self.uri)
        relative = [posixpath.relpath(f, self.root) for f in files]
        self.download_files(relative, local_root,
                            byte_count=sum(info.get("size") or 0 for info in files.values()))


def local_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
