"""The final model: exported once training ends, and recognised when a run of the same job
finds that the export it would make is already there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedModel, Trainer, TrainingArguments

from .checkpoints import COMPLETE_MARKER, SavedCheckpoint, utc_now
from .storage import Location, local_files

FINAL_MODEL = "model"  # the folder under the work dir that is exported and pushed
MERGED_MODEL = "merged"  # a LoRA job's adapter merged into the base, inside FINAL_MODEL
METRICS_FILE = "metrics.json"


def training_length(args: TrainingArguments) -> dict:
    """The settings that decide where training stops: a run with other values has more (or
    fewer) steps to train even when an export exists."""
    return {"maxSteps": args.max_steps, "numTrainEpochs": args.num_train_epochs}


def export_model(trainer: Trainer, tokenizer, metrics: dict, final_dir: Path,
                 location: Location | None, is_global_main: bool,
                 load_lora_base: Callable[[], PreTrainedModel] | None = None) -> str:
    """Saves the final model, tokenizer and metrics (for a LoRA job given `load_lora_base`,
    also the adapter merged into that base), and copies them to output storage with a
    completion marker written last; the marker records the step and training length so a
    later run of the same job knows there is nothing left to do."""
    trainer.save_model(str(final_dir))  # collective under DeepSpeed/FSDP
    if not is_global_main:
        return ""
    tokenizer.save_pretrained(str(final_dir))
    (final_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    if load_lora_base is not None:
        save_merged(final_dir, load_lora_base(), tokenizer)
    if location is None:
        return str(final_dir)
    return upload_export(final_dir, location, step=trainer.state.global_step,
                         **training_length(trainer.args))


def upload_export(folder: Path, location: Location, **facts) -> str:
    """Copies an exported folder to output storage; the completion marker, with the files'
    sizes and `facts`, goes last (and the old one first), so a marker always vouches for
    the files beside it."""
    location.remove(COMPLETE_MARKER)
    files = local_files(folder)
    location.upload_files(folder, files)
    sizes = {f: (folder / f).stat().st_size for f in files}
    location.write_text(json.dumps({"savedAt": utc_now(), "files": sizes, **facts}),
                        COMPLETE_MARKER)
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


def save_merged(final_dir: Path, base: PreTrainedModel, tokenizer) -> None:
    """The adapter just saved in final_dir, merged into `base` (a fresh copy of the base
    weights) and saved in MERGED_MODEL. Loading from the saved adapter works the same under
    every strategy (the trained weights may be sharded across ranks in memory)."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(base, str(final_dir)).merge_and_unload()
    merged.save_pretrained(str(final_dir / MERGED_MODEL))
    tokenizer.save_pretrained(str(final_dir / MERGED_MODEL))
