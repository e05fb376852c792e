"""The operator's decisions without a cluster: observed state in, status and actions out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from ftjob.api.load import parse_job
from ftjob.api.status import FineTuneJobStatus
from ftjob.controller import decide as decisions
from ftjob.controller.decide import Observed, attempt_to_read, restart_delay, timestamp


def decide(observed: Observed):
    """The decision, whose status must be one the typed status model (which generates the
    CRD's status schema, and through which the SDK, the CLI and the metrics read it)
    accepts as it is, field for field."""
    plan = decisions.decide(observed)
    typed = FineTuneJobStatus.model_validate(plan.status, strict=True)
    assert typed.model_dump(by_alias=True, exclude_unset=True) == plan.status
    return plan

NOW = datetime(2026, 11, 22, 12, 0, 0)


def job(**run_policy):
    # The data check's own tests below turn it on; elsewhere it would only add a step.
    run_policy.setdefault("preflight", "off")
    return parse_job({
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"model": {"name": "m"}, "dataset": {"files": {"train": "t.csv"}},
                 "distributed": {"nodes": 2}, "runPolicy": run_policy}})


def script_job():
    return parse_job({
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"script": {"path": "s3://code/train.py"}, "distributed": {"nodes": 2}}})


def attempt_job(attempt, complete=False, failed=False, suspend=False, succeeded=0, ready=0,
                deleting=False, queue=None):
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed:
        conditions.append({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"})
    return {"metadata": {"name": f"j-attempt-{attempt}",
                         "labels": {"ftjob.dev/attempt": str(attempt),
                                    **({"kueue.x-k8s.io/queue-name": queue} if queue else {})},
                         "deletionTimestamp": "2026-11-22T12:00:00Z" if deleting else None},
            "spec": {"suspend": suspend},
            "status": {"conditions": conditions, "succeeded": succeeded, "ready": ready,
                       "active": 2 - succeeded}}


def pod(attempt, index, phase="Running", ready=True, exit_code=None):
    status = {"phase": phase, "conditions": [{"type": "Ready",
                                              "status": "True" if ready else "False"}]}
    if exit_code is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": exit_code}}}]
    return {"metadata": {"name": f"j-attempt-{attempt}-{index}",
                         "labels": {"ftjob.dev/attempt": str(attempt)}}, "status": status}


def observe(status=None, jobs=(), pods=(), spec=None, now=NOW, spec_error=None, **policy):
    return Observed(name="j", generation=3, status=status or {}, now=now,
                    job=None if spec_error else (spec or job(**policy)),
                    spec_error=spec_error, attempt_jobs=list(jobs), pods=list(pods),
                    restart_backoff_seconds=10)


def conditions(plan):
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def test_a_new_job_starts_attempt_one():
    plan = decide(observe())
    assert plan.create_attempt == 1
    assert plan.status["phase"] == "Initializing" and plan.status["attempt"] == 1
    assert plan.status["startTime"] == timestamp(NOW)
    assert plan.events == [("Normal", "Created", "attempt 1: creating the training pods")]
    assert plan.status["observedGeneration"] == 3


def test_a_started_attempt_whose_job_is_missing_is_created_again():
    """The operator died between writing status and creating the Job."""
    plan = decide(observe({"phase": "Initializing", "attempt": 2, "restarts": 1}))
    assert plan.create_attempt == 2 and plan.status["attempt"] == 2


@pytest.mark.parametrize("ready, succeeded, phase, message", [
    (0, 0, "Initializing", "attempt 1: 0 of 2 nodes ready"),
    (1, 0, "Initializing", "attempt 1: 1 of 2 nodes ready"),
    (2, 0, "Running", "attempt 1: 2 nodes training"),
    (1, 1, "Running", "attempt 1: 2 nodes training"),  # a node that finished its part counts
])
def test_phase_follows_the_jobs_pod_counts(ready, succeeded, phase, message):
    plan = decide(observe({"phase": "Initializing", "attempt": 1},
                          [attempt_job(1, ready=ready, succeeded=succeeded)]))
    assert (plan.status["phase"], plan.create_attempt, plan.delete_jobs) == (phase, None, [])
    assert plan.status["message"] == message
    assert plan.status["replicas"] == {"active": 2 - succeeded, "ready": ready,
                                       "succeeded": succeeded, "failed": 0}


def test_a_condition_explains_its_last_transition_not_every_new_message():
    first = decide(observe({"phase": "Initializing", "attempt": 1}, [attempt_job(1, ready=0)]))
    second = decide(observe(first.status, [attempt_job(1, ready=1)]))
    assert second.status["message"] != first.status["message"]
    assert second.status["conditions"] == first.status["conditions"]


def test_succeeded_only_when_the_job_completed_every_node():
    pods = [pod(1, 0, "Succeeded", False), pod(1, 1, "Succeeded", False)]
    plan = decide(observe({"phase": "Running", "attempt": 1},
                          [attempt_job(1, complete=True, succeeded=2)], pods))
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["completionTime"] == timestamp(NOW)
    assert conditions(plan)["Succeeded"] == ("True", "Completed")
    assert plan.delete_jobs == []  # the completed Job stays until the TTL


def test_retryable_failure_restarts_and_counts():
    pods = [pod(1, 0, "Failed", False, exit_code=75), pod(1, 1)]
    plan = decide(observe({"phase": "Running", "attempt": 1, "restarts": 0},
                          [attempt_job(1)], pods, backoffLimit=2))
    assert plan.status["phase"] == "Restarting" and plan.status["restarts"] == 1
    assert plan.delete_jobs == ["j-attempt-1"] and plan.create_attempt is None
    assert conditions(plan)["Restarting"] == ("True", "Preempted")
    assert plan.events[0][:2] == ("Warning", "Preempted")


def test_restart_waits_for_the_old_pods_then_the_backoff():
    restarting = {"phase": "Restarting", "attempt": 1, "restarts": 2, "conditions": [
        {"type": "Restarting", "status": "True", "reason": "Preempted",
         "lastTransitionTime": timestamp(NOW)}]}
    still_there = decide(observe(restarting, [attempt_job(1, deleting=True)]))
    assert still_there.create_attempt is None and still_there.requeue_after is None
    assert still_there.delete_jobs == []  # already going: not deleted again
    too_soon = decide(observe(restarting, now=NOW + timedelta(seconds=5)))
    assert too_soon.create_attempt is None
    assert too_soon.requeue_after == pytest.approx(restart_delay(2, 10) - 5)
    plan = decide(observe(restarting, now=NOW + timedelta(seconds=restart_delay(2, 10))))
    assert plan.create_attempt == 2 and plan.status["phase"] == "Initializing"
    assert conditions(plan)["Restarting"] == ("False", "Preempted")  # still says why


def test_restarting_with_the_old_job_still_there_deletes_it():
    plan = decide(observe({"phase": "Restarting", "attempt": 1, "restarts": 1},
                          [attempt_job(1)], [pod(1, 0)]))
    assert plan.delete_jobs == ["j-attempt-1"] and plan.create_attempt is None


def test_permanent_failure_fails_at_once():
    plan = decide(observe({"phase": "Running", "attempt": 1},
                          [attempt_job(1)], [pod(1, 0, "Failed", False, 65), pod(1, 1)]))
    assert plan.status["phase"] == "Failed" and plan.status["restarts"] == 0
    assert conditions(plan)["Failed"] == ("True", "InvalidDataset")
    assert plan.delete_jobs == ["j-attempt-1"]


def test_backoff_limit_ends_in_failed():
    plan = decide(observe({"phase": "Running", "attempt": 3, "restarts": 2},
                          [attempt_job(3)], [pod(3, 0, "Failed", False, 137)], backoffLimit=2))
    assert plan.status["phase"] == "Failed"
    assert conditions(plan)["Failed"] == ("True", "BackoffLimitExceeded")
    assert "Killed" in plan.status["message"]


def test_job_level_failure_without_failed_pods_is_retryable():
    plan = decide(observe({"phase": "Running", "attempt": 1}, [attempt_job(1, failed=True)]))
    assert plan.status["phase"] == "Restarting"


def test_deadline():
    started = {"phase": "Running", "attempt": 1, "startTime": timestamp(NOW)}
    plan = decide(observe(started, [attempt_job(1)], [pod(1, 0)],
                          now=NOW + timedelta(seconds=60), activeDeadlineSeconds=60))
    assert plan.status["phase"] == "Failed"
    assert conditions(plan)["Failed"][1] == "DeadlineExceeded"
    assert plan.delete_jobs == ["j-attempt-1"]


def test_a_running_job_is_looked_at_again_when_its_final_save_must_start():
    started = {"phase": "Running", "attempt": 1, "startTime": timestamp(NOW)}
    plan = decide(observe(started, [attempt_job(1, ready=2)],
                          now=NOW + timedelta(seconds=20), activeDeadlineSeconds=90))
    # 30 s before the deadline: the floor of a final save with nothing measured yet.
    assert plan.status["phase"] == "Running" and plan.requeue_after == 40
    assert decide(observe(started, [attempt_job(1, ready=2)])).requeue_after is None
    starting = {**started, "phase": "Initializing"}  # nothing to save: at the deadline
    assert decide(observe(starting, [attempt_job(1, ready=1)], now=NOW + timedelta(
        seconds=20), activeDeadlineSeconds=90)).requeue_after == 70


def running(eta=None, step=40, max_steps=100, upload=None) -> dict:
    status = {"phase": "Running", "attempt": 1, "startTime": timestamp(NOW),
              "progress": {"step": step, "maxSteps": max_steps,
                           **({"etaSeconds": eta} if eta is not None else {})}}
    if upload is not None:
        status["checkpoint"] = {"uri": "s3://b/j/checkpoint-20", "step": 20,
                                "savedAt": "2026-11-22T12:00:10Z", "uploadSeconds": upload}
    return status


@pytest.mark.parametrize("status, budget", [
    (running(), 30),                                  # the floor
    (running(eta=600, upload=20), 10 + 2 * 20),       # a 10 s step, then twice the upload
    (running(eta=60, upload=1), 30),
])
def test_the_final_save_budget_is_measured(status, budget):
    assert decisions.save_budget(status) == budget


def test_a_job_that_would_run_past_its_deadline_stops_early_to_save():
    status = running(eta=600, upload=20)             # a budget of 50 s
    early = decide(observe(status, [attempt_job(1, ready=2)],
                           now=NOW + timedelta(seconds=49), activeDeadlineSeconds=100))
    assert early.status["phase"] == "Running" and early.requeue_after == 1
    stop = decide(observe(status, [attempt_job(1, ready=2)],
                          now=NOW + timedelta(seconds=50), activeDeadlineSeconds=100))
    assert stop.status["phase"] == "Failed" and stop.delete_jobs == ["j-attempt-1"]
    assert conditions(stop)["Failed"][1] == "DeadlineExceeded"
    assert stop.status["message"].startswith(
        "would run past runPolicy.activeDeadlineSeconds (100 s): stopped 50 s before it")
    # An ETA that ends before the deadline keeps it running.
    finishing = decide(observe(running(eta=30, upload=20), [attempt_job(1, ready=2)],
                               now=NOW + timedelta(seconds=60), activeDeadlineSeconds=100))
    assert finishing.status["phase"] == "Running"


def test_suspend_then_resume():
    plan = decide(observe({"phase": "Running", "attempt": 1}, [attempt_job(1, ready=2)],
                          suspend=True))
    assert plan.status["phase"] == "Suspended" and plan.delete_jobs == ["j-attempt-1"]
    suspended = plan.status
    waiting = decide(observe(suspended, [attempt_job(1, deleting=True)]))
    assert waiting.create_attempt is None and waiting.delete_jobs == []
    resumed = decide(observe(suspended))
    assert resumed.create_attempt == 2 and resumed.status["restarts"] == 0
    assert conditions(resumed)["Suspended"][0] == "False"


def test_queued_job_is_pending():
    plan = decide(observe({"phase": "Initializing", "attempt": 1},
                          [attempt_job(1, suspend=True, queue="q")], queueName="q"))
    assert plan.status["phase"] == "Pending"
    assert plan.status["message"] == "waiting for the queue q to admit the job"


def test_a_queued_job_on_a_cluster_without_kueue_says_nothing_will_admit_it():
    observed = observe({"phase": "Initializing", "attempt": 1},
                       [attempt_job(1, suspend=True, queue="team-a")], queueName="team-a")
    observed.queue_controller_present = False
    plan = decide(observed)
    assert plan.status["phase"] == "Pending"
    assert plan.status["message"].startswith(
        "waiting for the queue team-a, but this cluster serves no Kueue API (kueue.x-k8s.io)")
    assert plan.events == [("Warning", "NoQueueController", plan.status["message"])]
    assert plan.requeue_after == 60  # Kueue installed later is noticed


def workload(job_name, *conditions, uid=None):
    """A Kueue Workload as the operator's index keeps it: its owner Job and conditions."""
    return {"owner": {"name": job_name, "uid": uid},
            "conditions": [{"type": kind, "status": status, "reason": reason,
                            "message": message} for kind, status, reason, message in conditions]}


NO_QUOTA = ("QuotaReserved", "False", "Pending", "couldn't assign flavors to pod set main: "
            "insufficient unused quota for nvidia.com/gpu in flavor f, 8 more needed")
PREEMPTED = ("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: u, "
             "JobUID: v) due to prioritization in the ClusterQueue")


@pytest.mark.parametrize("workloads, phase_reason, message, event", [
    # No Workload yet (Kueue has not seen the Job), or one of another Job.
    ([], "Queued", "waiting for the queue q to admit the job", None),
    ([workload("j-attempt-2", NO_QUOTA)], "Queued",
     "waiting for the queue q to admit the job", None),
    # A Workload of an earlier Job of the same name (another uid) says nothing of this one.
    ([workload("j-attempt-1", NO_QUOTA, uid="old")], "Queued",
     "waiting for the queue q to admit the job", None),
    ([workload("j-attempt-1", NO_QUOTA, uid="job-uid")], "Queued",
     f"waiting for the queue q to admit the job: {NO_QUOTA[3]}", None),
    ([workload("j-attempt-1", ("QuotaReserved", "False", "Inadmissible",
                               "LocalQueue q doesn't exist"))], "Inadmissible",
     "waiting for the queue q to admit the job: LocalQueue q doesn't exist", "Warning"),
    ([workload("j-attempt-1", PREEMPTED, NO_QUOTA)], "Preempted",
     f"evicted by Kueue (Preempted: {PREEMPTED[3]}); its pods save a checkpoint and stop, "
     "and it resumes from that checkpoint once admitted again; waiting for the queue q to "
     f"admit the job: {NO_QUOTA[3]}", "Warning"),
])
def test_a_queued_job_says_why_it_waits_in_kueues_words(workloads, phase_reason, message,
                                                        event):
    queued = attempt_job(1, suspend=True, queue="q")
    queued["metadata"]["uid"] = "job-uid"
    running = {"type": "Running", "status": "True", "reason": "AllPodsReady", "message": "",
               "lastTransitionTime": timestamp(NOW), "observedGeneration": 3}
    observed = observe({"phase": "Running", "attempt": 1, "conditions": [running]}, [queued],
                       queueName="q")
    observed.workloads = workloads
    plan = decide(observed)
    assert (plan.status["phase"], plan.status["message"]) == ("Pending", message)
    assert conditions(plan)["Running"] == ("False", phase_reason)
    assert plan.events == [(event or "Normal", phase_reason, message)]
    assert plan.status["restarts"] == 0 and plan.create_attempt is None
    assert plan.delete_jobs == []


def test_an_eviction_seen_after_the_suspended_job_is_still_announced():
    """Kueue's Workload and the suspended Job are watched apart: the job may be Pending
    (Queued) by the time the eviction is seen; it says so then, once."""
    queued = attempt_job(1, suspend=True, queue="q")
    observed = observe({"phase": "Pending", "attempt": 1, "message":
                        "waiting for the queue q to admit the job"}, [queued], queueName="q")
    observed.workloads = [workload("j-attempt-1", PREEMPTED)]
    plan = decide(observed)
    assert plan.status["message"].startswith("evicted by Kueue (Preempted: ")
    assert plan.events == [("Warning", "Preempted", plan.status["message"])]
    observed.status = dict(plan.status)
    again = decide(observed)
    assert again.events == [] and again.status["message"] == plan.status["message"]


def test_ttl_deletes_the_finetunejob_once_expired():
    done = {"phase": "Succeeded", "attempt": 1, "completionTime": timestamp(NOW)}
    early = decide(observe(done, ttlSecondsAfterFinished=30))
    assert not early.delete_self and early.requeue_after == 30
    assert decide(observe(done, now=NOW + timedelta(seconds=30),
                          ttlSecondsAfterFinished=30)).delete_self
    assert not decide(observe(done, now=NOW + timedelta(days=9))).delete_self


def test_invalid_spec_fails_once_with_the_message():
    plan = decide(observe(spec_error="spec.training.learningRat: unknown"))
    assert plan.status["phase"] == "Failed" and plan.create_attempt is None
    assert conditions(plan)["Failed"] == ("True", "InvalidSpec")
    again = decide(observe(plan.status, spec_error="spec.training.learningRat: unknown"))
    assert again.events == [] and again.status == plan.status


def test_an_unchanged_world_decides_an_unchanged_status():
    first = decide(observe({"phase": "Initializing", "attempt": 1}, [attempt_job(1)],
                           [pod(1, 0), pod(1, 1)]))
    second = decide(observe(first.status, [attempt_job(1)], [pod(1, 0), pod(1, 1)],
                            now=NOW + timedelta(seconds=30)))
    assert second.status == first.status and second.events == []


@pytest.mark.parametrize("status, jobs, expected", [
    ({"phase": "Running", "attempt": 1}, [attempt_job(1)], None),  # no failure counted
    ({"phase": "Running", "attempt": 1}, [attempt_job(1, failed=True)], 1),
    ({"phase": "Running", "attempt": 2}, [attempt_job(1, failed=True)], None),  # older one
    ({"phase": "Restarting", "attempt": 1}, [attempt_job(1, failed=True, deleting=True)], None),
    ({"phase": "Failed", "attempt": 1}, [attempt_job(1, failed=True)], None),  # decided
])
def test_pods_are_read_only_for_the_current_attempt_with_a_failure(status, jobs, expected):
    assert attempt_to_read(status, jobs) == expected


def data_check(complete=False, failed=None):
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    if failed:
        conditions.append({"type": "Failed", "status": "True", "reason": failed,
                           "message": "Job was active longer than specified deadline"})
    return {"metadata": {"name": "j-data-check", "labels": {"ftjob.dev/attempt": "0"}},
            "spec": {}, "status": {"conditions": conditions}}


def check_pod(exit_code, message: dict | None = None):
    terminated = {"exitCode": exit_code, **({"message": json.dumps(message)} if message
                                            else {})}
    return {"metadata": {"name": "j-data-check-x", "labels": {"ftjob.dev/attempt": "0"}},
            "status": {"phase": "Succeeded" if exit_code == 0 else "Failed",
                       "containerStatuses": [{"state": {"terminated": terminated}}]}}


CHECKING = {"phase": "Initializing", "attempt": 0, "startTime": timestamp(NOW)}
MISSING_COLUMN = {"reason": "InvalidDataset", "exitCode": 65, "retryable": False,
                  "message": "the train split has no column 'sentence1'"}


def test_a_new_job_checks_its_data_before_any_attempt():
    plan = decide(observe(preflight="enforce"))
    assert plan.create_data_check and plan.create_attempt is None
    assert (plan.status["phase"], plan.status["attempt"]) == ("Initializing", 0)
    assert plan.status["startTime"] == timestamp(NOW)  # the deadline counts the check
    assert [event[1] for event in plan.events] == ["CheckingData"]
    running = decide(observe(plan.status, [data_check()], preflight="enforce"))
    assert not running.create_data_check and running.create_attempt is None
    assert running.status == plan.status and running.events == []


def test_a_passed_data_check_starts_attempt_one_with_its_report():
    report = {"reason": "DataValid", "exitCode": 0, "message": "train 640 rows -> 640 samples"}
    plan = decide(observe(CHECKING, [data_check(complete=True)], [check_pod(0, report)],
                          preflight="enforce"))
    assert plan.create_attempt == 1 and plan.status["attempt"] == 1
    assert conditions(plan)["DataChecked"] == ("True", "DataValid")
    checked = next(c for c in plan.status["conditions"] if c["type"] == "DataChecked")
    assert checked["message"] == "train 640 rows -> 640 samples"
    after = decide(observe(plan.status, [data_check(complete=True), attempt_job(1)],
                           preflight="enforce"))
    assert after.delete_jobs == []  # its log keeps the full report


TOO_BIG = "needs 92.0 GiB per GPU of 80.0 GiB (...). distributed.strategy: deepspeed with " \
    "zeroStage 3 needs 41.0 GiB (fits)"


@pytest.mark.parametrize("preflight, fits, phase, attempt, verdict", [
    ("enforce", False, "Failed", None, ("False", "DoesNotFitMemory")),
    ("warn", False, "Initializing", 1, ("False", "DoesNotFitMemory")),
    ("enforce", True, "Initializing", 1, ("True", "Fits")),
])
def test_the_memory_fit_refuses_a_job_before_any_gpu_or_warns(preflight, fits, phase,
                                                              attempt, verdict):
    report = {"reason": "DataValid", "exitCode": 0, "message": "train 640 rows",
              "memoryFit": {"fits": fits, "message": TOO_BIG if not fits else "needs 2 GiB"}}
    plan = decide(observe(CHECKING, [data_check(complete=True)], [check_pod(0, report)],
                          preflight=preflight))
    assert (plan.status["phase"], plan.create_attempt) == (phase, attempt)
    assert conditions(plan)["MemoryFit"] == verdict
    assert conditions(plan)["DataChecked"] == ("True", "DataValid")
    fit = next(c for c in plan.status["conditions"] if c["type"] == "MemoryFit")
    assert fit["message"] == (TOO_BIG if not fits else "needs 2 GiB")
    if phase == "Failed":  # the advice is on the job, and no GPU pod was ever asked for
        assert "zeroStage 3 needs 41.0 GiB (fits)" in plan.status["message"]


@pytest.mark.parametrize("preflight, phase, attempt, verdict", [
    ("enforce", "Failed", None, "False"),
    ("warn", "Initializing", 1, "False"),
])
def test_bad_data_fails_the_job_before_any_gpu_unless_only_warned(preflight, phase, attempt,
                                                                   verdict):
    plan = decide(observe(CHECKING, [data_check(failed="BackoffLimitExceeded")],
                          [check_pod(65, MISSING_COLUMN)], preflight=preflight))
    assert plan.status["phase"] == phase and plan.create_attempt == attempt
    assert conditions(plan)["DataChecked"] == (verdict, "InvalidDataset")
    if phase == "Failed":
        assert conditions(plan)["Failed"] == ("True", "InvalidDataset")
        assert "no column 'sentence1'" in plan.status["message"]
        assert plan.delete_jobs == ["j-data-check"]


def test_a_data_check_that_could_not_run_never_blocks_training():
    plan = decide(observe(CHECKING, [data_check(failed="DeadlineExceeded")],
                          preflight="enforce"))
    assert plan.create_attempt == 1
    assert conditions(plan)["DataChecked"] == ("Unknown", "DeadlineExceeded")


def test_a_script_job_has_no_data_check():
    plan = decide(observe(spec=script_job()))
    assert plan.create_attempt == 1 and not plan.create_data_check


@pytest.mark.parametrize("jobs, expected", [
    ([data_check()], None),  # still checking
    ([data_check(complete=True)], 0),  # its pod holds the report
    ([data_check(failed="BackoffLimitExceeded")], 0),
])
def test_the_data_checks_pod_is_read_once_it_finished(jobs, expected):
    assert attempt_to_read(CHECKING, jobs) == expected
