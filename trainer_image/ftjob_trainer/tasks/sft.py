"""sft: supervised fine-tuning of a decoder on chat or prompt/completion data with TRL's
SFTTrainer. A conversation (a column of role/content turns) is rendered with the tokenizer's
chat template; the loss is on the assistant's turns (or the completion) only, unless
completion_only_loss is off. LoRA comes from spec.peft like every task."""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import AutoModelForCausalLM

from ..errors import DataError
from ..modeling import load_model_config, load_pretrained
from .base import TaskParts, check_columns, hold_out_validation, sample_length
from .chat import to_trl_columns, turns_problem, use_chat_template

NAME = "sft"

# The model class and peft task type the job trains (memory_fit sizes the same).
MODEL_CLASS = AutoModelForCausalLM
LORA_TASK_TYPE = "CAUSAL_LM"


@dataclass
class Arguments:
    completion_only_loss: bool = field(default=True, metadata={
        "help": "Loss on the assistant's turns (conversations) or the completion only"})
    packing: bool = field(default=False, metadata={
        "help": "Pack samples into sequences of max_length tokens (TRL's best-fit packing)"})
    chat_template: str | None = field(default=None, metadata={
        "help": "A Jinja chat template for a tokenizer that has none"})


def conversation_problem(turns) -> str | None:
    """Why a value is not a conversation SFT can learn from, or None."""
    problem = turns_problem(turns)
    if problem:
        return problem
    if not any(turn["role"] == "assistant" for turn in turns):
        return "has no assistant turn to learn from"
    return None


def check_conversations(raw: DatasetDict, column: str) -> None:
    for split, dataset in raw.items():
        for row, turns in enumerate(dataset[column]):
            problem = conversation_problem(turns)
            if problem:
                raise DataError(f"the {split} data's {column} column, row {row}, {problem}")


def build(config, model_path: str, tokenizer, raw: DatasetDict) -> TaskParts:
    from trl import SFTConfig, SFTTrainer

    data, model_args, settings = config.data, config.model, config.task
    columns = data.text_columns
    check_columns(raw, columns, "spec.dataset.textColumns ([messages], or [prompt, "
                               "completion])")
    conversational = len(columns) == 1
    if conversational:
        check_conversations(raw, columns[0])
        use_chat_template(tokenizer, settings.chat_template, model_args.model_name_or_path,
                          NAME)
    # TRL reads `messages`, or `prompt` and `completion`.
    trl_names = ["messages"] if conversational else ["prompt", "completion"]
    raw = hold_out_validation(to_trl_columns(raw, columns, trl_names), data)
    max_length = sample_length(None, data, False, NAME, load_model_config(model_path,
                                                                          model_args))
    # SFTConfig's own defaults (gradient checkpointing on, its learning rate) apply to what
    # the job leaves unset, as in a plain TRL script.
    sft_args = SFTConfig(**{
        **config.training_given, "max_length": max_length, "packing": settings.packing,
        "assistant_only_loss": conversational and settings.completion_only_loss,
        "completion_only_loss": not conversational and settings.completion_only_loss})

    def load(use_lora=None):
        return load_pretrained(MODEL_CLASS, model_path, model_args, LORA_TASK_TYPE,
                               use_lora)

    return TaskParts(
        load_model=load,
        train_dataset=raw["train"],
        eval_dataset=raw.get("eval"),
        data_collator=None,  # SFTTrainer's own: labels masked outside the completion
        trainer_class=SFTTrainer,
        training_args=sft_args,
        load_base_model=lambda: load(use_lora=False),
    )
