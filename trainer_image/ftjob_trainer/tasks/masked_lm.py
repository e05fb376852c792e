"""masked-lm: domain adaptation of an encoder by masked-token prediction, as run_mlm. Texts
are packed into blocks (group_texts) or taken one line per sample (line_by_line); the
collator masks mlm_probability of the tokens afresh in every batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

from ..modeling import load_model_config, load_pretrained
from .base import TaskParts, check_columns, hold_out_validation, pack, sample_length, \
    single_text_column, token_accuracy

NAME = "masked-lm"

# The model class and peft task type the job trains (memory_fit sizes the same).
MODEL_CLASS = AutoModelForMaskedLM
LORA_TASK_TYPE = None


@dataclass
class Arguments:
    mlm_probability: float = field(default=0.15, metadata={
        "help": "Share of tokens masked for the loss"})
    line_by_line: bool = field(default=False, metadata={
        "help": "One sample per non-empty line, truncated to max_length, instead of packing"})
    block_size: int | None = field(default=None, metadata={
        "help": "Tokens per packed block; the dataset's max_length when unset"})


def text_tokenizer(tokenizer, column: str, max_length: int | None):
    """Tokenizes a batch of texts, truncated to max_length when given (line by line). Special
    tokens are marked so that the collator never masks them."""
    def tokenize(batch):
        return tokenizer(batch[column], truncation=max_length is not None,
                         max_length=max_length, return_special_tokens_mask=True)

    return tokenize


def build(config, model_path: str, tokenizer, raw: DatasetDict) -> TaskParts:
    data, model_args, settings = config.data, config.model, config.task
    column = single_text_column(data, NAME)
    check_columns(raw, [column], "spec.dataset.textColumns")
    raw = hold_out_validation(raw, data)
    block_size = sample_length(settings.block_size, data, not settings.line_by_line,
                               "maskedLm", load_model_config(model_path, model_args))

    if settings.line_by_line:
        raw = raw.filter(lambda row: bool(row[column] and row[column].strip()),
                         desc="Dropping empty lines")
    tokenize = text_tokenizer(tokenizer, column,
                              data.max_length if settings.line_by_line else None)
    tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names,
                        desc="Tokenizing")
    if not settings.line_by_line:
        tokenized = pack(tokenized, block_size, f"Packing into blocks of {block_size}")

    def load(use_lora=None):
        # peft has no masked-LM task type; a plain LoRA wrap trains the same adapters.
        return load_pretrained(MODEL_CLASS, model_path, model_args, LORA_TASK_TYPE, use_lora)

    return TaskParts(
        load_model=load,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("eval"),
        data_collator=DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=settings.mlm_probability),
        load_base_model=lambda: load(use_lora=False),
        **token_accuracy(data.metrics, shifted=False),
    )
