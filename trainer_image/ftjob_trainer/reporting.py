"""Progress events and the sinks they go to.

Events are flat dicts with camelCase keys, the same names as `status.progress` on the
FineTuneJob, so a sink can forward them without translation. Only global rank 0 reports.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from .checkpoints import utc_now


class Reporter:
    def __init__(self, sinks=(), **common):
        self.sinks = list(sinks)
        self.common = common  # fields every event carries (the attempt)
        self._lock = threading.Lock()  # the uploader thread reports too

    def emit(self, event: str, **fields) -> None:
        record = {"event": event, "time": utc_now(), **self.common, **fields}
        with self._lock:
            for sink in self.sinks:
                try:
                    sink.write(record)
                except Exception as error:  # noqa: BLE001 - a sink never stops training
                    print(f"Progress sink {type(sink).__name__} failed: {error}",
                          file=sys.stderr)

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close:
                close()


def build_reporter(reporting, job, stores_history: bool = True,
                   folders: dict | None = None) -> Reporter:
    """Global rank 0's reporter: the sinks the config's reporting section asks for. Of two
    processes writing one event log (a script and its supervisor), only the one with
    `stores_history` keeps it in storage, with the local `folders` (name -> path: the
    TensorBoard files) beside it."""
    sinks = []
    if reporting.terminal:
        sinks.append(TerminalSink())
    if reporting.events_file and reporting.events_uri and stores_history:
        from .history import StoredHistorySink
        from .storage import Location

        sinks.append(StoredHistorySink(reporting.events_file, Location(
            reporting.events_uri, reporting.events_endpoint_url), folders=folders))
    elif reporting.events_file:
        sinks.append(JsonLinesSink(reporting.events_file))
    if reporting.kubernetes_status:
        from .kubernetes_status import KubernetesStatusSink

        sinks.append(KubernetesStatusSink.from_environment(job))
    return Reporter(sinks, attempt=job.attempt)


class JsonLinesSink:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", buffering=1)

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else \
        f"{rest // 60}:{rest % 60:02d}"


class TerminalSink:
    """A progress bar on stderr, with eval results and checkpoints printed above it."""

    def __init__(self, stream=None):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self.bar = None

    def note(self, line: str) -> None:
        """A line above the bar."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def write(self, record: dict) -> None:
        kind = record["event"]
        if kind == "started":
            resumed = record.get("resumedFrom")
            self.note(f"Training {record['job']} (attempt {record['attempt']}), "
                        f"{record['maxSteps']} steps on {record['worldSize']} processes"
                        + (f", resuming from step {resumed['step']}" if resumed else ""))
            self.start(record["maxSteps"], record.get("step", 0))
        elif kind == "progress" and self.bar is not None:
            self.bar.n = record["step"]
            postfix = {"loss": record.get("loss"), "lr": record.get("learningRate"),
                       "samples/s": record.get("samplesPerSecond")}
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items() if v is not None},
                                 refresh=False)
            self.bar.refresh()
        elif kind == "eval":
            shown = ", ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items()
                              if isinstance(v, float))
            self.note(f"Eval at step {record['step']}: {shown}")
        elif kind == "checkpoint":
            self.note(f"Saved checkpoint-{record['step']} to {record['uri']} "
                        f"(upload {record['uploadSeconds']:.1f} s in the background)")
        elif kind == "preempted":
            self.note(f"Stopping at step {record['step']} after SIGTERM; "
                        "the checkpoint is saved and the next run resumes from it")
        elif kind == "finished" and record.get("alreadyFinished"):
            self.note(f"Already finished at step {record['step']}: nothing left to train; "
                        f"the model is in {record.get('output')}")
        elif kind == "finished":
            self.close()
            self.note(f"Finished in {format_duration(record.get('trainSeconds'))}; "
                        f"model exported to {record.get('output')}")

    def start(self, total: int, initial: int = 0) -> None:
        self.bar = self._tqdm(total=total, initial=initial, unit="step", file=self.stream,
                              dynamic_ncols=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ProgressClock:
    """Turns step ends into throughput and ETA figures for one run."""

    def __init__(self, samples_per_step: int, first_step: int):
        self.samples_per_step = samples_per_step
        self.first_step = first_step
        self.started = time.perf_counter()
        self.last_time = self.started
        self.last_step = first_step

    def tick(self, step: int, max_steps: int) -> dict:
        now = time.perf_counter()
        done = step - self.first_step
        rate = None
        if step > self.last_step and now > self.last_time:
            rate = (step - self.last_step) * self.samples_per_step / (now - self.last_time)
        eta = (now - self.started) / done * (max_steps - step) if done > 0 else None
        self.last_time, self.last_step = now, step
        return {"samplesPerSecond": round(rate, 3) if rate else None,
                "etaSeconds": int(eta) if eta is not None else None}
