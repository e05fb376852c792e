"""Why a pod of an attempt failed, and whether another attempt can help.

The trainer's termination message (JSON with reason, exitCode, retryable) is the best
evidence: torchrun exits 1 for any worker error, so its own exit code says little. Then the
container's termination reason (OOMKilled), signals, the pod's eviction or disruption, and
the launcher's log tail for rendezvous and NCCL timeouts. Anything else is the user's code or
configuration, and retrying would fail the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .. import EXIT_PREEMPTED


@dataclass(frozen=True)
class Failure:
    reason: str  # CamelCase, used in conditions and Events
    message: str
    retryable: bool
    pod: str | None = None
    exit_code: int | None = None


# The trainer's exit codes (sysexits.h); the termination message normally says the same.
TRAINER_EXIT_CODES = {
    65: ("InvalidDataset", False),
    66: ("NotFound", False),
    69: ("PeerLost", True),
    74: ("StorageUnavailable", True),
    EXIT_PREEMPTED: ("Preempted", True),
    77: ("StorageAccessDenied", False),
    78: ("InvalidConfig", False),
}
SIGNAL_EXIT_CODES = {137: "Killed", 143: "Terminated"}
NETWORK_TIMEOUT = re.compile(
    r"RendezvousTimeoutError|RendezvousClosedError|RendezvousConnectionError|DistNetworkError|"
    r"NCCL (?:error|timeout)|Watchdog caught collective operation timeout|"
    r"ProcessGroupNCCL|ProcessGroupGloo|gloo.*(?:Connection closed by peer|Connection reset)|"
    r"c10d.*(?:timed out|Connection refused|Connection reset)",
    re.IGNORECASE)
DISRUPTION_REASONS = {"Evicted", "NodeLost", "Shutdown", "Terminated", "NodeShutdown",
                      "DeletionByTaintManager", "PreemptionByScheduler",
                      "TerminationByKubelet", "EvictionByEvictionAPI", "DeletionByPodGC"}


def _trainer_message(message: str | None) -> dict | None:
    try:
        parsed = json.loads(message or "")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "reason" in parsed else None


def classify_container(terminated: dict, pod: str | None = None) -> Failure:
    """`terminated` is a containerStatuses[].state.terminated of a failed container."""
    exit_code = terminated.get("exitCode")
    reason = terminated.get("reason") or ""
    message = terminated.get("message") or ""
    trainer = _trainer_message(message)
    if trainer:
        return Failure(trainer["reason"], str(trainer.get("message", ""))[:1000],
                       bool(trainer.get("retryable")), pod, exit_code)
    if reason == "OOMKilled":
        return Failure("OOMKilled", "a container ran out of memory", True, pod, exit_code)
    if exit_code in TRAINER_EXIT_CODES:
        name, retryable = TRAINER_EXIT_CODES[exit_code]
        return Failure(name, f"the trainer exited {exit_code}", retryable, pod, exit_code)
    if exit_code in SIGNAL_EXIT_CODES:
        return Failure(SIGNAL_EXIT_CODES[exit_code],
                       f"the container was killed by a signal (exit {exit_code})", True, pod,
                       exit_code)
    if NETWORK_TIMEOUT.search(message):
        return Failure("NetworkTimeout", "rendezvous or collective communication failed: "
                       + NETWORK_TIMEOUT.search(message).group(0), True, pod, exit_code)
    tail = message.strip().splitlines()[-1:] if message.strip() else []
    return Failure("TrainerError", f"the trainer exited {exit_code}"
                   + (f": {tail[0][:500]}" if tail else ""), False, pod, exit_code)


def classify_pod(pod: dict) -> Failure | None:
    """The failure of a pod, or None while it has not failed."""
    name = pod.get("metadata", {}).get("name")
    status = pod.get("status", {})
    for condition in status.get("conditions", []):
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return Failure(condition.get("reason") or "Disrupted",
                           condition.get("message") or "the pod was disrupted", True, name)
    if status.get("phase") != "Failed":
        return None
    if status.get("reason") in DISRUPTION_REASONS:
        return Failure(status["reason"], status.get("message") or "the pod was evicted", True,
                       name)
    for container in status.get("containerStatuses", []):
        terminated = container.get("state", {}).get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            return classify_container(terminated, name)
    return Failure("PodFailed", status.get("message") or "the pod failed", True, name)


def finished_record(pods: list[dict]) -> dict | None:
    """What a succeeded container left in its termination log (the data check's report and
    memory fit), if anything."""
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses", []) or []:
            terminated = container.get("state", {}).get("terminated") or {}
            parsed = _trainer_message(terminated.get("message"))
            if terminated.get("exitCode") == 0 and parsed:
                return parsed
    return None


def finished_report(pods: list[dict]) -> str | None:
    """The data check's one-line report, if any."""
    record = finished_record(pods) or {}
    return str(record.get("message", ""))[:1000] or None


def memory_fit(pods: list[dict]) -> tuple[bool, str] | None:
    """The data check's memory fit verdict (fits, message), when it was asked."""
    fit = (finished_record(pods) or {}).get("memoryFit")
    if not isinstance(fit, dict) or "fits" not in fit:
        return None
    return bool(fit["fits"]), str(fit.get("message", ""))[:1500]


def _finished_at(pod: dict) -> str:
    for container in pod.get("status", {}).get("containerStatuses", []) or []:
        finished = container.get("state", {}).get("terminated", {}).get("finishedAt")
        if finished:
            return finished
    return "9999"  # not terminated (evicted, disrupted): after every known time


def first_failure(pods: list[dict]) -> Failure | None:
    """The failure that explains an attempt: the earliest, because one rank's death takes
    the others down with collective errors after it. Among failures of the same second, a
    permanent one wins (every rank hitting the same bad data is still bad data)."""
    failed = [(pod, classify_pod(pod)) for pod in pods]
    failed = [(pod, failure) for pod, failure in failed if failure]
    failed.sort(key=lambda item: (_finished_at(item[0]), item[1].retryable,
                                  item[0]["metadata"]["name"]))
    return failed[0][1] if failed else None
