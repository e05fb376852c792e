"""kopf handlers: thin entry points into the one reconcile.

    kopf run -m ftjob.controller.handlers --all-namespaces \
        --liveness=http://0.0.0.0:8080/healthz --log-format=json

Settings: FTJOB_* environment variables, read once at start (controller/settings.py).
"""

from __future__ import annotations

import logging
import sys
import time

import kopf
import pydantic

from .. import GROUP, PLURAL, VERSION
from ..api.status import PHASES, FineTuneJobStatus
from . import metrics
from .decide import TERMINAL
from .manifests import JOB_NAME_LABEL, KUEUE_GROUP, KUEUE_VERSION, Defaults, Names
from .reconcile import forget, reconcile, seen
from .settings import OperatorSettings, SettingsError
from .workqueue import WorkQueue


def load_settings() -> OperatorSettings:
    """The settings, or a one-line error and exit status 78 (EX_CONFIG) when one is bad."""
    try:
        return OperatorSettings.from_environment()
    except SettingsError as error:
        sys.stderr.write(f"ftjob operator: cannot start: {error}\n")
        raise SystemExit(78) from None


SETTINGS = load_settings()
DEFAULTS = Defaults(
    image=SETTINGS.trainer_image,
    checkpoint_uri=SETTINGS.checkpoint_uri,
    credentials_secret=SETTINGS.credentials_secret,
    endpoint_url=SETTINGS.s3_endpoint_url,
    queue_name=SETTINGS.queue_name,
    resources=SETTINGS.default_resources.to_wire(),
    data_check_resources=SETTINGS.data_check_resources.to_wire(),
    data_check_timeout_seconds=SETTINGS.data_check_timeout_seconds,
)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf deep-copies every watched object to diff it for change handlers; there are
    none here (the reconcile compares what it needs), so that copy is skipped."""

    def build(self, *, body, extra_fields=None):
        return kopf.BodyEssence()

    def fetch(self, *, body):
        return None

    def store(self, *, body, patch, essence):
        pass


class QuietWithoutKueue(logging.Filter):
    """kopf warns on every CRD change in the cluster that it cannot watch Kueue's Workloads
    where Kueue is not installed. Queueing is optional, so that warning goes when it names
    nothing else (a queued job's status says what is missing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Unresolved resources") and
                    message.count("Selector(") == 1 and f"group='{KUEUE_GROUP}'" in message)


logging.getLogger("kopf._core.reactor.observation").addFilter(QuietWithoutKueue())


# Filled at startup: the work queue and kopf's watch-fed indices it reconciles from.
_queue: WorkQueue | None = None
_indices: dict[str, kopf.Index] = {}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, finetunejobs, attempt_jobs,
                    queued_workloads, **_) -> None:
    # Only event handlers and indices: kopf then adds no finalizer and writes no progress
    # or diff-base annotations, so the FineTuneJob is written by its user, by our status
    # patches and by the trainer, nobody else. The prefix still names anything kopf keeps.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.peering.name = "ftjob"
    settings.peering.mandatory = False
    settings.posting.level = logging.WARNING
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # kopf logs "Handler '…' succeeded." at INFO for every watch event: a line per Job
        # status change, which at hundreds of jobs costs more CPU than the reconciles. Our
        # own per-job lines (phase changes, creates) say what matters; --verbose keeps both.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    global _queue
    _indices.update(finetunejobs=finetunejobs, attempt_jobs=attempt_jobs,
                    queued_workloads=queued_workloads)
    _queue = WorkQueue(reconcile_observed, SETTINGS.workers, observe=observe)
    _queue.start()
    port = metrics.serve(SETTINGS.metrics_address, SETTINGS.metrics_port)
    logging.getLogger(__name__).info("Serving metrics on %s port %d", SETTINGS.metrics_address,
                                     port)


@kopf.on.cleanup()
async def stop(**_) -> None:
    if _queue is not None:
        await _queue.stop()


# kopf hands each watch event's object to the handlers as a read-only view over the parsed
# JSON and never changes it afterwards, so the indices keep its parts as they are, without
# a copy (and without managedFields, which nothing here reads).

def _plain(body: kopf.Body) -> dict:
    metadata = {key: value for key, value in body.metadata.items() if key != "managedFields"}
    return {**body, "metadata": metadata}


