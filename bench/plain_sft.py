"""The SFT baseline: a plain TRL script (SFTConfig, SFTTrainer) on a conversational dataset,
with no ftjob code. bench/fidelity_bench.py runs it beside ftjob's sft task on the same data,
model and seed and compares the per-step loss.

    torchrun --standalone --nproc-per-node 1 bench/plain_sft.py \\
        --model_name_or_path MODEL --train_file chat-train.jsonl --eval_file chat-val.jsonl \\
        --output_dir OUT --max_length 128 --assistant_only_loss true --max_steps 20 ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser, set_seed
from trl import SFTConfig, SFTTrainer


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "Local folder or hub id"})
    train_file: str = field(metadata={"help": "A json-lines file with a messages column"})
    eval_file: str = field(metadata={"help": "The same, for evaluation"})
    max_train_samples: int | None = field(default=None)


def main():
    parser = HfArgumentParser((ScriptArguments, SFTConfig))
    script_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)
    raw = load_dataset("json", data_files={"train": script_args.train_file,
                                           "eval": script_args.eval_file})
    if script_args.max_train_samples:
        raw["train"] = raw["train"].select(range(script_args.max_train_samples))
    tokenizer = AutoTokenizer.from_pretrained(script_args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(script_args.model_name_or_path)
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=raw["train"],
                         eval_dataset=raw["eval"], processing_class=tokenizer)
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        Path(training_args.output_dir, "history.json").write_text(json.dumps(
            {"log_history": trainer.state.log_history, "eval": metrics}))


if __name__ == "__main__":
    main()
