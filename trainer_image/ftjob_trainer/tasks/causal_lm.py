"""causal-lm: next-token prediction on plain text, as run_clm. Texts are packed into blocks
of `block_size` tokens by default; with packing off each text is one sample, truncated."""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import DatasetDict
from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, \
    default_data_collator

from ..modeling import load_model_config, load_pretrained
from .base import TaskParts, check_columns, hold_out_validation, pack, sample_length, \
    token_accuracy

NAME = "causal-lm"

# The model class and peft task type the job trains (memory_fit sizes the same).
MODEL_CLASS = AutoModelForCausalLM
LORA_TASK_TYPE = "CAUSAL_LM"


@dataclass
class Arguments:
    packing: bool = field(default=True, metadata={
        "help": "Concatenate the texts and cut them into blocks of block_size tokens"})
    block_size: int | None = field(default=None, metadata={
        "help": "Tokens per packed block; the dataset's max_length when unset"})


def joined_texts(batch: dict, columns: list[str]) -> list[str]:
    return ["\n".join(parts) for parts in zip(*(batch[c] for c in columns))]


def document_tokenizer(tokenizer, columns: list[str]):
    """Tokenizes a batch of documents for packing, each ended by the end-of-text token, so
    that a block spanning two documents teaches where one ends (run_clm adds nothing;
    pretraining corpora do)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def tokenize(batch):
        encoded = tokenizer(joined_texts(batch, columns))
        return {"input_ids": [ids + eos for ids in encoded["input_ids"]],
                "attention_mask": [mask + [1] * len(eos) for mask in encoded["attention_mask"]]}

    return tokenize


def build(config, model_path: str, tokenizer, raw: DatasetDict) -> TaskParts:
    data, model_args, settings = config.data, config.model, config.task
    columns = data.text_columns
    check_columns(raw, columns, "spec.dataset.textColumns")
    raw = hold_out_validation(raw, data)
    model_config = load_model_config(model_path, model_args)
    block_size = sample_length(settings.block_size, data, settings.packing, "causalLm",
                               model_config)
    if hasattr(model_config, "is_decoder"):
        # Encoder checkpoints (BERT-style) can act as decoders; decoder architectures have
        # no such flag.
        model_config.is_decoder = True

    if settings.packing:
        tokenize = document_tokenizer(tokenizer, columns)
    else:
        def tokenize(batch):
            return tokenizer(joined_texts(batch, columns), truncation=True,
                             max_length=data.max_length)

    tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names,
                        desc="Tokenizing")
    if settings.packing:
        tokenized = pack(tokenized, block_size, f"Packing into blocks of {block_size}")
        tokenized = tokenized.map(lambda batch: {"labels": batch["input_ids"]}, batched=True,
                                  desc="Adding labels")
        collator = default_data_collator
    else:
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)

    def load(use_lora=None):
        return load_pretrained(MODEL_CLASS, model_path, model_args, LORA_TASK_TYPE,
                               use_lora, config=model_config)

    return TaskParts(
        load_model=load,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("eval"),
        data_collator=collator,
        load_base_model=lambda: load(use_lora=False),
        **token_accuracy(data.metrics, shifted=True),
    )
