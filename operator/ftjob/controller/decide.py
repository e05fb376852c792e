"""The operator's decisions, as a pure function: what the cluster looks like in, what the
status should say and which objects to create or delete out.

Status is the intent log. The reconcile writes the decided status first (guarded by the
resourceVersion it read) and only then creates or deletes objects, all of which are
idempotent. A crash between the two leaves a status that the next reconcile carries out:
phase Restarting always deletes the current attempt's Job, and a started attempt whose Job
is missing is created (or adopted, if it exists after all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import goodput
from ..api.spec import FineTuneJob
from .failures import Failure, finished_report, first_failure, memory_fit
from .manifests import (ATTEMPT_LABEL, KUEUE_GROUP, KUEUE_QUEUE_LABEL, KUEUE_RECHECK_SECONDS,
                        Names)

TERMINAL = ("Succeeded", "Failed")
# Status fields the trainer's status sink writes; the operator never decides them.
TRAINER_OWNED = ("progress", "metrics", "checkpoint", "output", "timing")
CONDITION_TYPES = ("Running", "Restarting", "Suspended", "Succeeded", "Failed")
DATA_CHECKED = "DataChecked"
MEMORY_FIT = "MemoryFit"


@dataclass
class Observed:
    """Everything the decision needs; `job` is None when the spec did not validate."""

    name: str
    generation: int
    status: dict
    now: datetime
    job: FineTuneJob | None = None
    spec_error: str | None = None
    attempt_jobs: list[dict] = field(default_factory=list)  # batch Jobs of this FineTuneJob
    # Pods of the current attempt, read only when its Job counts a failed pod (to tell
    # why it failed); running pods are known from the Job's status.
    pods: list[dict] = field(default_factory=list)
    restart_backoff_seconds: float = 10
    # Whether the cluster serves Kueue's API (asked only for a queued job): without it
    # nothing ever admits a queued attempt.
    queue_controller_present: bool = True
    # Kueue's Workloads of this job's attempt Jobs ({"owner": {"name", "uid"},
    # "conditions": [...]}): why a queued attempt waits, in Kueue's words.
    workloads: list[dict] = field(default_factory=list)
    # metadata.creationTimestamp: where the goodput ledger starts (now when unknown)
    created: datetime | None = None


@dataclass
class Plan:
    status: dict
    create_attempt: int | None = None
    create_data_check: bool = False
    delete_jobs: list[str] = field(default_factory=list)
    delete_self: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    requeue_after: float | None = None


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=None) if value else None


# What a final save is given when nothing was measured yet: the step in progress, the
# save and its upload.
SAVE_FLOOR_SECONDS = 30.0


def save_budget(status: dict) -> float:
    """Seconds a final save needs, from what the job measured: the step in progress (from
    the ETA) and twice its latest upload; at least SAVE_FLOOR_SECONDS."""
    progress = status.get("progress") or {}
    eta, step, total = (progress.get(key) for key in ("etaSeconds", "step", "maxSteps"))
    step_seconds = eta / (total - step) if eta and total and step is not None and \
        total > step else 0.0
    upload = (status.get("checkpoint") or {}).get("uploadSeconds") or 0.0
    return max(SAVE_FLOOR_SECONDS, step_seconds + 2 * upload)


def finishes_in_time(status: dict, elapsed: float, deadline: float) -> bool:
    """Whether the ETA says training ends before the deadline (unknown: no)."""
    eta = (status.get("progress") or {}).get("etaSeconds")
    return eta is not None and elapsed + eta < deadline


def restart_delay(restarts: int, base: float) -> float:
    """Exponential backoff before attempt N+1, capped at five minutes."""
    return min(base * 2 ** max(restarts - 1, 0), 300.0)


def _attempt_of(item: dict) -> int:
    return int(item["metadata"].get("labels", {}).get(ATTEMPT_LABEL, 0))


def _job_condition(job: dict, kind: str) -> dict | None:
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def operator_owned(status: dict | None) -> dict:
    return {key: value for key, value in (status or {}).items() if key not in TRAINER_OWNED}


def attempt_to_read(status: dict, attempt_jobs: list[dict]) -> int | None:
    """The attempt whose pods the decision needs: the current one once its Job (not being
    deleted) counts a failed pod, to tell why it failed; before the first attempt (0) also
    the finished data check, whose pod's termination message is its report."""
    attempt = status.get("attempt", 0)
    if status.get("phase") in TERMINAL:
        return None
    for job in attempt_jobs:
        if _attempt_of(job) == attempt and not job["metadata"].get("deletionTimestamp") and (
                job.get("status", {}).get("failed") or _job_condition(job, "Failed")
                or (attempt == 0 and _job_condition(job, "Complete"))):
            return attempt
    return None


