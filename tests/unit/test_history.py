"""The metric history: events.jsonl read into curves (pure), drawn, and kept in storage by
rank 0 across attempts (a file:// location stands in for the bucket; the e2e test uses S3)."""

from __future__ import annotations

import json
import time

import pytest

from ftjob.history import History, plot
from ftjob_trainer.history import StoredHistorySink
from ftjob_trainer.storage import Location


def lines(*events: dict) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


TWO_ATTEMPTS = lines(
    {"event": "started", "attempt": 1, "step": 0, "maxSteps": 6},
    {"event": "progress", "attempt": 1, "step": 1, "loss": 1.0, "learningRate": 0.1},
    {"event": "progress", "attempt": 1, "step": 2, "loss": 0.9, "learningRate": 0.09},
    {"event": "checkpoint", "attempt": 1, "step": 2, "uri": "s3://b/c/checkpoint-2"},
    {"event": "eval", "attempt": 1, "step": 2, "metrics": {
        "eval_loss": 0.8, "eval_accuracy": 0.5, "epoch": 1, "eval_runtime": 2.1,
        "eval_samples_per_second": 180.0}},
    {"event": "progress", "attempt": 1, "step": 3, "loss": 0.85, "learningRate": 0.08},
    {"event": "started", "attempt": 2, "step": 2, "maxSteps": 6},
    {"event": "progress", "attempt": 2, "step": 3, "loss": 0.7, "learningRate": 0.08},
    {"event": "progress", "attempt": 2, "step": 4, "loss": 0.6, "learningRate": 0.07},
) + '{"event": "progress", "attempt": 2, "st'  # torn: copied mid-write


def test_curves_keep_the_later_attempts_value_of_a_step_trained_twice():
    history = History.parse(TWO_ATTEMPTS)
    assert history.training("loss") == ([1, 2, 3, 4], [1.0, 0.9, 0.7, 0.6])
    assert history.training("learningRate") == ([1, 2, 3, 4], [0.1, 0.09, 0.08, 0.07])
    assert history.evaluations() == {"eval_accuracy": ([2], [0.5]), "eval_loss": ([2], [0.8])}
    assert history.checkpoints() == [2]
    assert history.restarts() == [(2, 2)]


@pytest.mark.parametrize("text", ["", "not json\n", '{"no": "event"}\n', "[1, 2]\n"])
def test_nothing_readable_is_an_empty_history(text):
    assert History.parse(text).events == []


def test_the_plot_draws_the_histories_points():
    history = History.parse(TWO_ATTEMPTS)
    figure = plot(history, "bert")
    loss_axes, lr_axes, eval_axes = figure.axes
    (loss,) = [line for line in loss_axes.get_lines() if line.get_label() == "loss"]
    assert (list(loss.get_xdata()), list(loss.get_ydata())) == history.training("loss")
    def drawn(axes):
        return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
                for line in axes.get_lines() if not line.get_label().startswith("_")}

    # eval_loss beside the training loss, on its scale; the other metrics below.
    assert drawn(loss_axes) == {"loss": history.training("loss"),
                                "eval_loss": history.evaluations()["eval_loss"]}
    assert drawn(eval_axes) == {"eval_accuracy": history.evaluations()["eval_accuracy"]}
    marks = [line.get_xdata()[0] for line in lr_axes.get_lines()
             if line.get_label().startswith("_")]
    assert sorted(marks) == [2, 2]  # checkpoint-2 and attempt 2's start


def sink(tmp_path, attempt_dir: str, **kwargs) -> StoredHistorySink:
    return StoredHistorySink(tmp_path / attempt_dir / "events.jsonl",
                             Location(f"file://{tmp_path}/bucket/job"), **kwargs)


def test_rank0_keeps_the_history_in_storage_across_attempts(tmp_path):
    stored = tmp_path / "bucket/job/events.jsonl"
    first = sink(tmp_path, "pod-1", sync_seconds=0.05)
    first.write({"event": "progress", "attempt": 1, "step": 1})
    # The thread copies it while training goes on.
    deadline = time.monotonic() + 10
    while not stored.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stored.read_text().splitlines()) == 1
    first.write({"event": "progress", "attempt": 1, "step": 2})
    first.close()
    assert len(stored.read_text().splitlines()) == 2  # the last copy on close
    # A new pod of the next attempt starts from what the first left.
    second = sink(tmp_path, "pod-2")
    second.write({"event": "started", "attempt": 2, "step": 2})
    second.close()
    assert [e["attempt"] for e in History.parse(stored.read_text()).events] == [1, 1, 2]


def test_a_checkpoint_is_in_the_stored_history_at_once(tmp_path):
    """A rank 0 killed right after its checkpoint (no close, long before the next periodic
    copy) still leaves that checkpoint in the history."""
    stored = tmp_path / "bucket/job/events.jsonl"
    history = sink(tmp_path, "pod-1", sync_seconds=3600)
    history.write({"event": "progress", "attempt": 1, "step": 4})
    history.write({"event": "checkpoint", "attempt": 1, "step": 4})
    deadline = time.monotonic() + 10
    while not stored.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["event"] for e in History.parse(stored.read_text()).events] == [
        "progress", "checkpoint"]
    history.close()


def test_unreachable_storage_never_stops_the_event_log(tmp_path):
    (tmp_path / "blocker").write_text("a file where the bucket folder should be")
    broken = StoredHistorySink(tmp_path / "pod/events.jsonl",
                               Location(f"file://{tmp_path}/blocker/job"))
    broken.write({"event": "progress", "attempt": 1, "step": 1})
    broken.close()  # the copy fails with a warning, nothing raised
    assert (tmp_path / "pod/events.jsonl").read_text().count("\n") == 1


def test_tensorboard_files_are_kept_beside_the_history_as_they_grow(tmp_path):
    board = tmp_path / "pod/tensorboard/attempt-1"
    board.mkdir(parents=True)
    events = board / "events.out.tfevents.1.host"
    events.write_bytes(b"first")
    history = StoredHistorySink(tmp_path / "pod/events.jsonl",
                                Location(f"file://{tmp_path}/bucket/job"),
                                folders={"tensorboard": tmp_path / "pod/tensorboard"})
    stored = tmp_path / "bucket/job/tensorboard/attempt-1/events.out.tfevents.1.host"
    history.sync()
    assert stored.read_bytes() == b"first"
    events.write_bytes(b"first and more")  # TensorBoard appends
    history.close()
    assert stored.read_bytes() == b"first and more"
