"""The final model: exported once training ends, and recognised when a run of the same job
finds that the export it would make is already there."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import Trainer, TrainingArguments

from .checkpoints import COMPLETE_MARKER, SavedCheckpoint, utc_now
from .storage import Location, local_files

FINAL_MODEL = "model"  # the folder under the work dir that is exported and pushed
METRICS_FILE = "metrics.json"


def training_length(args: TrainingArguments) -> dict:
    """The settings that decide where training stops: a run with other values has more (or
    fewer) steps to train even when an export exists."""
    return {"maxSteps": args.max_steps, "numTrainEpochs": args.num_train_epochs}


def export_model(trainer: Trainer, tokenizer, metrics: dict, final_dir: Path,
                 location: Location | None, is_global_main: bool) -> str:
    """Saves the final model, tokenizer and metrics, and copies them to output storage with
    a completion marker written last; the marker records the step and training length so a
    later run of the same job knows there is nothing left to do."""
    trainer.save_model(str(final_dir))  # collective under DeepSpeed/FSDP
    if not is_global_main:
        return ""
    tokenizer.save_pretrained(str(final_dir))
    (final_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    if location is None:
        return str(final_dir)
    location.remove(COMPLETE_MARKER)
    files = local_files(final_dir)
    location.upload_files(final_dir, files)
    sizes = {f: (final_dir / f).stat().st_size for f in files}
    location.write_text(json.dumps({
        "savedAt": utc_now(), "files": sizes, "step": trainer.state.global_step,
        **training_length(trainer.args)}), COMPLETE_MARKER)
    return location.display()


def finished_export(location: Location | None, latest: SavedCheckpoint | None,
                    args: TrainingArguments) -> dict | None:
    """The metrics of a complete export made at the newest checkpoint's step with the same
    training length, or None when this run has training (or exporting) left to do."""
    if location is None or latest is None or not location.exists(COMPLETE_MARKER):
        return None
    marker = json.loads(location.read_text(COMPLETE_MARKER))
    if marker.get("step") != latest.step or any(
            marker.get(key) != value for key, value in training_length(args).items()):
        return None
    return json.loads(location.read_text(METRICS_FILE))