def needs_data_check(job: FineTuneJob) -> bool:
    """A built-in task's data can be checked by the task's own code; a script's cannot."""
    return job.spec.script is None and job.spec.run_policy.preflight != "off"


def _unfinished(attempt_jobs: list[dict]) -> list[str]:
    """Jobs that are not Complete: stopped once the FineTuneJob has finished, so no rank
    keeps holding GPUs. A Complete one stays (its pods' logs are worth keeping)."""
    return [j["metadata"]["name"] for j in attempt_jobs if not _job_condition(j, "Complete")]


class _Builder:
    """Accumulates the new status and the plan's side effects."""

    def __init__(self, observed: Observed):
        self.observed = observed
        old = observed.status or {}
        self.status = operator_owned(old)
        self.status["conditions"] = [dict(c) for c in old.get("conditions", [])]
        self.status["observedGeneration"] = observed.generation
        self.status.setdefault("attempt", 0)
        self.status.setdefault("restarts", 0)
        self.plan = Plan(status=self.status)

    def condition(self, kind: str, status: str, reason: str, message: str = "") -> None:
        now = timestamp(self.observed.now)
        conditions = self.status["conditions"]
        for condition in conditions:
            if condition["type"] == kind:
                # Reason and message explain the last transition, as lastTransitionTime
                # dates it; a cleared Restarting condition keeps explaining the restart.
                if condition["status"] != status:
                    condition["lastTransitionTime"] = now
                    if not (kind == "Restarting" and status == "False"):
                        condition.update(reason=reason, message=message)
                condition.update(status=status, observedGeneration=self.observed.generation)
                return
        if status == "False" and kind in CONDITION_TYPES and kind != "Suspended":
            return  # a phase condition that never held is simply absent
        conditions.append({"type": kind, "status": status, "reason": reason,
                           "message": message, "lastTransitionTime": now,
                           "observedGeneration": self.observed.generation})

    def phase(self, phase: str, reason: str, message: str, event_type: str = "Normal") -> None:
        """Moves to `phase`; the condition of the same name (if any) becomes True and the
        other phase conditions False. An Event marks every transition."""
        if self.status.get("phase") != phase:
            self.plan.events.append((event_type, reason, message))
        self.status["phase"] = phase
        self.status["message"] = message
        for kind in CONDITION_TYPES:
            if kind == phase:
                self.condition(kind, "True", reason, message)
            elif kind != "Suspended" or phase != "Pending":
                self.condition(kind, "False", reason, message)

    def finish(self, phase: str, reason: str, message: str, event_type: str) -> Plan:
        self.status.setdefault("completionTime", timestamp(self.observed.now))
        self.phase(phase, reason, message, event_type)
        self.plan.delete_jobs = _unfinished(self.observed.attempt_jobs)
        return self.plan


def decide(observed: Observed) -> Plan:
    plan = _decide(observed)
    ledger = goodput.account(observed.status or {}, plan.status,
                             observed.created or observed.now, observed.now)
    if ledger is not None:
        plan.status["goodput"] = ledger
    # A Job already being deleted (foreground: until its pods are gone) is left alone.
    deleting = {j["metadata"]["name"] for j in observed.attempt_jobs
                if j["metadata"].get("deletionTimestamp")}
    plan.delete_jobs = [name for name in dict.fromkeys(plan.delete_jobs)
                        if name not in deleting]
    policy = observed.job.spec.run_policy if observed.job else None
    started = parse_time(plan.status.get("startTime"))
    if policy and policy.active_deadline_seconds and started and \
            plan.status.get("phase") not in TERMINAL:
        # Nothing else may happen before the deadline: look again when it passes, or
        # when a running job must start its final save.
        deadline_at = started + timedelta(seconds=policy.active_deadline_seconds)
        save_at = deadline_at - timedelta(seconds=save_budget(observed.status))
        wake = save_at if plan.status.get("phase") == "Running" and save_at > observed.now \
            else deadline_at
        left = (wake - observed.now).total_seconds()
        plan.requeue_after = min(plan.requeue_after or left, max(left, 0.0))
    return plan


