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
               "sft", "dpo"]
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


CHAT_TEMPLATE = Field(None, description=(
    "A Jinja chat template, for a tokenizer that has none (as chat_template in a "
    "tokenizer_config.json)"))


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
    chat_template: LongText | None = CHAT_TEMPLATE


# TRL's DPO losses (DPOConfig.loss_type); tests/unit/test_tasks.py checks them against the
# installed TRL.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
                  "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop",
                  "sft", "sigmoid_norm")
EXO_NEEDS_SMOOTHING = "lossType exo_pair needs labelSmoothing above 0 (the EXO paper uses " \
    "1e-3)"


class DpoSpec(ApiModel):
    """Direct preference optimisation settings (TRL's DPOTrainer). The data has a prompt, a
    chosen and a rejected column (dataset.textColumns: [prompt, chosen, rejected]), as plain
    text or as role/content turns; dataset.maxLength is TRL's max_length. With LoRA the
    reference model is the base model with the adapter disabled: one model in memory"""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!has(self.lossType) || self.lossType != 'exo_pair' || "
         "(has(self.labelSmoothing) && self.labelSmoothing > 0.0)", EXO_NEEDS_SMOOTHING))}

    beta: float = Field(0.1, gt=0, le=100, description=(
        "How far the model may move from the reference: higher stays closer (the β of DPO; "
        "τ for ipo)"))
    loss_type: Literal[DPO_LOSS_TYPES] = Field("sigmoid", description=(
        "TRL's DPO loss: sigmoid is the DPO paper's; ipo, hinge, robust, exo_pair, "
        "bco_pair, sppo_hard, nca_pair, apo_zero, apo_down, aot, aot_unpaired, discopop, "
        "sft, sigmoid_norm are its variants"))
    # At most 0.5, not below: the API server checks a default of 0 against an exclusive
    # maximum cast to an integer (0), and refuses the CRD.
    label_smoothing: float = Field(0.0, ge=0, le=0.5, description=(
        "The probability that a preference is flipped (robust) or EXO's ε (exo_pair)"))
    chat_template: LongText | None = CHAT_TEMPLATE

    @model_validator(mode="after")
    def _exo_needs_smoothing(self):
        if self.loss_type == "exo_pair" and self.label_smoothing <= 0:
            raise ValueError(EXO_NEEDS_SMOOTHING)
        return self


@dataclass(frozen=True)
class TaskInfo:
    settings: type[ApiModel] | None  # the model of spec.<field>, when the task has settings
    section: str | None  # the spec field of those settings (snake_case)
    metrics: tuple[str, ...] | None  # the metric names it reports; None: any classifier's
    text_columns: tuple[int, ...]  # how many text columns it reads
    # TrainingArguments the task sets unless the job does.
    training_defaults: dict = field(default_factory=dict)


TASKS: dict[str, TaskInfo] = {
    # Token averaging across ranks is for token-level losses. A classification head ignores
    # the token count, yet the Trainer still multiplies its loss by the world size, which
    # doubles both the reported loss and the gradients under DDP.
    "sequence-classification": TaskInfo(None, None, None, (1, 2),
                                        {"average_tokens_across_devices": False}),
    "token-classification": TaskInfo(TokenClassificationSpec, "token_classification",
                                     ("precision", "recall", "f1", "accuracy"), (1,)),
    "masked-lm": TaskInfo(MaskedLmSpec, "masked_lm", LANGUAGE_MODEL_METRICS, (1,)),
    "causal-lm": TaskInfo(CausalLmSpec, "causal_lm", LANGUAGE_MODEL_METRICS, (1, 2)),
    "sft": TaskInfo(SftSpec, "sft", ("perplexity",), (1, 2)),
    # DPOTrainer always reports its rewards (accuracies, margins, chosen, rejected): nothing
    # to choose in spec.metrics.
    "dpo": TaskInfo(DpoSpec, "dpo", (), (3,)),
}
SETTINGS_FIELDS = {info.section: task for task, info in TASKS.items() if info.section}


def task_fits(task: str, metrics: list[str], text_columns: list[str]) -> list[str]:
    """What in the spec does not suit the task, as messages naming the field."""
    info = TASKS[task]
    problems = []
    if info.metrics is not None:
        unknown = [m for m in metrics if m not in info.metrics]
        if unknown:
            offered = f"reports {', '.join(info.metrics)}" if info.metrics else \
                "reports its own metrics and takes none"
            problems.append(f"spec.metrics: {task} {offered}, not {', '.join(unknown)}")
    if len(text_columns) not in info.text_columns:
        counts = " or ".join(str(count) for count in info.text_columns)
        problems.append(f"spec.dataset.textColumns: {task} reads {counts} "
                        f"column{'s' if counts != '1' else ''}, not {len(text_columns)}")
    return problems
