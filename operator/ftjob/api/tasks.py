"""The tasks a FineTuneJob can run, their settings, and the metrics each one reports.

One entry per task in TASKS. A task with settings has a spec section named after it
(`spec.maskedLm` for masked-lm); the trainer's task module of the same name reads them
(trainer_image/ftjob_trainer/tasks/, pinned to this file by tests/unit/test_tasks.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from .base import ApiModel, LongText, ShortText, bounded_list, cel

Task = Literal["sequence-classification", "token-classification", "masked-lm", "causal-lm",
               "sft"]
LANGUAGE_MODEL_METRICS = ("perplexity", "accuracy")  # accuracy: of the predicted tokens
BLOCK_SIZE = Field(None, ge=8, le=131_072, description=(
    "Tokens per packed block (run_clm's and run_mlm's block_size); dataset.maxLength when "
    "unset. At most the model's max_position_embeddings"))


BLOCK_SIZE_LINE_BY_LINE = "blockSize is for packed texts; lineByLine truncates to " \
    "dataset.maxLength"
BLOCK_SIZE_UNPACKED = "blockSize is for packed texts; without packing texts are truncated " \
    "to dataset.maxLength"


class MaskedLmSpec(ApiModel):
    """Masked-token prediction settings (run_mlm)"""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!has(self.blockSize) || !(has(self.lineByLine) && self.lineByLine)",
         BLOCK_SIZE_LINE_BY_LINE))}

    mlm_probability: float = Field(0.15, gt=0, lt=1, description=(
        "Share of tokens masked in every batch for the loss"))
    line_by_line: bool = Field(False, description=(
        "One sample per non-empty text, truncated to dataset.maxLength, instead of packing "
        "the texts into blocks"))
    block_size: int | None = BLOCK_SIZE

    @model_validator(mode="after")
    def _block_size_needs_packing(self):
        if self.block_size is not None and self.line_by_line:
            raise ValueError(BLOCK_SIZE_LINE_BY_LINE)
        return self


class CausalLmSpec(ApiModel):
    """Next-token prediction settings (run_clm)"""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!has(self.blockSize) || !has(self.packing) || self.packing", BLOCK_SIZE_UNPACKED))}

    packing: bool = Field(True, description=(
        "Concatenate the texts (each ended by the end-of-text token) and cut them into "
        "blocks of blockSize tokens; false: one sample per text, truncated to "
        "dataset.maxLength"))
    block_size: int | None = BLOCK_SIZE

    @model_validator(mode="after")
    def _block_size_needs_packing(self):
        if self.block_size is not None and not self.packing:
            raise ValueError(BLOCK_SIZE_UNPACKED)
        return self


class TokenClassificationSpec(ApiModel):
    """Tag-per-word settings (run_ner). The words are in dataset.textColumns[0], a list of
    words per row, and their tags in dataset.labelColumn"""

    label_all_tokens: bool = Field(False, description=(
        "Give a word's tag to every sub-word piece (B- becomes I- after the first), not "
        "only to the first piece"))
    labels: list[ShortText] | None = bounded_list(1000, default=None, min_length=1,
                                                  description=(
        "Every tag, in id order; by default the sorted tags of the train data. Needed when "
        "the eval data has tags the train data lacks"))


class SftSpec(ApiModel):
    """Supervised fine-tuning settings (TRL's SFTTrainer). The data is a conversation column
    (dataset.textColumns: [messages], a list of role/content turns) or a prompt and a
    completion column (textColumns: [prompt, completion]); dataset.maxLength is TRL's
    max_length"""

    completion_only_loss: bool = Field(True, description=(
        "Loss on the assistant's turns (conversations) or on the completion only; false: on "
        "every token"))
    packing: bool = Field(False, description=(
        "Pack samples into sequences of dataset.maxLength tokens (TRL's best-fit packing)"))
    chat_template: LongText | None = Field(None, description=(
        "A Jinja chat template, for a tokenizer that has none (as chat_template in a "
        "tokenizer_config.json)"))


@dataclass(frozen=True)
class TaskInfo:
    settings: type[ApiModel] | None  # the model of spec.<field>, when the task has settings
    section: str | None  # the spec field of those settings (snake_case)
    metrics: tuple[str, ...] | None  # the metric names it reports; None: any classifier's
    text_columns: int | None  # how many text columns it reads; None: 1 or 2
    # TrainingArguments the task sets unless the job does.
    training_defaults: dict = field(default_factory=dict)


TASKS: dict[str, TaskInfo] = {
    # Token averaging across ranks is for token-level losses. A classification head ignores
    # the token count, yet the Trainer still multiplies its loss by the world size, which
    # doubles both the reported loss and the gradients under DDP.
    "sequence-classification": TaskInfo(None, None, None, None,
                                        {"average_tokens_across_devices": False}),
    "token-classification": TaskInfo(TokenClassificationSpec, "token_classification",
                                     ("precision", "recall", "f1", "accuracy"), 1),
    "masked-lm": TaskInfo(MaskedLmSpec, "masked_lm", LANGUAGE_MODEL_METRICS, 1),
    "causal-lm": TaskInfo(CausalLmSpec, "causal_lm", LANGUAGE_MODEL_METRICS, None),
    "sft": TaskInfo(SftSpec, "sft", ("perplexity",), None),
}
SETTINGS_FIELDS = {info.section: task for task, info in TASKS.items() if info.section}


def task_fits(task: str, metrics: list[str], text_columns: list[str]) -> list[str]:
    """What in the spec does not suit the task, as messages naming the field."""
    info = TASKS[task]
    problems = []
    if info.metrics is not None:
        unknown = [m for m in metrics if m not in info.metrics]
        if unknown:
            problems.append(f"spec.metrics: {task} reports {', '.join(info.metrics)}, not "
                            f"{', '.join(unknown)}")
    if info.text_columns is not None and len(text_columns) != info.text_columns:
        problems.append(f"spec.dataset.textColumns: {task} reads {info.text_columns} "
                        f"column, not {len(text_columns)}")
    return problems
