"""sequence-classification: one text or a sentence pair and a label, as in chapter 3 of the
Hugging Face course (AutoModelForSequenceClassification, dynamic padding)."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import ClassLabel, DatasetDict
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from ..errors import ConfigError, DataError
from ..metrics import build_compute_metrics
from ..modeling import load_pretrained
from .base import TaskParts, check_columns, hold_out_validation

NAME = "sequence-classification"

# The model class and peft task type the job trains (memory_fit sizes the same).
MODEL_CLASS = AutoModelForSequenceClassification
LORA_TASK_TYPE = "SEQ_CLS"
COLUMNS_FIELDS = "spec.dataset.textColumns and labelColumn"


@dataclass
class Arguments:
    """No settings beyond the dataset's columns."""


@dataclass
class Labels:
    names: list[str] | None
    num_labels: int


def label_ids(raw: DatasetDict, column: str) -> tuple[DatasetDict, Labels]:
    """Maps string labels to ids (sorted, from the train split); keeps integer labels."""
    feature = raw["train"].features[column]
    if isinstance(feature, ClassLabel):
        return raw, Labels(feature.names, feature.num_classes)
    values = sorted(set(raw["train"][column]))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if values[0] < 0:
            raise DataError(f"label column {column} has negative values")
        return raw, Labels(None, values[-1] + 1)
    names = [str(v) for v in values]
    index = {name: i for i, name in enumerate(names)}
    unknown = {str(v) for split in raw.values() for v in split[column]} - set(index)
    if unknown:
        raise DataError(f"eval labels {sorted(unknown)[:5]} never occur in the train data")
    raw = raw.map(lambda batch: {column: [index[str(v)] for v in batch[column]]},
                  batched=True, desc="Mapping labels to ids")
    return raw, Labels(names, len(names))


def build(config, model_path: str, tokenizer, raw: DatasetDict) -> TaskParts:
    data, model_args = config.data, config.model
    columns, label_column = data.text_columns, data.label_column
    check_columns(raw, [*columns, label_column], COLUMNS_FIELDS)
    raw, labels = label_ids(raw, label_column)
    if model_args.num_labels:
        if model_args.num_labels < labels.num_labels:
            raise ConfigError(f"spec.model.numLabels is {model_args.num_labels} but the "
                              f"data has {labels.num_labels} labels")
        labels.num_labels = model_args.num_labels
    raw = hold_out_validation(raw, data)

    def tokenize(batch):
        encoded = tokenizer(*(batch[c] for c in columns), truncation=True,
                            max_length=data.max_length)
        encoded["labels"] = batch[label_column]
        return encoded

    tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names,
                        desc="Tokenizing")
    label_maps = {}
    if labels.names:
        label_maps = {"id2label": dict(enumerate(labels.names)),
                      "label2id": {name: i for i, name in enumerate(labels.names)}}

    def load(use_lora=None):
        return load_pretrained(MODEL_CLASS, model_path, model_args,
                               LORA_TASK_TYPE, use_lora, num_labels=labels.num_labels,
                               **label_maps)

    return TaskParts(
        load_model=load,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("eval"),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=build_compute_metrics(data.metrics, labels.num_labels),
        load_base_model=lambda: load(use_lora=False),
    )
