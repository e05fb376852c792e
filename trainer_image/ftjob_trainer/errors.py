"""Failures the trainer explains instead of printing a traceback.

Each carries an exit code and a CamelCase reason. The reason and message go to the
termination log (the pod's terminationMessagePath on the cluster), which is how the operator
tells a retryable failure from a permanent one: torchrun itself exits 1 for any worker error,
so the exit code alone does not survive the launcher.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# sysexits.h codes, so the numbers mean something outside ftjob too.
EXIT_CONFIG = 78  # EX_CONFIG: the job's configuration cannot work
EXIT_DATA = 65  # EX_DATAERR: the dataset does not fit the spec
EXIT_NOT_FOUND = 66  # EX_NOINPUT: model or dataset not found
EXIT_STORAGE_UNAVAILABLE = 74  # EX_IOERR: storage did not answer (retryable)
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving a checkpoint (retryable)
EXIT_ACCESS_DENIED = 77  # EX_NOPERM: storage refused the credentials
EXIT_PEER_LOST = 69  # EX_UNAVAILABLE: another rank is gone, this one cannot go on (retryable)


class TrainerError(Exception):
    exit_code = 1
    reason = "TrainerError"
    retryable = False


class ConfigError(TrainerError):
    exit_code = EXIT_CONFIG
    reason = "InvalidConfig"


class DataError(TrainerError):
    exit_code = EXIT_DATA
    reason = "InvalidDataset"


class NotFound(TrainerError):
    exit_code = EXIT_NOT_FOUND
    reason = "NotFound"


class StorageUnavailable(TrainerError):
    exit_code = EXIT_STORAGE_UNAVAILABLE
    reason = "StorageUnavailable"
    retryable = True


class StorageAccessDenied(TrainerError):
    exit_code = EXIT_ACCESS_DENIED
    reason = "StorageAccessDenied"


class Preempted(TrainerError):
    exit_code = EXIT_PREEMPTED
    reason = "Preempted"
    retryable = True


class PeerLost(TrainerError):
    """A collective failed under this rank because another rank stopped (it explains why in
    its own error) or the network between them broke."""

    exit_code = EXIT_PEER_LOST
    reason = "PeerLost"
    retryable = True


class HubUnavailable(TrainerError):
    """The Hugging Face Hub did not answer (or offline mode is on): worth another attempt."""

    exit_code = EXIT_STORAGE_UNAVAILABLE
    reason = "HubUnavailable"
    retryable = True


class HubAccessDenied(TrainerError):
    """No Hub token, or one without write access to the repository."""

    exit_code = EXIT_ACCESS_DENIED
    reason = "HubAccessDenied"


class ScriptFailed(TrainerError):
    """A user's own script (spec.script) exited non-zero: its exit code, and the last lines
    of its stderr in the message."""

    reason = "ScriptFailed"

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def write_termination_log(path: str | None, error: TrainerError) -> None:
    """The failure as JSON where the operator reads it (the pod's terminationMessagePath);
    the environment wins so that whatever runs the pod can remap the path."""
    path = os.environ.get("FTJOB_TERMINATION_LOG") or path
    if not path:
        return
    try:
        target = Path(path)
        if target.exists() and target.stat().st_size > 0:
            return  # the first failing rank on this node explains it
        target.write_text(json.dumps({"reason": error.reason, "exitCode": error.exit_code,
                                      "retryable": error.retryable,
                                      "message": str(error)[:3000]}))
    except OSError:
        pass
