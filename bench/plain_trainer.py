"""The baseline: a plain Hugging Face Trainer fine-tune in the course's style (chapter 3),
with no ftjob code, on the same data, model, seed and batch size as bench/trainer_bench.py
gives ftjob. Run under torchrun; writes its train metrics and first-step time to a JSON file.

    torchrun --standalone --nproc-per-node 2 bench/plain_trainer.py MODEL OUT_DIR RESULT.json
"""

import json
import sys
import time
from pathlib import Path

from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from bench.settings import MAX_LENGTH, TRAINING, TRAIN_FILE, TRAIN_SAMPLES

model_path, output_dir, result_file = sys.argv[1:4]


class FirstStep(TrainerCallback):
    def __init__(self):
        self.at = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.at is None:
            self.at = time.time()


raw = load_dataset("csv", data_files={"train": TRAIN_FILE})
raw["train"] = raw["train"].select(range(TRAIN_SAMPLES))
tokenizer = AutoTokenizer.from_pretrained(model_path)


def tokenize_function(example):
    return tokenizer(example["sentence1"], example["sentence2"], truncation=True,
                     max_length=MAX_LENGTH)


args = TrainingArguments(output_dir, **TRAINING)
with args.main_process_first():
    tokenized = raw.map(tokenize_function, batched=True,
                        remove_columns=["idx", "sentence1", "sentence2"])
model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
first_step = FirstStep()
trainer = Trainer(model, args, train_dataset=tokenized["train"],
                  data_collator=DataCollatorWithPadding(tokenizer=tokenizer),
                  processing_class=tokenizer, callbacks=[first_step])
result = trainer.train()
if trainer.is_world_process_zero():
    Path(result_file).write_text(json.dumps({"metrics": result.metrics,
                                             "firstStepAt": first_step.at}))
