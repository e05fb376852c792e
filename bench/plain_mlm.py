"""The masked-LM baseline: a plain script in the style of Hugging Face's run_mlm.py
(HfArgumentParser dataclasses, validation_split_percentage, group_texts,
DataCollatorForLanguageModeling), with no ftjob code. bench/fidelity_bench.py runs it beside
ftjob's masked-lm task on the same data, model and seed and compares the per-step loss.

    torchrun --standalone --nproc-per-node 1 bench/plain_mlm.py \\
        --model_name_or_path MODEL --train_file news-text.jsonl --output_dir OUT \\
        --max_seq_length 64 --validation_split_percentage 10 --max_steps 20 ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from datasets import load_dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Local folder or hub id"})


@dataclass
class DataTrainingArguments:
    train_file: str = field(metadata={"help": "A json-lines file with a text column"})
    max_seq_length: int = field(default=64, metadata={"help": "Tokens per block"})
    validation_split_percentage: int = field(default=5)
    mlm_probability: float = field(default=0.15)
    max_train_samples: int | None = field(default=None)


def main():
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)

    percentage = data_args.validation_split_percentage
    raw = load_dataset("json", data_files={"train": data_args.train_file})
    if data_args.max_train_samples:
        raw["train"] = raw["train"].select(range(data_args.max_train_samples))
    held = len(raw["train"]) * percentage // 100
    raw["validation"] = raw["train"].select(range(held))
    raw["train"] = raw["train"].select(range(held, len(raw["train"])))

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    model = AutoModelForMaskedLM.from_pretrained(model_args.model_name_or_path)

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"])
    block_size = data_args.max_seq_length

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated[list(examples.keys())[0]])
        total_length = (total_length // block_size) * block_size
        return {k: [t[i: i + block_size] for i in range(0, total_length, block_size)]
                for k, t in concatenated.items()}

    lm_datasets = tokenized.map(group_texts, batched=True)
    collator = DataCollatorForLanguageModeling(tokenizer,
                                               mlm_probability=data_args.mlm_probability)
    trainer = Trainer(model=model, args=training_args, train_dataset=lm_datasets["train"],
                      eval_dataset=lm_datasets["validation"], processing_class=tokenizer,
                      data_collator=collator)
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        Path(training_args.output_dir, "history.json").write_text(json.dumps(
            {"log_history": trainer.state.log_history, "eval": metrics}))


if __name__ == "__main__":
    main()
