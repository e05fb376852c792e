"""A masked-language-model script in the style of Hugging Face's run_mlm.py (HfArgumentParser,
group_texts, DataCollatorForLanguageModeling, Trainer), run through ftjob with
`FtjobCallback`: progress, eval metrics and checkpoints go to ftjob, SIGTERM saves and exits
75, and a rerun resumes through FTJOB_RESUME_DIR. The ftjob lines are marked "ftjob:".

    ftjob run examples/hf-script/job.yaml
"""

import math
import os
import sys
from dataclasses import dataclass, field
from itertools import chain

from datasets import load_dataset
from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling,
                          HfArgumentParser, Trainer, TrainingArguments, set_seed)

from ftjob_trainer import FtjobCallback, report  # ftjob


@dataclass
class ModelArguments:
    model_name_or_path: str = field(default_factory=lambda: os.environ.get("FTJOB_MODEL"),
                                    metadata={"help": "Default: the job's spec.model.name"})


@dataclass
class DataTrainingArguments:
    train_file: str = field(default_factory=lambda: os.environ.get("FTJOB_TRAIN_FILE"))
    validation_split_percentage: int = field(default=5)
    max_seq_length: int = field(default=64)
    mlm_probability: float = field(default=0.15)
    max_train_samples: int | None = field(default=None)


def main():
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    # ftjob: checkpoints go where the supervisor uploads them from.
    sys.argv += ["--output_dir", os.environ.get("FTJOB_CHECKPOINT_DIR", "checkpoints")]
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)

    raw_datasets = load_dataset("json", data_files={"train": data_args.train_file})
    if data_args.max_train_samples:
        raw_datasets["train"] = raw_datasets["train"].select(range(data_args.max_train_samples))
    split = raw_datasets["train"].train_test_split(
        test_size=data_args.validation_split_percentage / 100, shuffle=False)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    model = AutoModelForMaskedLM.from_pretrained(model_args.model_name_or_path)

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated["input_ids"]) // data_args.max_seq_length * \
            data_args.max_seq_length
        return {k: [t[i:i + data_args.max_seq_length]
                    for i in range(0, total_length, data_args.max_seq_length)]
                for k, t in concatenated.items()}

    with training_args.main_process_first(desc="tokenizing and grouping"):
        tokenized = split.map(tokenize_function, batched=True, remove_columns=["text"])
        lm_datasets = tokenized.map(group_texts, batched=True)
    data_collator = DataCollatorForLanguageModeling(
        tokenizer=tokenizer, mlm_probability=data_args.mlm_probability)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=lm_datasets["train"],
        eval_dataset=lm_datasets["test"],
        processing_class=tokenizer,
        data_collator=data_collator,
        callbacks=[FtjobCallback()],  # ftjob: progress, metrics, checkpoints, SIGTERM
    )
    # ftjob: resume from the newest complete checkpoint, if there is one.
    trainer.train(resume_from_checkpoint=os.environ.get("FTJOB_RESUME_DIR"))
    metrics = trainer.evaluate()
    metrics["eval_perplexity"] = math.exp(metrics["eval_loss"])
    trainer.log_metrics("eval", metrics)
    report.metrics({"eval_perplexity": metrics["eval_perplexity"]},  # ftjob: status.metrics
                   step=trainer.state.global_step)
    # ftjob: what is in FTJOB_OUTPUT_DIR is exported to output.uri.
    trainer.save_model(os.environ.get("FTJOB_OUTPUT_DIR", "model"))


if __name__ == "__main__":
    main()
