"""CheckpointStore and the uploader on a real local filesystem (file:// URIs): markers,
multi-node parts, retention and resume selection."""

from __future__ import annotations

import json
import threading

from ftjob_trainer.checkpoints import (
    COMPLETE_MARKER,
    BackgroundUploader,
    CheckpointStore,
    snapshot,
)
from ftjob_trainer.storage import Location


def fake_checkpoint(root, step, files=("model.safetensors", "trainer_state.json")):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text(f"{name} at {step}")
    return folder


def store_at(tmp_path, keep=2):
    return CheckpointStore(Location(f"file://{tmp_path / 'remote'}"), keep)


def test_only_marked_checkpoints_count(tmp_path):
    store = store_at(tmp_path)
    store.upload_part(fake_checkpoint(tmp_path / "local", 10), 10, node=0, run_id="r")
    assert store.latest() is None  # files without the marker are not a checkpoint
    store.mark_complete(10, nodes=1, run_id="r")
    store.upload_part(fake_checkpoint(tmp_path / "local", 20), 20, node=0, run_id="r")
    assert store.latest().step == 10
    fetched = store.fetch(10, tmp_path / "resume")
    assert (fetched / "trainer_state.json").read_text() == "trainer_state.json at 10"


def test_completion_waits_for_every_node_of_this_run(tmp_path):
    store = store_at(tmp_path)
    local = tmp_path / "local"
    store.upload_part(fake_checkpoint(local / "n0", 5, ["model.safetensors"]), 5, 0, "new")
    # Node 1's part from an earlier run must not count.
    store.upload_part(fake_checkpoint(local / "old", 5, ["rng_state_1.pth"]), 5, 1, "old")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (store.mark_complete(5, nodes=2, run_id="new"),
                                              done.set()))
    thread.start()
    assert not done.wait(2.5)
    store.upload_part(fake_checkpoint(local / "n1", 5, ["rng_state_1.pth"]), 5, 1, "new")
    assert done.wait(10)
    thread.join()
    marker = json.loads(store.location.read_text("checkpoint-5", COMPLETE_MARKER))
    assert set(marker["files"]) == {"model.safetensors", "rng_state_1.pth"}


def test_retention_keeps_newest_complete_and_drops_stale_partials(tmp_path):
    store = store_at(tmp_path, keep=2)
    for step in (1, 2, 3):
        store.upload_part(fake_checkpoint(tmp_path / "l", step), step, 0, "r")
        store.mark_complete(step, 1, "r")
    store.upload_part(fake_checkpoint(tmp_path / "l", 4), 4, 0, "r")  # crashed mid-upload
    store.upload_part(fake_checkpoint(tmp_path / "l", 5), 5, 0, "r")
    store.mark_complete(5, 1, "r")
    assert store.apply_retention(5) == [1, 2, 4]
    assert store.complete_steps() == [3, 5]


def test_forget_marker_before_resaving_a_step(tmp_path):
    store = store_at(tmp_path)
    store.upload_part(fake_checkpoint(tmp_path / "l", 7), 7, 0, "r")
    store.mark_complete(7, 1, "r")
    store.forget_marker(7)
    assert store.latest() is None


def test_snapshot_survives_deletion_of_the_source(tmp_path):
    source = fake_checkpoint(tmp_path / "local", 3)
    staged = snapshot(source, tmp_path / "staging" / "checkpoint-3")
    for file in source.iterdir():
        file.unlink()
    assert (staged / "model.safetensors").read_text() == "model.safetensors at 3"


def test_background_uploader_reports_and_bounds_its_queue(tmp_path):
    store = store_at(tmp_path, keep=5)
    saved = []
    uploader = BackgroundUploader(store, node=0, nodes=1, is_global_main=True, run_id="r",
                                  on_saved=lambda s, seconds: saved.append(s.step),
                                  queue_size=1)
    for step in (1, 2, 3):
        staged = snapshot(fake_checkpoint(tmp_path / "local", step),
                          tmp_path / "staging" / f"checkpoint-{step}")
        uploader.submit(staged, step)
    uploader.close()
    assert saved == [1, 2, 3]
    assert store.complete_steps() == [1, 2, 3]
    assert not uploader.errors
    assert not (tmp_path / "staging" / "checkpoint-1").exists()  # staging cleaned up
