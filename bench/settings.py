"""One definition of the benchmarked fine-tune, shared by the plain script and ftjob's job."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRAIN_FILE = str(REPO / "examples/data/paraphrase-train.csv")
TRAIN_SAMPLES = 1280
MAX_LENGTH = 64
PROCS = 2
# TrainingArguments, identical for both sides (ftjob adds only what it always adds:
# disable_tqdm and save_total_limit, which the plain script sets the same way here).
TRAINING = {
    "max_steps": 40,
    "per_device_train_batch_size": 16,
    "learning_rate": 5e-5,
    "seed": 42,
    "save_strategy": "steps",
    "save_steps": 10,
    "save_total_limit": 2,
    "logging_steps": 10,
    "report_to": "none",
    "disable_tqdm": True,
    "use_cpu": True,
    "average_tokens_across_devices": False,
}
