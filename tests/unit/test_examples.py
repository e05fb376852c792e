"""The committed quickstart data is what its generator makes."""

import subprocess
import sys
from pathlib import Path

GENERATOR = Path(__file__).resolve().parents[2] / "examples/data/make_paraphrase_data.py"


def test_committed_quickstart_data_matches_generator():
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
