"""One idempotent reconcile for a FineTuneJob: observe (the body kopf hands us plus the
watch-fed indices of our Jobs and pods), decide (pure), write the status, then act."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import datetime, timezone

from ..api.load import SpecError, parse_job
from . import kube, manifests
from .decide import Observed, Plan, decide, operator_owned

logger = logging.getLogger(__name__)

# kopf runs a job's timer and its change handlers concurrently; one decision at a time.
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


def forget(uid: str) -> None:
    """The FineTuneJob is gone: drop its lock."""
    _locks.pop(uid, None)


def parse(body: dict, defaults: manifests.Defaults):
    """(FineTuneJob, None) or (None, a message naming the fields)."""
    document = {key: body.get(key) for key in ("apiVersion", "kind", "spec")}
    metadata = body.get("metadata", {})
    document["metadata"] = {"name": metadata.get("name"), "namespace": metadata.get("namespace")}
    try:
        job = parse_job(document)
        manifests.checkpoint_uri(job, defaults)
        return job, None
    except SpecError as error:
        return None, "; ".join(f"{path}: {message}" for path, message in error.problems)
    except manifests.SpecProblem as error:
        return None, str(error)


def _decide(body: dict, attempt_jobs, pods, defaults, restart_backoff_seconds, now):
    metadata = body["metadata"]
    job, spec_error = parse(body, defaults)
    status = dict(body.get("status") or {})
    observed = Observed(
        name=metadata["name"], generation=metadata.get("generation", 1), status=status,
        now=(now or datetime.now(timezone.utc)).replace(tzinfo=None, microsecond=0),
        job=job, spec_error=spec_error, attempt_jobs=attempt_jobs, pods=pods,
        restart_backoff_seconds=restart_backoff_seconds)
    return decide(observed), status, job


def _announce(body: dict, plan: Plan, old_status: dict) -> None:
    metadata = body["metadata"]
    if plan.status.get("phase") != old_status.get("phase"):
        logger.info("FineTuneJob %s/%s is %s: %s", metadata["namespace"], metadata["name"],
                    plan.status.get("phase"), plan.status.get("message"))
    for event in plan.events:
        kube.post_event(body, *event)


CONFLICT_RETRIES = 3


def reconcile(body: dict, attempt_jobs: list[dict], pods: list[dict],
              defaults: manifests.Defaults, restart_backoff_seconds: float = 10,
              now: datetime | None = None) -> Plan | None:
    """Returns the plan carried out, or None when the object is gone or kept changing
    underneath us (the next reconcile decides again)."""
    if body["metadata"].get("deletionTimestamp"):
        # Going away: garbage collection removes what it owns. Writing to it now would
        # only race kopf's removal of its finalizer.
        return None
    lock = _locks[body["metadata"]["uid"]]
    # A reconcile of this job is running: it does the same work, and waiting for it would
    # only hold one of kopf's worker threads (with hundreds of jobs, all of them).
    if not lock.acquire(blocking=False):
        return None
    try:
        return _reconcile_locked(body, attempt_jobs, pods, defaults, restart_backoff_seconds,
                                 now)
    finally:
        lock.release()


def _reconcile_locked(body, attempt_jobs, pods, defaults, restart_backoff_seconds, now):
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    for _ in range(CONFLICT_RETRIES):
        plan, status, job = _decide(body, attempt_jobs, pods, defaults,
                                    restart_backoff_seconds, now)
        if plan.status == operator_owned(status):
            break
        if kube.patch_status(namespace, name, body["metadata"]["resourceVersion"],
                             plan.status):
            _announce(body, plan, status)
            break
        # The trainer or kopf changed the object since it was read: decide again on a
        # fresh copy now rather than a timer tick later.
        body = kube.get_finetunejob(namespace, name)
        if body is None or body["metadata"]["uid"] != uid:
            return None
    else:
        return None
    if plan.delete_self:
        logger.info("Deleting FineTuneJob %s/%s: ttlSecondsAfterFinished passed",
                    namespace, name)
        kube.delete_finetunejob(namespace, name)
        return plan
    for job_name in plan.delete_jobs:
        kube.delete_job(namespace, job_name)
    if plan.create_attempt and job is not None:
        # The Job last: its pods need the ServiceAccount to be admitted.
        kube.create_all(manifests.build_all(job, uid, defaults))
        resume = (status.get("checkpoint") or {}).get("uri")
        attempt = manifests.build_job(job, uid, plan.create_attempt, defaults, resume)
        if kube.create_or_adopt(attempt):
            logger.info("Created Job %s/%s", namespace, attempt["metadata"]["name"])
    return plan