def _decide(observed: Observed) -> Plan:
    b = _Builder(observed)
    status = b.status
    phase = status.get("phase")
    now = observed.now

    if observed.spec_error is not None:
        if phase in TERMINAL:
            return b.plan
        return b.finish("Failed", "InvalidSpec", observed.spec_error, "Warning")

    job = observed.job
    assert job is not None
    policy = job.spec.run_policy
    names = Names(observed.name)
    attempt = status["attempt"]

    if phase in TERMINAL:
        b.plan.delete_jobs = _unfinished(observed.attempt_jobs)
        completed = parse_time(status.get("completionTime"))
        if policy.ttl_seconds_after_finished is not None and completed:
            expires = completed + timedelta(seconds=policy.ttl_seconds_after_finished)
            if now >= expires:
                b.plan.delete_self = True
            else:
                b.plan.requeue_after = (expires - now).total_seconds()
        return b.plan

    current = next((j for j in observed.attempt_jobs if j["metadata"]["name"]
                    == names.attempt(attempt)), None) if attempt else None
    # A passed data check stays, like a completed attempt: its log has the data report.
    older = [j["metadata"]["name"] for j in observed.attempt_jobs
             if _attempt_of(j) != attempt and not (_attempt_of(j) == 0 and
                                                   _job_condition(j, "Complete"))]
    b.plan.delete_jobs = older
    pods = [p for p in observed.pods if _attempt_of(p) == attempt]

    if policy.suspend:
        if current is not None:
            b.plan.delete_jobs.append(current["metadata"]["name"])
        b.phase("Suspended", "Suspended", "suspended: the pods were stopped after saving a "
                "checkpoint; set runPolicy.suspend to false to resume")
        return b.plan

    started = parse_time(status.get("startTime"))
    deadline = policy.active_deadline_seconds
    elapsed = (now - started).total_seconds() if started else 0.0
    if deadline and started and elapsed >= deadline:
        return b.finish("Failed", "DeadlineExceeded", "ran longer than "
                        f"runPolicy.activeDeadlineSeconds ({deadline} s)", "Warning")
    budget = save_budget(observed.status)
    if deadline and started and phase == "Running" and elapsed >= deadline - budget and \
            not finishes_in_time(observed.status, elapsed, deadline):
        # Stopped now, the pods get SIGTERM and save before the deadline would kill them
        # (the trainer saves at the end of the step in progress, then uploads).
        return b.finish("Failed", "DeadlineExceeded", "would run past "
                        f"runPolicy.activeDeadlineSeconds ({deadline} s): stopped "
                        f"{deadline - elapsed:.0f} s before it so the trainer saves a "
                        "checkpoint, which a new run with the same checkpoints.uri resumes "
                        "from", "Warning")

    def start_next(reason: str, message: str) -> Plan:
        status["attempt"] = attempt + 1
        status.setdefault("startTime", timestamp(now))
        b.plan.create_attempt = attempt + 1
        b.phase("Initializing", reason, f"attempt {attempt + 1}: {message}")
        return b.plan

    if attempt == 0:
        if not needs_data_check(job):
            return start_next("Created", "creating the training pods")
        return _check_data(b, names, start_next)
    if phase == "Suspended":
        if observed.attempt_jobs:
            return b.plan  # the suspended attempt's pods are still stopping
        return start_next("Resumed", "resuming from the newest complete checkpoint")
    if phase == "Restarting":
        if current is not None:
            b.plan.delete_jobs.append(current["metadata"]["name"])
            return b.plan  # its pods are still going; the Job's deletion wakes us
        restarted = next((parse_time(c["lastTransitionTime"]) for c in status["conditions"]
                          if c["type"] == "Restarting" and c["status"] == "True"), now)
        ready_at = restarted + timedelta(seconds=restart_delay(
            status["restarts"], observed.restart_backoff_seconds))
        if now < ready_at:
            b.plan.requeue_after = (ready_at - now).total_seconds()
            return b.plan
        return start_next("Restarted", "resuming from the newest complete checkpoint")
    if current is None:
        b.plan.create_attempt = attempt  # decided earlier, not carried out yet
        return b.plan

    nodes = job.spec.distributed.nodes
    failure: Failure | None = first_failure(pods)
    if failure is None and _job_condition(current, "Failed"):
        condition = _job_condition(current, "Failed")
        failure = Failure(condition.get("reason") or "JobFailed",
                          condition.get("message") or "the attempt's Job failed", True)
    if failure is not None:
        where = f" (pod {failure.pod})" if failure.pod else ""
        if failure.retryable and status["restarts"] < policy.backoff_limit:
            status["restarts"] += 1
            b.plan.delete_jobs.append(current["metadata"]["name"])
            b.phase("Restarting", failure.reason,
                    f"attempt {attempt} failed{where}: {failure.message}; restart "
                    f"{status['restarts']} of {policy.backoff_limit}", "Warning")
            return b.plan
        if failure.retryable:
            return b.finish("Failed", "BackoffLimitExceeded",
                            f"attempt {attempt} failed{where}: {failure.reason}: "
                            f"{failure.message}; runPolicy.backoffLimit "
                            f"({policy.backoff_limit}) restarts used", "Warning")
        return b.finish("Failed", failure.reason, f"attempt {attempt} failed{where}: "
                        f"{failure.message}", "Warning")

    job_status = current.get("status", {})
    b.status["replicas"] = {
        key: job_status.get(key, 0) for key in ("active", "ready", "succeeded", "failed")}
    if _job_condition(current, "Complete") and job_status.get("succeeded", 0) >= nodes:
        return b.finish("Succeeded", "Completed", f"all {nodes} nodes of attempt {attempt} "
                        "finished", "Normal")
    if current.get("spec", {}).get("suspend"):
        _queued(b, current)
    elif b.status["replicas"]["ready"] + b.status["replicas"]["succeeded"] >= nodes:
        # Pods that already finished their part still count as started.
        b.phase("Running", "AllPodsReady", f"attempt {attempt}: {nodes} nodes training")
    else:
        b.phase("Initializing", "PodsStarting", f"attempt {attempt}: "
                f"{b.status['replicas']['ready']} of {nodes} nodes ready")
    return b.plan


