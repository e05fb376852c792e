"""`ftjob validate` and `ftjob crd` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from ftjob.crd import crd_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ftjob(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ftjob.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_validate_every_example():
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert len(files) >= 3
    result = ftjob("validate", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("valid FineTuneJob") == len(files)


def test_validate_reports_every_error_with_its_path(tmp_path):
    job = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    job["spec"]["training"]["evalStrategy"] = "sometimes"
    job["spec"]["distributed"]["strategy"] = "horovod"
    job["spec"]["dataset"]["textColumns"] = []
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(job))
    result = ftjob("validate", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "spec.training.evalStrategy: must be one of no, steps, epoch" in result.stderr
    assert "spec.distributed.strategy: Input should be 'ddp', 'fsdp' or 'deepspeed'" \
        in result.stderr
    assert "spec.dataset.textColumns" in result.stderr


def test_validate_with_set_override():
    result = ftjob("validate", str(EXAMPLES / "quickstart.yaml"), "--set",
                   "distributed.nodes=0")
    assert result.returncode == 1
    assert "spec.distributed.nodes" in result.stderr


def test_set_values_are_read_like_yaml_in_a_document(tmp_path):
    learning = ftjob("validate", str(EXAMPLES / "quickstart.yaml"), "--set",
                     "training.learningRate=5e-5", "--set", "training.seed=0x10")
    assert learning.returncode == 0, learning.stderr
    nan = ftjob("validate", str(EXAMPLES / "quickstart.yaml"), "--set",
                "training.learningRate=.nan")
    assert nan.returncode == 1 and "training.learningRate: --set value holds nan" in nan.stderr


def test_every_document_of_a_file_is_validated_as_kubectl_would_send_it(tmp_path):
    quickstart = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    other = {**quickstart, "metadata": {"name": "second"}}
    broken = {**quickstart, "metadata": {"name": "third"},
              "spec": {**quickstart["spec"], "checkpoints": {"uri": "s3:///nobucket"}}}
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump_all([quickstart, None, other, broken]))
    result = ftjob("validate", str(both))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{both} (document 1): valid FineTuneJob quickstart" in result.stdout
    assert f"{both} (document 2): valid FineTuneJob second" in result.stdout
    assert f"{both} (document 3): not a valid FineTuneJob" in result.stderr
    assert "spec.checkpoints.uri: must be a storage URI" in result.stderr
    # `ftjob run` runs one job and says so.
    run = ftjob("run", str(both), "--run-root", str(tmp_path / "runs"))
    assert run.returncode == 1 and "holds 3 documents; ftjob run runs one job" in run.stderr


def test_validate_unreadable_and_malformed_files(tmp_path):
    (tmp_path / "broken.yaml").write_text("spec: [unclosed")
    result = ftjob("validate", str(tmp_path / "missing.yaml"), str(tmp_path / "broken.yaml"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot be read" in result.stderr and "not valid YAML" in result.stderr


def test_crd_command_prints_the_generated_crd():
    result = ftjob("crd")
    assert result.returncode == 0
    assert result.stdout == crd_yaml()
