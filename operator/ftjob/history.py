"""A job's metric history (the trainer's events.jsonl: every logged step, evaluation,
checkpoint and attempt) read into the series a curve is drawn from, and drawn.

Where a restart trained some steps again, the later attempt's value of a step wins: that is
the training the model kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

Series = tuple[list[int], list[float]]
# The Trainer's timing figures among the eval metrics.
TIMINGS = ("_runtime", "_per_second")


@dataclass(frozen=True)
class History:
    events: list[dict]

    @classmethod
    def parse(cls, text: str) -> History:
        """JSON lines; a torn last line (a copy taken mid-write) is left out."""
        events = []
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return cls([e for e in events if isinstance(e, dict) and "event" in e])

    @classmethod
    def read(cls, run_folder: str | Path) -> History:
        """A local run's history (`ftjob run`'s run folder)."""
        path = Path(run_folder) / "events.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{run_folder} has no events.jsonl: not an ftjob run folder")
        return cls.parse(path.read_text())

    def _by_step(self, records) -> Series:
        values: dict[int, float] = {}
        for step, value in records:
            if isinstance(step, int) and isinstance(value, (int, float)):
                values.pop(step, None)
                values[step] = float(value)
        ordered = sorted(values.items())
        return [s for s, _ in ordered], [v for _, v in ordered]

    def training(self, field: str) -> Series:
        """A progress field (loss, learningRate, samplesPerSecond) by step."""
        return self._by_step((e.get("step"), e.get(field)) for e in self.events
                             if e["event"] == "progress")

    def evaluations(self) -> dict[str, Series]:
        """Each numeric eval metric by step (how well, not how fast: no runtime or
        per-second figures)."""
        names = sorted({name for e in self.events if e["event"] == "eval"
                        for name, value in (e.get("metrics") or {}).items()
                        if isinstance(value, (int, float)) and name != "epoch"
                        and not name.endswith(TIMINGS)})
        return {name: self._by_step((e.get("step"), (e.get("metrics") or {}).get(name))
                                    for e in self.events if e["event"] == "eval")
                for name in names}

    def checkpoints(self) -> list[int]:
        return sorted({e["step"] for e in self.events
                       if e["event"] == "checkpoint" and isinstance(e.get("step"), int)})

    def restarts(self) -> list[tuple[int, int]]:
        """(attempt, the step it started from) for each attempt after the first."""
        return [(e["attempt"], e.get("step") or 0) for e in self.events
                if e["event"] == "started" and (e.get("attempt") or 1) > 1]


def plot(history: History, title: str):
    """Training loss, learning rate and eval metrics against step, one panel each, with
    checkpoints (dotted) and restarts (red) marked. Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    from matplotlib.figure import Figure

    evaluations = history.evaluations()
    losses = {"loss": history.training("loss")}
    if "eval_loss" in evaluations:  # on the training loss's scale
        losses["eval_loss"] = evaluations.pop("eval_loss")
    panels = [("loss", losses),
              ("learning rate", {"learning rate": history.training("learningRate")})]
    if evaluations:
        panels.append(("evaluation", evaluations))
    figure = Figure(figsize=(9, 3 * len(panels)), layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, panels):
        for label, (steps, values) in series.items():
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=label)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        for step in history.checkpoints():
            ax.axvline(step, color="grey", linestyle=":", linewidth=1)
        for attempt, step in history.restarts():
            ax.axvline(step, color="tab:red", linewidth=1.5)
            ax.annotate(f"attempt {attempt}", (step, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", color="tab:red",
                        fontsize=8)
        if len(series) > 1:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("step (dotted: checkpoints)")
    return figure
