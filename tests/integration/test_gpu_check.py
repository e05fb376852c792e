"""The prepared GPU check runs: on this machine's CPU with tiny sizes (--smoke), the same
script, jobs and plain baseline a GPU machine runs, so it does not rot between the rare
sessions that have a GPU."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_gpu_check_script_runs_every_case_and_the_baseline(tmp_path):
    result = subprocess.run(["bash", "bench/gpu_check.sh", "--smoke"], cwd=REPO,
                            env=dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout
    for case in ("bf16 ", "gradient checkpointing", "LoRA r=16", "ZeRO-2, one process"):
        assert case in table, table
    assert "throughput (case 'bf16'): ftjob" in table and "ratio" in table
    log = (tmp_path / "gpu_check.log").read_text()  # with the warnings on stderr
    results = table[table.index("case "):]  # printed once every run is over
    assert results in log
