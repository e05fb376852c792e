"""The Hugging Face course's custom training loop (chapter 3: a DataLoader, AdamW, a linear
schedule and Accelerate), on the paraphrase data of examples/data, plus the few lines that
give it ftjob's checkpoints, resume, progress and export; those are marked "ftjob:".

Run it through ftjob (examples/custom-loop/job.yaml) or on its own:

    FTJOB_MODEL=sentence-transformers/all-MiniLM-L6-v2 \\
    FTJOB_TRAIN_FILE=examples/data/paraphrase-train.csv \\
    FTJOB_EVAL_FILE=examples/data/paraphrase-validation.csv \\
    accelerate launch examples/custom-loop/train.py
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import load_dataset
from torch.optim import AdamW
from torch.utils.data import DataLoader
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                          DataCollatorWithPadding, get_scheduler)

from ftjob_trainer import report  # ftjob: progress, metrics, checkpoints


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--save-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def save_checkpoint(accelerator, step: int) -> None:
    """ftjob: every rank writes its part, then the checkpoint is declared finished."""
    folder = Path(os.environ.get("FTJOB_CHECKPOINT_DIR", "checkpoints")) / f"checkpoint-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        (folder / "step.json").write_text(json.dumps({"step": step}))
    accelerator.wait_for_everyone()
    report.checkpoint_saved(folder, step)


def main():
    args = parse_args()
    set_seed(args.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    checkpoint = os.environ["FTJOB_MODEL"]
    raw_datasets = load_dataset("csv", data_files={"train": os.environ["FTJOB_TRAIN_FILE"],
                                                   "validation": os.environ["FTJOB_EVAL_FILE"]})
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def tokenize_function(example):
        return tokenizer(example["sentence1"], example["sentence2"], truncation=True,
                         max_length=64)

    tokenized_datasets = raw_datasets.map(tokenize_function, batched=True)
    tokenized_datasets = tokenized_datasets.remove_columns(["idx", "sentence1", "sentence2"])
    tokenized_datasets = tokenized_datasets.rename_column("label", "labels")
    data_collator = DataCollatorWithPadding(tokenizer=tokenizer)
    train_dataloader = DataLoader(tokenized_datasets["train"], shuffle=True,
                                  batch_size=args.batch_size, collate_fn=data_collator)
    eval_dataloader = DataLoader(tokenized_datasets["validation"], batch_size=64,
                                 collate_fn=data_collator)

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    optimizer = AdamW(model.parameters(), lr=args.learning_rate)
    train_dataloader, eval_dataloader, model, optimizer = accelerator.prepare(
        train_dataloader, eval_dataloader, model, optimizer)
    num_training_steps = args.max_steps or args.epochs * len(train_dataloader)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0,
                                 num_training_steps=num_training_steps)
    accelerator.register_for_checkpointing(lr_scheduler)

    # ftjob: resume from the newest complete checkpoint, if there is one.
    step = 0
    resume_dir = os.environ.get("FTJOB_RESUME_DIR")
    if resume_dir:
        accelerator.load_state(resume_dir)
        step = json.loads((Path(resume_dir) / "step.json").read_text())["step"]
        accelerator.print(f"Resuming at step {step} from {resume_dir}")
    # ftjob: SIGTERM (preemption, a deadline, Ctrl-C) means save and exit 75.
    stop_requested = torch.zeros(1, device=accelerator.device)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.fill_(1))

    model.train()
    while step < num_training_steps:
        epoch, done_in_epoch = divmod(step, len(train_dataloader))
        train_dataloader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(train_dataloader, done_in_epoch) \
            if done_in_epoch else train_dataloader
        for batch in batches:
            outputs = model(**batch)
            loss = outputs.loss
            accelerator.backward(loss)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            step += 1
            report.progress(step, num_training_steps, loss=loss.item(),
                            learning_rate=lr_scheduler.get_last_lr()[0],
                            samples_per_step=args.batch_size * accelerator.num_processes)
            stopping = accelerator.reduce(stop_requested.clone(), "sum").item() > 0
            if stopping or step % args.save_steps == 0 or step == num_training_steps:
                save_checkpoint(accelerator, step)
            if stopping:
                sys.exit(75)
            if step == num_training_steps:
                break

    model.eval()
    correct = total = 0
    for batch in eval_dataloader:
        with torch.no_grad():
            outputs = model(**batch)
        predictions = outputs.logits.argmax(dim=-1)
        predictions, labels = accelerator.gather_for_metrics((predictions, batch["labels"]))
        correct += (predictions == labels).sum().item()
        total += labels.numel()
    report.metrics({"eval_accuracy": correct / total}, step=step)  # ftjob: status.metrics
    accelerator.print(f"eval accuracy {correct / total:.4f}")

    # ftjob: what is in FTJOB_OUTPUT_DIR is exported to output.uri.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        output_dir = os.environ.get("FTJOB_OUTPUT_DIR", "model")
        accelerator.unwrap_model(model).save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)


if __name__ == "__main__":
    main()
