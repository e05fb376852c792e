"""dpo: direct preference optimisation of a decoder with TRL's DPOTrainer, on rows of a
prompt, a chosen and a rejected answer, as plain text or as role/content turns (rendered
with the chat template). With LoRA, DPOTrainer applies the adapter itself and its reference
model is the base with the adapter disabled, so one model is in memory; without LoRA it
loads a second copy as the reference, as a plain TRL script does."""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import AutoModelForCausalLM

from ..errors import DataError
from ..modeling import load_model_config, load_pretrained, lora_config
from .base import TaskParts, check_columns, hold_out_validation, sample_length
from .chat import to_trl_columns, turns_problem, use_chat_template

NAME = "dpo"

# The model class and peft task type the job trains (memory_fit sizes the same).
MODEL_CLASS = AutoModelForCausalLM
LORA_TASK_TYPE = "CAUSAL_LM"
# DPO keeps a frozen reference copy of the model (with LoRA: the base with the adapter off).
REFERENCE_MODEL = True
TRL_COLUMNS = ["prompt", "chosen", "rejected"]


@dataclass
class Arguments:
    beta: float = field(default=0.1, metadata={
        "help": "How far the model may move from the reference (higher: less)"})
    loss_type: str = field(default="sigmoid", metadata={"help": "One of TRL's DPO losses"})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "Flip probability (robust) or ε (exo_pair)"})
    chat_template: str | None = field(default=None, metadata={
        "help": "A Jinja chat template for a tokenizer that has none"})


def preference_problem(prompt, chosen, rejected) -> str | None:
    """Why a row is not a preference pair DPO can learn from, or None. Either all three
    are texts, or all are turns with the answers spoken by the assistant."""
    values = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if all(isinstance(value, str) for value in values.values()):
        empty = [name for name, value in values.items() if not value.strip()]
        return f"has an empty {empty[0]}" if empty else None
    for name, value in values.items():
        problem = turns_problem(value)
        if problem:
            return f"has a {name} that {problem} (all three are texts, or all are turns)"
    for name in ("chosen", "rejected"):
        if any(turn["role"] != "assistant" for turn in values[name]):
            return f"has a {name} answer with turns that are not the assistant's"
    return None


def check_preferences(raw: DatasetDict, columns: list[str]) -> None:
    for split, dataset in raw.items():
        for row, values in enumerate(zip(*(dataset[column] for column in columns))):
            problem = preference_problem(*values)
            if problem:
                names = ", ".join(columns)
                raise DataError(f"the {split} data's row {row} ({names}) {problem}")


def build(config, model_path: str, tokenizer, raw: DatasetDict) -> TaskParts:
    from trl import DPOConfig, DPOTrainer

    data, model_args, settings = config.data, config.model, config.task
    columns = data.text_columns
    check_columns(raw, columns, "spec.dataset.textColumns ([prompt, chosen, rejected])")
    check_preferences(raw, columns)
    if isinstance(raw["train"][0][columns[0]], list):
        use_chat_template(tokenizer, settings.chat_template, model_args.model_name_or_path,
                          NAME)
    raw = hold_out_validation(to_trl_columns(raw, columns, TRL_COLUMNS), data)
    max_length = sample_length(None, data, False, NAME, load_model_config(model_path,
                                                                          model_args))
    # DPOConfig's own defaults (its learning rate of 1e-6) apply to what the job leaves
    # unset, as in a plain TRL script.
    dpo_args = DPOConfig(**{
        **config.training_given, "max_length": max_length, "beta": settings.beta,
        "loss_type": [settings.loss_type], "label_smoothing": settings.label_smoothing})

    def load_base():
        return load_pretrained(MODEL_CLASS, model_path, model_args, LORA_TASK_TYPE,
                               use_lora=False)

    return TaskParts(
        load_model=load_base,
        train_dataset=raw["train"],
        eval_dataset=raw.get("eval"),
        data_collator=None,  # DPOTrainer's own: prompt+chosen and prompt+rejected, padded
        trainer_class=DPOTrainer,
        training_args=dpo_args,
        load_base_model=load_base,
        peft_config=lora_config(model_args, LORA_TASK_TYPE) if model_args.use_lora else None,
    )
