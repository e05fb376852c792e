"""The trainer program: `python -m ftjob_trainer CONFIG.json`, one process per rank under
torchrun or accelerate."""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from pathlib import Path

import datasets
import torch
import torch.distributed as dist
import transformers
from transformers import PrinterCallback, Trainer, set_seed

from .arguments import Config, load_config
from .callbacks import CheckpointUploadCallback, PreemptionCallback, ProgressCallback, RunClock
from .checkpoints import BackgroundUploader, CheckpointStore
from .data import load_raw_datasets
from .errors import ConfigError, PeerLost, Preempted, TrainerError, write_termination_log
from .export import FINAL_MODEL, export_model, finished_export
from .hub import check_hub, push_folder
from .lifetime import die_with_parent
from .metrics import add_loss_metrics
from .modeling import load_tokenizer, resolve_model_path
from .preflight import check_storage, storage_locations
from .reporting import Reporter, build_reporter
from .tasks import task_for

logger = logging.getLogger("ftjob_trainer")


class Topology:
    """Where this process sits: ranks, nodes, and who does per-node or global work."""

    def __init__(self, args):
        self.rank = args.process_index
        self.world_size = args.world_size
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        self.nodes = max(1, self.world_size // self.local_world_size)
        self.node = self.rank // self.local_world_size
        self.is_global_main = self.rank == 0
        self.is_local_main = args.local_process_index == 0


def from_main(value):
    """Rank 0's `value` on every rank, so that all ranks take the same decision."""
    box = [value]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(box, src=0)
    return box[0]


def resume_point(store: CheckpointStore, output, args) -> tuple:
    """The newest complete checkpoint, and the final metrics if the export was already made
    from it (nothing left to train)."""
    latest = store.latest()
    return latest, finished_export(output, latest, args)


def final_eval_metrics(trainer: Trainer) -> dict:
    """The final model's eval metrics: those of an evaluation the Trainer already ran at the
    last step (an epoch-end or step eval), else a new evaluation. With
    load_best_model_at_end the final model is another checkpoint's, so it is evaluated."""
    state = trainer.state
    last = next((entry for entry in reversed(state.log_history) if "eval_loss" in entry), None)
    if last and last.get("step") == state.global_step and \
            not trainer.args.load_best_model_at_end:
        return {key: value for key, value in last.items() if key.startswith("eval_")}
    return trainer.evaluate()


# How gloo and NCCL word a collective that failed because a peer went away.
COLLECTIVE_FAILURE = re.compile(
    r"gloo|NCCL|ProcessGroup|c10d|Connection (?:closed|reset) by peer")


def peer_lost(error: Exception) -> PeerLost | None:
    """A collective's error, said in one line instead of a traceback from every rank that
    outlived the one that failed."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if not isinstance(error, dist.DistError) and not (
            isinstance(error, RuntimeError) and COLLECTIVE_FAILURE.search(str(error))):
        return None
    text = str(error).strip()
    detail = text.splitlines()[0][:300] if text else type(error).__name__
    return PeerLost(f"rank {dist.get_rank()} lost contact with another rank, which has "
                    f"probably failed (see its error): {detail}")


def tensorboard_folder(config: Config) -> Path | None:
    """With report_to naming tensorboard, its event files go to <work_dir>/tensorboard, a
    folder per attempt (the history sink keeps the folder in storage beside
    events.jsonl, so `tensorboard --logdir <checkpoints.uri>/tensorboard` shows every
    attempt)."""
    if "tensorboard" not in (config.training.report_to or []):
        return None
    folder = Path(config.storage.work_dir) / "tensorboard"
    # Read by transformers' TensorBoardCallback when the Trainer creates it.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder / f"attempt-{config.job.attempt}")
    return folder


def train(config: Config, reporter_box: list) -> int:
    args = config.training
    topology = Topology(args)
    tensorboard = tensorboard_folder(config)
    reporter = build_reporter(config.reporting, config.job, folders={
        "tensorboard": tensorboard} if tensorboard else None) if topology.is_global_main \
        else Reporter()
    reporter_box.append(reporter)
    work_dir = Path(config.storage.work_dir)
    cache_dir = work_dir / "cache"
    set_seed(args.seed)

    # Every node checks its own path to storage before loading weights.
    checkpoints, output = check_storage(config) if topology.is_local_main else \
        storage_locations(config)
    hub_repo = config.storage.hub_repo
    if hub_repo and topology.is_global_main:
        check_hub(hub_repo)  # the token, now rather than after training
    store = CheckpointStore(checkpoints, config.storage.checkpoint_keep)
    if topology.is_global_main:
        aborted = checkpoints.abort_incomplete_uploads()
        if aborted:
            logger.info("Aborted %d incomplete uploads an earlier attempt left in %s", aborted,
                        checkpoints.display())
    # One id for this run on every rank, so completion markers never mix in parts a
    # previous run left behind.
    run_id = from_main(uuid.uuid4().hex)

    # Every rank resumes from the checkpoint rank 0 found, and there is nothing to train
    # when the export was already made from it.
    latest, done = from_main(resume_point(store, output, args) if topology.is_global_main
                             else None)
    if done is not None:
        logger.info("Already finished at step %d: the model in %s was exported from it",
                    latest.step, output.display())
        reporter.emit("finished", metrics=done, output=output.display(), alreadyFinished=True,
                      step=latest.step, checkpoint={"step": latest.step, "uri": latest.uri})
        return 0
    with args.main_process_first(local=True, desc="fetching the newest checkpoint"):
        resume_dir = store.fetch(latest.step, work_dir / "resume") if latest else None
    if latest:
        logger.info("Resuming from %s (step %d)", latest.uri, latest.step)

    with args.main_process_first(local=True, desc="loading model and data"):
        model_path = resolve_model_path(config.model, cache_dir)
        tokenizer = load_tokenizer(model_path, config.model)
        raw = load_raw_datasets(config.data, cache_dir)
        parts = task_for(config.model.task).build(config, model_path, tokenizer, raw)
        model = parts.load_model()

    uploader = None
    clock = RunClock()
    if topology.is_local_main:
        def on_saved(saved, seconds):
            reporter.emit("checkpoint", step=saved.step, uri=saved.uri, savedAt=saved.saved_at,
                          uploadSeconds=round(seconds, 3), timing=clock.figures(saved.step))

        uploader = BackgroundUploader(store, topology.node, topology.nodes,
                                      topology.is_global_main, run_id, on_saved,
                                      config.storage.upload_queue_size,
                                      config.storage.upload_outage_seconds)
    upload_callback = CheckpointUploadCallback(uploader, work_dir / "staging")
    preemption = PreemptionCallback()
    progress = ProgressCallback(reporter, clock, job=config.job.name,
                                resumedFrom={"step": latest.step, "uri": latest.uri}
                                if latest else None)
    trainer = parts.trainer_class(
        model=model,
        args=parts.training_args or args,
        train_dataset=parts.train_dataset,
        eval_dataset=parts.eval_dataset,
        processing_class=tokenizer,
        data_collator=parts.data_collator,
        callbacks=[upload_callback, preemption, clock, progress],
        **parts.optional_trainer_arguments(),
    )
    if config.reporting.terminal:
        trainer.remove_callback(PrinterCallback)
    result = trainer.train(resume_from_checkpoint=str(resume_dir) if resume_dir else None)
    if preemption.preempted_at is not None:
        if uploader:
            uploader.close()
        reporter.emit("preempted", step=preemption.preempted_at)
        raise Preempted(f"stopped by SIGTERM at step {preemption.preempted_at} after saving "
                        "a checkpoint")
    metrics = dict(result.metrics)
    if trainer.state.global_step == (latest.step if latest else 0):
        # Resumed at the end (the export had not been made): no step ran, so the Trainer's
        # average loss over zero steps means nothing.
        metrics.pop("train_loss", None)
    if parts.eval_dataset is not None:
        metrics.update(final_eval_metrics(trainer))
    add_loss_metrics(metrics, config.data.metrics)
    load_lora_base = parts.load_base_model \
        if config.model.use_lora and config.model.lora_merge_on_export else None
    exported = export_model(trainer, tokenizer, metrics, work_dir / FINAL_MODEL, output,
                            topology.is_global_main, load_lora_base)
    hub_url = push_folder(work_dir / FINAL_MODEL, hub_repo, config.storage.hub_private,
                          f"ftjob: {config.job.name}, attempt {config.job.attempt}") \
        if hub_repo and topology.is_global_main else None
    if uploader:
        uploader.close()
        uploader.raise_failure()
    last = uploader.last_saved if uploader else None
    reporter.emit("finished", metrics=metrics, output=exported, hub=hub_url,
                  timing=clock.figures(last.step if last else None),
                  trainSeconds=metrics.get("train_runtime"),
                  checkpoint={"step": last.step, "uri": last.uri} if last else None,
                  uploadStallSeconds=round(upload_callback.blocked_seconds, 3),
                  # What `ftjob validate --fit` estimates, as this GPU saw it.
                  peakGpuMemoryBytes=torch.cuda.max_memory_allocated()
                  if torch.cuda.is_available() else None)
    return 0


def quiet_libraries() -> None:
    """Warnings only, and no progress bars but ftjob's own: each rank would otherwise draw
    its own bars for dataset maps, hub downloads and the model shards of every checkpoint
    save into the user's terminal."""
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()  # hub downloads too
    datasets.disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A rank whose launcher is gone stops: SIGTERM, so it saves if it can.
    die_with_parent(os.getppid())
    if len(argv) != 1:
        print("usage: python -m ftjob_trainer CONFIG.json", file=sys.stderr)
        return 64
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO)
    quiet_libraries()
    config = None
    reporter_box: list[Reporter] = []
    try:
        try:
            config = load_config(argv[0])
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(f"cannot read trainer config {argv[0]}: {error}") from None
        exit_code = train(config, reporter_box)
        if exit_code == 0 and dist.is_initialized():
            # Left to the interpreter's exit, the process group's threads can outlive it
            # and abort the rank ("terminate called without an active exception", exit 1)
            # after a run that succeeded.
            dist.destroy_process_group()
        return exit_code
    except Exception as caught:  # noqa: BLE001 - re-raised unless we can say it in one line
        error = caught if isinstance(caught, TrainerError) else peer_lost(caught)
        if error is None:
            raise
        write_termination_log(config.reporting.termination_log if config else None, error)
        for reporter in reporter_box:
            reporter.emit("failed", reason=error.reason, message=str(error),
                          exitCode=error.exit_code)
        print(f"ftjob-trainer: {error.reason}: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        for reporter in reporter_box:
            reporter.close()
