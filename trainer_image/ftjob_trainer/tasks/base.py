"""What every task gives `train()`, and the helpers tasks share: checking columns, holding
out a validation split, and packing texts into blocks of tokens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from datasets import Dataset, DatasetDict
from transformers import Trainer

from ..arguments import DataArguments
from ..errors import ConfigError, DataError


@dataclass
class TaskParts:
    """Everything the Trainer is built from, as a task made it. The weights load only when
    `load_model` is called, so the data checks (ftjob validate --data) hold no model."""

    load_model: Callable[[], Any]
    train_dataset: Dataset
    eval_dataset: Dataset | None
    data_collator: Callable
    compute_metrics: Callable | None = None
    preprocess_logits_for_metrics: Callable | None = None
    trainer_class: type[Trainer] = Trainer
    # The trainer class's own config (TRL's SFTConfig), built from the job's
    # TrainingArguments; None: those TrainingArguments.
    training_args: Any = None
    # A fresh copy of the base model, for a LoRA job that also exports the merged weights.
    load_base_model: Callable[[], Any] | None = None
    # LoRA for a trainer that applies it itself (DPOTrainer: then its reference model is
    # the base with the adapter disabled).
    peft_config: Any = None

    def optional_trainer_arguments(self) -> dict:
        """The trainer arguments the task set; a trainer class need not take the others."""
        return {name: value for name, value in (
            ("compute_metrics", self.compute_metrics),
            ("preprocess_logits_for_metrics", self.preprocess_logits_for_metrics),
            ("peft_config", self.peft_config)) if value is not None}


def check_columns(raw: DatasetDict, wanted: list[str], fields: str) -> None:
    """Every split has the columns the task reads; `fields` names the spec fields that
    choose them."""
    for split, dataset in raw.items():
        missing = [c for c in wanted if c not in dataset.column_names]
        if missing:
            raise DataError(
                f"the {split} data has no column {', '.join(missing)}; its columns are "
                f"{', '.join(dataset.column_names)} (set {fields})")


def token_accuracy(metrics: list[str], shifted: bool) -> dict:
    """run_mlm's and run_clm's eval accuracy, when the job asks for it: the share of
    labelled tokens predicted right. Logits are reduced to their argmax on the fly, so
    evaluation never holds batch x length x vocabulary scores; a causal LM's prediction at
    position i is for the token at i + 1 (`shifted`). Returns TaskParts fields."""
    if "accuracy" not in metrics:
        return {}

    def preprocess_logits_for_metrics(logits, labels):
        logits = logits[0] if isinstance(logits, tuple) else logits
        return logits.argmax(dim=-1)

    def compute_metrics(eval_prediction):
        predictions, labels = eval_prediction
        if shifted:
            predictions, labels = predictions[:, :-1], labels[:, 1:]
        scored = labels != -100
        return {"accuracy": float((predictions[scored] == labels[scored]).mean())}

    return {"preprocess_logits_for_metrics": preprocess_logits_for_metrics,
            "compute_metrics": compute_metrics}


def single_text_column(data_args: DataArguments, task: str) -> str:
    if len(data_args.text_columns) != 1:
        raise ConfigError(f"spec.dataset.textColumns: {task} reads one column, not "
                          f"{len(data_args.text_columns)}")
    return data_args.text_columns[0]


def hold_out_validation(raw: DatasetDict, data_args: DataArguments) -> DatasetDict:
    """run_mlm's validation_split_percentage: without an eval split, the first N% of the
    train data becomes one (the train split keeps the rest)."""
    percentage = data_args.validation_split_percentage
    if "eval" in raw or not percentage:
        return raw
    train = raw["train"]
    held = len(train) * percentage // 100
    if held == 0 or held == len(train):
        raise DataError(f"spec.dataset.validationSplitPercentage {percentage} of "
                        f"{len(train)} train rows leaves no eval or no train rows")
    return DatasetDict({"train": train.select(range(held, len(train))),
                        "eval": train.select(range(held))})


def sample_length(block_size: int | None, data_args: DataArguments, packed: bool,
                  section: str, model_config) -> int:
    """Tokens per sample: a packed block of `block_size` (dataset.maxLength when unset), or
    a text truncated to dataset.maxLength. A sample longer than the model's position table
    would fail inside the first step, so it is refused here, naming the field that set it."""
    length, field = (block_size, f"spec.{section}.blockSize") if packed and block_size \
        else (data_args.max_length, "spec.dataset.maxLength")
    context = getattr(model_config, "max_position_embeddings", None)
    if context and length > context:
        raise DataError(f"{field} is {length} but the model reads at most {context} "
                        f"tokens (max_position_embeddings); set {field} to {context} or less")
    return length


def group_texts(batch: dict, block_size: int) -> dict:
    """Concatenates a batch of tokenized texts and cuts it into blocks of exactly
    `block_size` tokens; the tail shorter than a block is dropped (run_clm, run_mlm)."""
    joined = {key: list(chain.from_iterable(values)) for key, values in batch.items()}
    total = len(joined["input_ids"]) // block_size * block_size
    return {key: [values[i:i + block_size] for i in range(0, total, block_size)]
            for key, values in joined.items()}


def pack(tokenized: DatasetDict, block_size: int, desc: str) -> DatasetDict:
    packed = tokenized.map(group_texts, batched=True, fn_kwargs={"block_size": block_size},
                           desc=desc)
    empty = [split for split, dataset in packed.items() if len(dataset) == 0]
    if empty:
        raise DataError(f"the {empty[0]} data has fewer tokens than one block of "
                        f"{block_size}; lower the block size or give more text")
    return packed
