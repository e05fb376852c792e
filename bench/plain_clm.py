"""The baseline for the GPU check's throughput: a plain Hugging Face Trainer causal-LM
fine-tune in run_clm's style (texts tokenized, ended by the end-of-text token, packed into
blocks, labels = inputs), with no ftjob code. Writes its train metrics to a JSON file.

    python bench/plain_clm.py MODEL TEXT.jsonl BLOCK OUT_DIR RESULT.json TRAINING_JSON
"""

import json
import sys
from itertools import chain

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, \
    default_data_collator

model_path, text_file, block, output_dir, result_file, training = sys.argv[1:7]
block = int(block)

raw = load_dataset("json", data_files={"train": text_file})
tokenizer = AutoTokenizer.from_pretrained(model_path)


def tokenize(batch):
    encoded = tokenizer(batch["text"])
    return {"input_ids": [ids + [tokenizer.eos_token_id] for ids in encoded["input_ids"]],
            "attention_mask": [mask + [1] for mask in encoded["attention_mask"]]}


def group_texts(examples):
    joined = {k: list(chain(*examples[k])) for k in examples.keys()}
    total = len(joined["input_ids"]) // block * block
    result = {k: [t[i: i + block] for i in range(0, total, block)] for k, t in joined.items()}
    result["labels"] = result["input_ids"].copy()
    return result


tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)
packed = tokenized.map(group_texts, batched=True)
model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
trainer = Trainer(model=model, args=TrainingArguments(output_dir=output_dir,
                                                      **json.loads(training)),
                  train_dataset=packed["train"], processing_class=tokenizer,
                  data_collator=default_data_collator)
result = trainer.train()
with open(result_file, "w") as handle:
    json.dump({"metrics": result.metrics}, handle)