def workload_of(job: dict, workloads: list[dict]) -> dict | None:
    """The Kueue Workload of an attempt's Job (by owner name, and uid where both say)."""
    metadata = job["metadata"]
    for workload in workloads:
        owner = workload["owner"]
        uids = (owner.get("uid"), metadata.get("uid"))
        if owner["name"] == metadata["name"] and (None in uids or uids[0] == uids[1]):
            return workload
    return None


def _true(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c["type"] == kind and c["status"] == "True"), None)


def _queued(b: _Builder, current: dict) -> None:
    """The attempt's Job is suspended for Kueue: created so, waiting for admission, or
    suspended again when Kueue evicted it (its pods then save and stop). The phase says
    why, in the words of the Job's Workload once Kueue has made one."""
    queue = current["metadata"].get("labels", {}).get(KUEUE_QUEUE_LABEL)
    if not b.observed.queue_controller_present:
        b.phase("Pending", "NoQueueController", f"waiting for the queue {queue}, but this "
                f"cluster {NO_KUEUE} ({KUEUE_GROUP}): nothing will admit the job; "
                "install Kueue or remove runPolicy.queueName (and the operator's default "
                "queue)", "Warning")
        # Nothing else wakes a job no one admits: look again for Kueue in a while.
        b.plan.requeue_after = KUEUE_RECHECK_SECONDS
        return
    workload = workload_of(current, b.observed.workloads)
    conditions = workload["conditions"] if workload else []
    waiting = f"waiting for the queue {queue} to admit the job"
    unreserved = next((c for c in conditions if c["type"] == "QuotaReserved" and
                       c["status"] == "False"), None)
    if unreserved and unreserved.get("message"):
        waiting += f": {unreserved['message']}"
    evicted = _true(conditions, "Evicted")
    if evicted:
        reason = "Preempted" if evicted.get("reason") == "Preempted" else "Evicted"
        message = f"{EVICTED} ({evicted.get('reason')}: {evicted.get('message')}); its pods " \
            f"save a checkpoint and stop, and it resumes from that checkpoint once admitted " \
            f"again; {waiting}"
        new_news = not _message_before(b).startswith(EVICTED)
        _pending(b, reason, message, "Warning", new_news)
    elif unreserved and unreserved.get("reason") == "Inadmissible":
        _pending(b, "Inadmissible", waiting, "Warning", _message_before(b) != waiting)
    else:
        # News after NoQueueController: Kueue turned up after all.
        _pending(b, "Queued", waiting, "Normal", NO_KUEUE in _message_before(b))


