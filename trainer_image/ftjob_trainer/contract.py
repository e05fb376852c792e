"""The contract between ftjob and a user's own training script (spec.script), defined once.

ftjob runs the script under `python -m ftjob_trainer.supervise` on each node, which sets:

- FTJOB_CHECKPOINT_DIR: save each checkpoint in a sub-folder here, then call
  `ftjob_trainer.report.checkpoint_saved(folder, step)`; the supervisor uploads it to
  `checkpoints.uri`, marks it complete and keeps `checkpoints.keep` of them;
- FTJOB_RESUME_DIR: the newest complete checkpoint, downloaded before the script starts;
  unset on a first run;
- FTJOB_OUTPUT_DIR: what the script leaves here is exported to `output.uri` when it exits 0;
- FTJOB_ATTEMPT: 1 on a first run, one more on each restart;
- FTJOB_MODEL, FTJOB_DATASET, FTJOB_TRAIN_FILE, FTJOB_EVAL_FILE: spec.model.name,
  spec.dataset.name and spec.dataset.files, when the job gives them.

SIGTERM means: save a checkpoint, declare it, and exit 75 (EX_TEMPFAIL); the job then
resumes from it. Any other non-zero exit fails the attempt with that exit code and the last
lines of the script's stderr.
"""

from __future__ import annotations

CHECKPOINT_DIR = "FTJOB_CHECKPOINT_DIR"
RESUME_DIR = "FTJOB_RESUME_DIR"
OUTPUT_DIR = "FTJOB_OUTPUT_DIR"
ATTEMPT = "FTJOB_ATTEMPT"
MODEL = "FTJOB_MODEL"
DATASET = "FTJOB_DATASET"
TRAIN_FILE = "FTJOB_TRAIN_FILE"
EVAL_FILE = "FTJOB_EVAL_FILE"
# The trainer config the supervisor runs from; `report` reads its reporting section.
CONFIG = "FTJOB_CONFIG"
# Where `report.metrics` keeps the latest metrics for the supervisor's final report.
METRICS_FILE = "FTJOB_METRICS_FILE"
# Written into a checkpoint folder by `report.checkpoint_saved`: the folder is finished.
SAVED_MARKER = ".ftjob-saved.json"
EXIT_SAVED_AND_STOPPED = 75
