"""The committed example data is what its generators make."""

import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "examples/data"


@pytest.mark.parametrize("generator", ["make_paraphrase_data.py", "make_task_data.py"])
def test_committed_example_data_matches_its_generator(generator):
    result = subprocess.run([sys.executable, str(DATA / generator), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
