"""Prometheus metrics of the operator: jobs by phase, reconcile latency, restarts by reason,
API requests and errors. Served at /metrics on FTJOB_METRICS_ADDRESS:FTJOB_METRICS_PORT
(default 0.0.0.0:9090)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

PHASES = ("Pending", "Suspended", "Initializing", "Running", "Restarting", "Succeeded",
          "Failed")

RECONCILE_SECONDS = Histogram(
    "ftjob_reconcile_duration_seconds", "Time to observe, decide and act for one FineTuneJob",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RESTARTS = Counter("ftjob_restarts", "Attempts restarted, by the failure that caused them",
                   ["reason"])
API_REQUESTS = Counter("ftjob_api_requests", "Kubernetes API calls", ["verb"])
API_ERRORS = Counter("ftjob_api_errors", "Kubernetes API calls that failed (other than "
                     "not-found and already-exists)", ["verb"])


class _JobsByPhase:
    """Read at scrape time: the phase of every FineTuneJob the operator sees."""

    def __init__(self):
        self.phases: dict[str, str] = {}

    def collect(self):
        jobs = GaugeMetricFamily("ftjob_jobs", "FineTuneJobs by phase", labels=["phase"])
        counts = {phase: 0 for phase in PHASES}
        for phase in list(self.phases.values()):
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            jobs.add_metric([phase], count)
        yield jobs


JOBS = _JobsByPhase()
REGISTRY.register(JOBS)


def observe_phase(uid: str, phase: str | None, deleted: bool = False) -> None:
    if deleted:
        JOBS.phases.pop(uid, None)
    else:
        JOBS.phases[uid] = phase or "Pending"


def serve(address: str, port: int) -> int:
    """Starts the /metrics endpoint and returns the port it listens on."""
    server, _ = start_http_server(port, addr=address)
    return server.server_port
