"""Progress, metrics and the newest complete checkpoint, patched onto the FineTuneJob's
status by global rank 0 with the pod's ServiceAccount token.

The job's Role allows `get`/`patch` on its own `finetunejobs/status` and nothing else. Events
only merge into a pending patch; a background thread sends it at most once per interval, so a
slow or unreachable API server costs training nothing. A checkpoint goes out at once: it is
what the next attempt resumes from. Plain HTTPS from the standard library keeps the trainer
image free of a Kubernetes client.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

from .checkpoints import utc_now

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
PROGRESS_FIELDS = ("step", "maxSteps", "epoch", "percent", "loss", "learningRate",
                   "samplesPerSecond", "etaSeconds")
MAX_METRICS = 64


def status_update(record: dict) -> tuple[dict, bool]:
    """The status fields one event sets, and whether it should go out at once."""
    update, urgent = _update_of(record)
    if record.get("timing") and update:
        # A new run's "started" clears the last run's savedTrainingSeconds.
        reset = {"savedTrainingSeconds": 0.0} if record["event"] == "started" else {}
        update["timing"] = {**reset, **record["timing"], "attempt": record.get("attempt", 0)}
    return update, urgent


def _update_of(record: dict) -> tuple[dict, bool]:
    kind = record["event"]
    if kind in ("started", "progress"):
        progress = {key: record[key] for key in PROGRESS_FIELDS if record.get(key) is not None}
        return {"progress": {**progress, "updatedAt": record["time"]}}, kind == "started"
    if kind == "eval":
        return {"metrics": _numbers(record.get("metrics", {}))}, False
    if kind == "checkpoint":
        checkpoint = {"uri": record["uri"], "step": record["step"],
                      "savedAt": record.get("savedAt") or record["time"]}
        if isinstance(record.get("uploadSeconds"), (int, float)):
            checkpoint["uploadSeconds"] = record["uploadSeconds"]
        return {"checkpoint": checkpoint}, True
    if kind == "finished":
        update = {"metrics": _numbers(record.get("metrics", {})),
                  "progress": {"percent": 100.0, "etaSeconds": 0, "updatedAt": record["time"]}}
        if record.get("output"):
            update["output"] = {"uri": record["output"]}
        return update, True
    return {}, False


def _numbers(metrics: dict) -> dict:
    found = {key: float(value) for key, value in metrics.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return dict(sorted(found.items())[:MAX_METRICS])


def _merge(pending: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(pending.get(key), dict):
            pending[key].update(value)
        else:
            pending[key] = dict(value) if isinstance(value, dict) else value


class KubernetesStatusSink:
    def __init__(self, api_url: str, namespace: str, name: str, token_file: str,
                 ca_file: str | None, interval: float = 5.0, timeout: float = 5.0):
        self.url = (f"{api_url.rstrip('/')}/apis/ftjob.dev/v1alpha1/namespaces/{namespace}"
                    f"/finetunejobs/{name}/status")
        self.token_file = token_file
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.interval = interval
        self.timeout = timeout
        self.patches_sent = 0
        self._pending: dict = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="ftjob-status", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls, job) -> "KubernetesStatusSink":
        """In a pod: the API server and token the kubelet provides. FTJOB_KUBE_API,
        FTJOB_KUBE_TOKEN_FILE and FTJOB_KUBE_CA_FILE remap them (local test runs)."""
        env = os.environ.get
        api = env("FTJOB_KUBE_API") or \
            f"https://{env('KUBERNETES_SERVICE_HOST')}:{env('KUBERNETES_SERVICE_PORT', '443')}"
        namespace = job.namespace or open(f"{SERVICE_ACCOUNT_DIR}/namespace").read().strip()
        return cls(api, namespace, job.name,
                   env("FTJOB_KUBE_TOKEN_FILE") or f"{SERVICE_ACCOUNT_DIR}/token",
                   env("FTJOB_KUBE_CA_FILE") or f"{SERVICE_ACCOUNT_DIR}/ca.crt",
                   interval=float(env("FTJOB_STATUS_INTERVAL", "5")))

    def write(self, record: dict) -> None:
        update, urgent = status_update(record)
        if not update:
            return
        with self._lock:
            _merge(self._pending, update)
        if urgent:
            self._wake.set()

    def close(self, wait: float = 10.0) -> None:
        """Sends what is pending, waiting at most `wait` seconds."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=wait)

    def _run(self) -> None:
        last_sent = 0.0
        while True:
            self._wake.wait(timeout=self.interval)
            urgent = self._wake.is_set()
            self._wake.clear()
            if not urgent and time.monotonic() - last_sent < self.interval:
                continue
            with self._lock:
                patch, self._pending = self._pending, {}
            if patch:
                if self._send(patch):
                    last_sent = time.monotonic()
                else:
                    with self._lock:  # keep it for the next try, newer values winning
                        _merge(patch, self._pending)
                        self._pending = patch
            if self._closing:
                return

    def _send(self, status: dict) -> bool:
        try:
            with open(self.token_file) as token:  # projected tokens rotate: read each time
                bearer = token.read().strip()
            request = urllib.request.Request(
                self.url, data=json.dumps({"status": status}).encode(), method="PATCH",
                headers={"Content-Type": "application/merge-patch+json",
                         "Authorization": f"Bearer {bearer}"})
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context):
                pass
            self.patches_sent += 1
            self._last_error = None
            return True
        except (OSError, urllib.error.URLError) as error:
            message = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            if message != self._last_error:  # say it once, not every interval
                print(f"ftjob-trainer: could not update the job status ({message}); "
                      f"training continues [{utc_now()}]", file=sys.stderr)
                self._last_error = message
            return False