def _slim(body: kopf.Body) -> dict:
    """What the decisions read of a Job, kept in memory by the index."""
    return {"metadata": {"name": body.metadata.name, "uid": body.metadata.uid,
                         "labels": dict(body.metadata.labels),
                         "deletionTimestamp": body.metadata.get("deletionTimestamp")},
            "spec": {"suspend": body.spec.get("suspend")},
            "status": dict(body.status)}


# Index and event functions are async: they never block, and kopf would otherwise hop to a
# worker thread for every event.
@kopf.index(GROUP, VERSION, PLURAL)
async def finetunejobs(namespace, name, body, **_):
    return {(namespace, name): _plain(body)}


@kopf.index("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "ftjob"})
async def attempt_jobs(namespace, labels, body, **_):
    return {(namespace, labels.get(JOB_NAME_LABEL)): _slim(body)}


def _attempt_owner(body, **_) -> dict | None:
    """The attempt Job that owns a Kueue Workload, when it is one of ours by name."""
    for owner in body.metadata.get("ownerReferences") or []:
        if owner.get("kind") == "Job" and Names.finetunejob_of(owner.get("name", "")):
            return owner
    return None


def _workload_key(namespace: str, body) -> tuple[str, str]:
    return namespace, Names.finetunejob_of(_attempt_owner(body)["name"])


# Kueue's Workloads of queued attempts: why one waits, or was evicted, in Kueue's words.
# Watched at v1beta2 (Kueue 0.15 and later); where Kueue is not installed kopf watches
# nothing here, and starts to when Kueue's CRDs appear.
@kopf.index(KUEUE_GROUP, KUEUE_VERSION, "workloads", when=_attempt_owner)
async def queued_workloads(namespace, body, **_):
    owner = _attempt_owner(body)
    return {_workload_key(namespace, body): {
        "owner": {"name": owner["name"], "uid": owner.get("uid")},
        "conditions": [dict(c) for c in body.status.get("conditions") or []]}}


@kopf.on.event(KUEUE_GROUP, KUEUE_VERSION, "workloads", when=_attempt_owner)
async def workload_changed(namespace, body, **_):
    _queue.add(_workload_key(namespace, body), SETTINGS.batch_seconds)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def finetunejob_changed(type, namespace, name, body, **_):
    metrics.observe_job(body.metadata.uid, None if type == "DELETED" else
                        metrics.JobSample.of(namespace, name, read_status(body.status)))
    if type == "DELETED":
        _queue.forget((namespace, name))
        forget(body.metadata.uid)
    else:
        seen(body.metadata.uid, body.metadata.get("resourceVersion", ""))
        _queue.add((namespace, name), urgent=True)


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "ftjob"})
async def attempt_job_changed(namespace, labels, **_):
    _queue.add((namespace, labels.get(JOB_NAME_LABEL)), SETTINGS.batch_seconds)


def read_status(status) -> FineTuneJobStatus:
    """The typed status; a status someone else wrote badly counts as the phase alone."""
    try:
        return FineTuneJobStatus.model_validate(dict(status))
    except pydantic.ValidationError:
        phase = status.get("phase")
        return FineTuneJobStatus(phase=phase if phase in PHASES else None)


def observe(key: tuple[str, str]) -> tuple[dict | None, list[dict], list[dict]]:
    """The job, its Jobs and their Kueue Workloads as the indices have them, read on the
    event loop that updates them (a worker thread reading them could see a store change
    size under it)."""
    bodies = list(_indices["finetunejobs"].get(key, []))
    return ((bodies[-1] if bodies else None), list(_indices["attempt_jobs"].get(key, [])),
            list(_indices["queued_workloads"].get(key, [])))


def reconcile_observed(observed: tuple[dict | None, list[dict], list[dict]]) -> float | None:
    """One reconcile; returns when to look at the job again."""
    body, attempt_jobs, workloads = observed
    if body is None:
        return None  # deleted; garbage collection removes what it owned
    started = time.perf_counter()
    plan = reconcile(body, attempt_jobs, DEFAULTS, SETTINGS.restart_backoff_seconds,
                     workloads=workloads)
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    if plan is None:
        return 1.0  # changed underneath us too often: decide again shortly
    if plan.status.get("restarts", 0) > (body.get("status") or {}).get("restarts", 0):
        reason = next((c["reason"] for c in plan.status["conditions"]
                       if c["type"] == "Restarting"), "Unknown")
        metrics.RESTARTS.labels(reason).inc()
    if plan.requeue_after is not None:
        return plan.requeue_after
    return None if plan.status.get("phase") in TERMINAL else SETTINGS.resync_seconds
