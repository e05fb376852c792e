"""kopf handlers: thin entry points into the one reconcile.

    kopf run -m ftjob.controller.handlers --all-namespaces \
        --liveness=http://0.0.0.0:8080/healthz --log-format=json

Metrics on FTJOB_METRICS_PORT (default 9090, 0 for any free port), /metrics.
"""

from __future__ import annotations

import json
import logging
import os
import time

import kopf

from .. import GROUP, PLURAL, VERSION
from . import metrics
from .manifests import JOB_NAME_LABEL, Defaults
from .reconcile import forget, reconcile

RECONCILE_INTERVAL = float(os.environ.get("FTJOB_RECONCILE_INTERVAL", "2"))
RESTART_BACKOFF = float(os.environ.get("FTJOB_RESTART_BACKOFF_SECONDS", "10"))


def defaults_from_env() -> Defaults:
    """The Helm chart's defaults ConfigMap arrives as environment variables."""
    env = os.environ.get
    return Defaults(
        image=env("FTJOB_TRAINER_IMAGE") or Defaults.image,
        checkpoint_uri=env("FTJOB_CHECKPOINT_URI") or None,
        credentials_secret=env("FTJOB_CREDENTIALS_SECRET") or None,
        endpoint_url=env("FTJOB_S3_ENDPOINT_URL") or None,
        queue_name=env("FTJOB_QUEUE_NAME") or None,
        resources=json.loads(env("FTJOB_DEFAULT_RESOURCES") or "{}"),
    )


DEFAULTS = defaults_from_env()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.peering.name = "ftjob"
    settings.peering.mandatory = False
    # Our own Events say what happened; kopf's per-handler ones would only repeat it.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = int(os.environ.get("FTJOB_WORKERS", "32"))
    port = metrics.serve(int(os.environ.get("FTJOB_METRICS_PORT", "9090")))
    logging.getLogger(__name__).info("Serving metrics on port %d", port)


def _slim(body: kopf.Body) -> dict:
    """What the decisions read of a Job or pod, kept in memory by the indices."""
    return {"metadata": {"name": body.metadata.name, "labels": dict(body.metadata.labels),
                         "deletionTimestamp": body.metadata.get("deletionTimestamp")},
            "spec": {"suspend": body.spec.get("suspend")},
            "status": json.loads(json.dumps(dict(body.status)))}


# Index and event functions are async: they never block, and kopf would otherwise hop to a
# worker thread for every pod event.
@kopf.index("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "ftjob"})
async def attempt_jobs(namespace, labels, body, **_):
    return {(namespace, labels.get(JOB_NAME_LABEL)): _slim(body)}


@kopf.index("", "v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT})
async def attempt_pods(namespace, labels, body, **_):
    return {(namespace, labels.get(JOB_NAME_LABEL)): _slim(body)}


def _reconcile(body, attempt_jobs: kopf.Index, attempt_pods: kopf.Index) -> None:
    key = (body.metadata.namespace, body.metadata.name)
    started = time.perf_counter()
    snapshot = json.loads(json.dumps(dict(body)))  # kopf's Body is live; decide on a copy
    plan = reconcile(snapshot, list(attempt_jobs.get(key, [])),
                     list(attempt_pods.get(key, [])), DEFAULTS, RESTART_BACKOFF)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    if plan is not None:
        if plan.status.get("restarts", 0) > (snapshot.get("status") or {}).get("restarts", 0):
            reason = next((c["reason"] for c in plan.status["conditions"]
                           if c["type"] == "Restarting"), "Unknown")
            metrics.RESTARTS.labels(reason).inc()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def phase_seen(type, body, **_):
    metrics.observe_phase(body.metadata.uid, body.status.get("phase"),
                          deleted=type == "DELETED")
    if type == "DELETED":
        forget(body.metadata.uid)


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(body, attempt_jobs, attempt_pods, **_):
    _reconcile(body, attempt_jobs, attempt_pods)


@kopf.on.resume(GROUP, VERSION, PLURAL)
def resumed(body, attempt_jobs, attempt_pods, **_):
    _reconcile(body, attempt_jobs, attempt_pods)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def updated(body, attempt_jobs, attempt_pods, **_):
    _reconcile(body, attempt_jobs, attempt_pods)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RECONCILE_INTERVAL, sharp=False)
def tick(body, attempt_jobs, attempt_pods, **_):
    _reconcile(body, attempt_jobs, attempt_pods)
