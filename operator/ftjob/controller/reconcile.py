"""One idempotent reconcile for a FineTuneJob: observe (its body and Jobs from kopf's
watch-fed indices, its pods only when a Job counts a failure), decide (pure), write the
status, then act."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from kubernetes.client.exceptions import ApiException

from .. import goodput
from ..api.load import SpecError, parse_job
from . import kube, manifests
from .decide import Observed, Plan, attempt_to_read, decide, operator_owned, save_budget
from .recent import Recent

logger = logging.getLogger(__name__)

RECENT = Recent()


def forget(uid: str) -> None:
    """The FineTuneJob is gone."""
    RECENT.forget(uid)


def seen(uid: str, resource_version: str) -> None:
    """The watch brought this version of the FineTuneJob."""
    RECENT.seen(uid, resource_version)


def parse(body: dict, defaults: manifests.Defaults):
    """(FineTuneJob, None) or (None, a message naming the fields)."""
    document = {key: body.get(key) for key in ("apiVersion", "kind", "spec")}
    metadata = body.get("metadata", {})
    document["metadata"] = {"name": metadata.get("name"), "namespace": metadata.get("namespace")}
    try:
        job = parse_job(document)
        manifests.check_for_cluster(job, defaults)
        return job, None
    except SpecError as error:
        return None, "; ".join(f"{path}: {message}" for path, message in error.problems)
    except manifests.SpecProblem as error:
        return None, str(error)


def _pods_to_read(namespace: str, name: str, status: dict, attempt_jobs: list[dict]):
    """The current attempt's pods, read only once its Job counts a failure (or the data
    check finished). Pods are not watched: at hundreds of jobs their events would cost the
    operator and the API server more than everything else it does; the Job's status
    counts them for us."""
    attempt = attempt_to_read(status, attempt_jobs)
    if attempt is None:
        return []
    return kube.list_pods(namespace, f"{manifests.JOB_NAME_LABEL}={name},"
                          f"{manifests.ATTEMPT_LABEL}={attempt}")


def _decide(body: dict, attempt_jobs, defaults, restart_backoff_seconds, now,
            refused: str | None = None, workloads=()):
    """`refused`: the API server's message when it refused an object built from the spec,
    which makes the spec as unrunnable as one that does not validate."""
    metadata = body["metadata"]
    job, spec_error = parse(body, defaults)
    spec_error = spec_error or refused
    status = dict(body.get("status") or {})
    pods = _pods_to_read(metadata["namespace"], metadata["name"], status, attempt_jobs)
    queued = any((j["metadata"].get("labels") or {}).get(manifests.KUEUE_QUEUE_LABEL)
                 for j in attempt_jobs)
    observed = Observed(
        name=metadata["name"], generation=metadata.get("generation", 1), status=status,
        now=(now or datetime.now(timezone.utc)).replace(tzinfo=None, microsecond=0),
        job=job, spec_error=spec_error, attempt_jobs=attempt_jobs, pods=pods,
        restart_backoff_seconds=restart_backoff_seconds,
        # A Workload for the attempt is Kueue's own answer; discovery is asked otherwise.
        queue_controller_present=not queued or bool(workloads) or kube.serves_api_group(
            manifests.KUEUE_GROUP),
        workloads=list(workloads),
        created=goodput.parse_moment(metadata.get("creationTimestamp")))
    return decide(observed), status, job


def _announce(body: dict, plan: Plan, old_status: dict) -> None:
    metadata = body["metadata"]
    if plan.status.get("phase") != old_status.get("phase"):
        logger.info("FineTuneJob %s/%s is %s: %s", metadata["namespace"], metadata["name"],
                    plan.status.get("phase"), plan.status.get("message"))
    for event in plan.events:
        kube.post_event(body, *event)


CONFLICT_RETRIES = 3


def reconcile(body: dict, attempt_jobs: list[dict], defaults: manifests.Defaults,
              restart_backoff_seconds: float = 10, now: datetime | None = None,
              workloads: list[dict] = ()) -> Plan | None:
    """Returns the plan carried out, or None when the object is gone or kept changing
    underneath us (the next reconcile decides again). The caller runs at most one
    reconcile per job at a time (the work queue)."""
    if body["metadata"].get("deletionTimestamp"):
        return None  # going away: garbage collection removes what it owns
    body = RECENT.freshest(body)
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    decided = _write_status(body, attempt_jobs, defaults, restart_backoff_seconds, now,
                            workloads=workloads)
    if decided is None:
        return None
    plan, body, status, job = decided
    if plan.delete_self:
        logger.info("Deleting FineTuneJob %s/%s: ttlSecondsAfterFinished passed",
                    namespace, name)
        kube.delete_finetunejob(namespace, name)
        return plan
    for job_name in plan.delete_jobs:
        kube.delete_job(namespace, job_name)
    if (plan.create_attempt or plan.create_data_check) and job is not None:
        try:
            _create_attempt(body, plan, status, job, attempt_jobs, defaults)
        except ApiException as error:
            message = kube.refusal(error)
            if message is None:
                raise
            # Refused for good: the job fails, once, with the API server's words.
            logger.warning("The API server refused an object of FineTuneJob %s/%s: %s",
                           namespace, name, message)
            failed = _write_status(body, attempt_jobs, defaults, restart_backoff_seconds,
                                   now, refused=f"the API server refused it: {message}",
                                   workloads=workloads)
            return failed[0] if failed else None
    return plan


def _gpu_memory(job) -> tuple[int, str] | None:
    """The GPU memory the job can count on, from the nodes' labels; None when unknown (a
    CPU job, no labelled node, or no permission to list nodes)."""
    if job.spec.distributed.gpus_per_node == 0:
        return None
    try:
        nodes = kube.list_nodes(manifests.GPU_MEMORY_LABEL)
    except ApiException as error:
        logger.info("Cannot list nodes for the GPU memory (%s): no memory fit", error.status)
        return None
    return manifests.gpu_memory_of(job, nodes)


def _create_attempt(body: dict, plan: Plan, status: dict, job, attempt_jobs: list[dict],
                    defaults: manifests.Defaults) -> None:
    """The attempt's Job, or before the first attempt the data check's."""
    metadata = body["metadata"]
    namespace, uid = metadata["namespace"], metadata["uid"]
    resume = (status.get("checkpoint") or {}).get("uri")
    attempt = manifests.build_job(job, uid, plan.create_attempt, defaults, resume,
                                  save_budget(status)) \
        if plan.create_attempt else manifests.build_data_check(job, uid, defaults,
                                                               _gpu_memory(job))
    job_name = attempt["metadata"]["name"]
    waiting = RECENT.awaiting_watch(uid, job_name, attempt_jobs)
    if waiting is not None:
        plan.requeue_after = waiting
        return
    # The Job last: its pods need the ServiceAccount to be admitted.
    kube.create_all(manifests.build_all(job, uid, defaults))
    if kube.create_or_adopt(attempt):
        logger.info("Created Job %s/%s", namespace, job_name)
    RECENT.created_job(uid, job_name)


def _write_status(body: dict, attempt_jobs, defaults, restart_backoff_seconds, now,
                  refused: str | None = None, workloads=()):
    """Decides and writes the status (the intent log) before anything is acted on. Returns
    (plan, the body as written, the status decided from, the parsed job), or None when
    the object is gone or kept changing underneath us."""
    metadata = body["metadata"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    for _ in range(CONFLICT_RETRIES):
        plan, status, job = _decide(body, attempt_jobs, defaults, restart_backoff_seconds,
                                    now, refused, workloads)
        current = operator_owned(status)
        if plan.status == current:
            break
        wait = 0.0 if plan.events else RECENT.counts_wait(uid, current, plan.status)
        if wait:
            plan.requeue_after = min(plan.requeue_after or wait, wait)
            break
        written = kube.patch_status(namespace, name, body["metadata"]["resourceVersion"],
                                    plan.status)
        if written is not None:
            RECENT.wrote_status(uid, body["metadata"]["resourceVersion"], written)
            _announce(body, plan, status)
            body = written
            break
        # The user or the trainer changed the object since it was read: decide again on a
        # fresh copy now rather than on the next watch event.
        logger.debug("Status of %s/%s changed since %s; reading it again", namespace, name,
                     body["metadata"]["resourceVersion"])
        body = kube.get_finetunejob(namespace, name)
        if body is None or body["metadata"]["uid"] != uid:
            return None
    else:
        return None
    return plan, body, status, job
