#!/usr/bin/env bash
# The prepared GPU check: peak CUDA memory against `ftjob validate --fit` for bf16, gradient
# checkpointing, LoRA and ZeRO-2 on one process, and ftjob's throughput against a plain
# Trainer script (bench/gpu_check.py says how). For a machine with one GPU, PyTorch and
# transformers but no internet: the other packages come from wheels carried with the
# repository copy, made beforehand on a machine with PyPI by `make gpu-wheels`.
#
#   make gpu-wheels                    # here, once: .gpu-wheels/ (about 7 MB, git-ignored)
#   bash bench/gpu_check.sh            # there; the table also goes to $OUT/gpu_check.log
#   bash bench/gpu_check.sh --smoke    # anywhere: the same code on CPU with tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
# Only where they are missing: the wheels are for the GPU machine's Python (3.12).
if ! python3 -c "import datasets, trl, deepspeed, pydantic" 2> /dev/null &&
    compgen -G ".gpu-wheels/*.whl" > /dev/null; then
  site="${TMPDIR:-/tmp}/ftjob-gpu-check-site"
  python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --upgrade --target "$site" .gpu-wheels/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/operator:$PWD/trainer_image:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
log="${OUT:-${TMPDIR:-/tmp}}/gpu_check.log"
# Well inside the 8 minutes a GPU machine is lent for (about 5 on an H200).
timeout 450 python3 -m bench.gpu_check "$@" 2>&1 | tee "$log"