EVICTED = "evicted by Kueue"
NO_KUEUE = "serves no Kueue API"


def _message_before(b: _Builder) -> str:
    return (b.observed.status or {}).get("message") or ""


def _pending(b: _Builder, reason: str, message: str, event_type: str, new_news: bool) -> None:
    """Pending, with an Event on entering it, and on news while in it: the job's Job and
    its Workload are watched apart, so Kueue's eviction may arrive after the suspended Job
    already made the job Pending."""
    was_pending = (b.observed.status or {}).get("phase") == "Pending"
    b.phase("Pending", reason, message, event_type)
    if was_pending and new_news:
        b.plan.events.append((event_type, reason, message))


def _check_data(b: _Builder, names: Names, start_next) -> Plan:
    """Before the first attempt: the data check's pod decides whether GPUs are requested.
    A permanent failure (bad data, a missing dataset, storage refusing the credentials)
    ends the job under runPolicy.preflight enforce; a transient one (storage down, the pod
    evicted, the check timed out) never blocks: the attempt meets it and restarts."""
    observed = b.observed
    check = next((j for j in observed.attempt_jobs
                  if j["metadata"]["name"] == names.data_check), None)
    if check is None:
        b.status.setdefault("startTime", timestamp(observed.now))
        b.plan.create_data_check = True
        b.phase("Initializing", "CheckingData", "checking the data in a CPU-only pod "
                "before any GPU is requested")
        return b.plan
    pods = [p for p in observed.pods if _attempt_of(p) == 0]
    if _job_condition(check, "Complete"):
        report = finished_report(pods) or "the data loads and prepares as the task needs"
        b.condition(DATA_CHECKED, "True", "DataValid", report)
        b.plan.events.append(("Normal", DATA_CHECKED, report))
        fit = memory_fit(pods)
        if fit is not None:
            fits, message = fit
            b.condition(MEMORY_FIT, "True" if fits else "False",
                        "Fits" if fits else "DoesNotFitMemory", message)
            if not fits and observed.job.spec.run_policy.preflight == "enforce":
                return b.finish("Failed", "DoesNotFitMemory", "the job does not fit in GPU "
                                f"memory, so no GPU was requested: {message}", "Warning")
            if not fits:
                b.plan.events.append(("Warning", "DoesNotFitMemory", message))
        return start_next("Created", "creating the training pods")
    failure = first_failure(pods)
    failed_job = _job_condition(check, "Failed")
    if failure is None and failed_job is not None:
        failure = Failure(failed_job.get("reason") or "JobFailed",
                          failed_job.get("message") or "the data check's Job failed", True)
    if failure is None:
        return b.plan  # still checking
    if not failure.retryable and observed.job.spec.run_policy.preflight == "enforce":
        b.condition(DATA_CHECKED, "False", failure.reason, failure.message)
        return b.finish("Failed", failure.reason, "the data check failed before any GPU was "
                        f"requested: {failure.message}", "Warning")
    verdict = "False" if not failure.retryable else "Unknown"
    message = f"{failure.reason}: {failure.message}; training starts anyway"
    b.condition(DATA_CHECKED, verdict, failure.reason, message)
    b.plan.events.append(("Warning", DATA_CHECKED, message))
    return start_next("Created", "creating the training pods")
