"""Prometheus metrics of the operator: jobs by phase, reconcile latency, restarts by reason,
API requests and errors, and each job's progress. Served at /metrics on
FTJOB_METRICS_ADDRESS:FTJOB_METRICS_PORT (default 0.0.0.0:9090).

The per-job series (`ftjob_job_*`, labelled namespace and name) are read at scrape time from
the status every watch event brings, so they cost no API call and vanish with the job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import goodput
from ..api.status import PHASES, FineTuneJobStatus

RECONCILE_SECONDS = Histogram(
    "ftjob_reconcile_duration_seconds", "Time to observe, decide and act for one FineTuneJob",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RESTARTS = Counter("ftjob_restarts", "Attempts restarted, by the failure that caused them",
                   ["reason"])
API_REQUESTS = Counter("ftjob_api_requests", "Kubernetes API calls", ["verb"])
API_ERRORS = Counter("ftjob_api_errors", "Kubernetes API calls that failed (other than "
                     "not-found and already-exists)", ["verb"])

JOB_LABELS = ["namespace", "name"]


@dataclass(frozen=True)
class JobSample:
    """What the per-job series show of one FineTuneJob: its status, reduced to numbers."""

    namespace: str
    name: str
    phase: str
    restarts: int
    progress_ratio: float | None = None
    loss: float | None = None
    samples_per_second: float | None = None
    eta_seconds: float | None = None
    updated_at: float | None = None
    # What goodput.live needs (phase, attempt, ledger, timing): the figures move with the
    # clock, so they are worked out at scrape time.
    goodput_status: dict | None = None

    @classmethod
    def of(cls, namespace: str, name: str, status: FineTuneJobStatus) -> JobSample:
        progress = status.progress
        ledger = status.model_dump(by_alias=True, exclude_none=True,
                                   include={"phase", "attempt", "goodput", "timing"}) \
            if status.goodput else None
        if progress is None:
            return cls(namespace, name, status.phase or "Pending", status.restarts,
                       goodput_status=ledger)
        ratio = progress.percent / 100 if progress.percent is not None else (
            progress.step / progress.max_steps if progress.max_steps else None)
        return cls(namespace, name, status.phase or "Pending", status.restarts,
                   progress_ratio=ratio, loss=progress.loss,
                   samples_per_second=progress.samples_per_second,
                   eta_seconds=progress.eta_seconds,
                   updated_at=progress.updated_at_timestamp(), goodput_status=ledger)

    def goodput(self, now: datetime) -> dict | None:
        return goodput.live(self.goodput_status, now) if self.goodput_status else None


# name, help, the JobSample field it reads
JOB_GAUGES = (
    ("ftjob_job_progress_ratio", "Share of the job's training steps done (0 to 1)",
     "progress_ratio"),
    ("ftjob_job_loss", "The job's latest training loss", "loss"),
    ("ftjob_job_samples_per_second", "The job's training throughput, samples per second",
     "samples_per_second"),
    ("ftjob_job_eta_seconds", "Seconds of training the job has left, estimated",
     "eta_seconds"),
    ("ftjob_job_progress_timestamp_seconds",
     "Unix time of the job's latest progress report", "updated_at"),
)


class _Jobs:
    """Read at scrape time: every FineTuneJob the operator sees, by its uid."""

    def __init__(self):
        self.samples: dict[str, JobSample] = {}

    def describe(self):
        # Names without samples, so the registry knows them before any job exists.
        yield GaugeMetricFamily("ftjob_jobs", "FineTuneJobs by phase", labels=["phase"])
        yield GaugeMetricFamily("ftjob_job_phase", "1 for the phase the job is in",
                                labels=[*JOB_LABELS, "phase"])
        for name, help_text, _ in JOB_GAUGES:
            yield GaugeMetricFamily(name, help_text, labels=JOB_LABELS)
        yield CounterMetricFamily("ftjob_job_restarts", "Attempts of the job restarted",
                                  labels=JOB_LABELS)
        yield GaugeMetricFamily("ftjob_job_goodput_ratio", "Share of the job's wall time "
                                "spent on training it kept (0 to 1)", labels=JOB_LABELS)
        yield GaugeMetricFamily("ftjob_job_goodput_seconds", "The job's wall time since "
                                "creation by cause (productive, startup, checkpoint, "
                                "evaluation, recompute, restart, queued, other)",
                                labels=[*JOB_LABELS, "cause"])

    def collect(self):
        jobs, phase, *gauges, restarts, ratio, seconds = self.describe()
        samples = list(self.samples.values())
        counts = {name: 0 for name in PHASES}
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for sample in samples:
            counts[sample.phase] = counts.get(sample.phase, 0) + 1
            labels = [sample.namespace, sample.name]
            phase.add_metric([*labels, sample.phase], 1)
            restarts.add_metric(labels, sample.restarts)
            for gauge, (_, _, field) in zip(gauges, JOB_GAUGES):
                value = getattr(sample, field)
                if value is not None:
                    gauge.add_metric(labels, value)
            ledger = sample.goodput(now)
            if ledger:
                if ledger.get("ratio") is not None:
                    ratio.add_metric(labels, ledger["ratio"])
                for cause in goodput.CAUSES:
                    seconds.add_metric([*labels, cause], ledger.get(f"{cause}Seconds", 0.0))
        for name, count in counts.items():
            jobs.add_metric([name], count)
        yield from (jobs, phase, *gauges, restarts, ratio, seconds)


JOBS = _Jobs()
REGISTRY.register(JOBS)


def observe_job(uid: str, sample: JobSample | None) -> None:
    """Records a job's latest status; None when it was deleted."""
    if sample is None:
        JOBS.samples.pop(uid, None)
    else:
        JOBS.samples[uid] = sample


def serve(address: str, port: int) -> int:
    """Starts the /metrics endpoint and returns the port it listens on."""
    server, _ = start_http_server(port, addr=address)
    return server.server_port
