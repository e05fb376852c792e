"""The README's cluster walkthrough, run as written: every command of its block, in order,
in bash, against the test cluster, SeaweedFS and the real trainer (through the kubelet
stand-in). Only the `export` line's values are the test's own (its bucket, SeaweedFS's
keys and endpoint).

What a real cluster does by itself, the test does between two commands: after `helm
install`, the operator the chart installed runs (here: the real operator process, on the
chart's ServiceAccount and with the chart's settings ConfigMap, since KWOK only pretends to
run the chart's pod), and training pods get a node that runs them (the stand-in; the KWOK
CPU node is cordoned for the duration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.kubelet import LocalKubelet
from tests.support.operator import OperatorProcess, service_account_kubeconfig
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

README = REPO / "README.md"
RELEASE_NAMESPACE = "ftjob-system"
CRD = "finetunejobs.ftjob.dev"


def walkthrough() -> tuple[dict[str, str], list[str]]:
    """The block's `export` variables (their placeholder values) and its commands, with
    continuation lines joined; comments stay (bash reads them)."""
    text = README.read_text()
    block = text.split("<!-- walkthrough:", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands = [line.strip() for line in block.replace("\\\n", " ").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    exports = [c for c in commands if c.startswith("export ")]
    assert len(exports) == 1, exports
    variables = dict(part.split("=", 1) for part in exports[0].split()[1:])
    return variables, [c for c in commands if not c.startswith("export ")]


def test_the_readme_block_is_what_a_user_types():
    variables, commands = walkthrough()
    assert set(variables) == {"BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    verbs = [c.split()[0] + " " + c.split()[1] for c in commands]
    assert verbs == ["helm install", "kubectl create", "ftjob upload", "ftjob submit",
                     "ftjob list", "ftjob status", "ftjob logs", "ftjob plot",
                     "ftjob download"]


def adopt_crd(cluster) -> None:
    """When the session installed the CRD before this test, the release adopts it, as it
    installs it on a fresh cluster: Helm adopts an object carrying its ownership metadata."""
    if cluster.kubectl("get", "crd", CRD, check=False).returncode != 0:
        return
    cluster.kubectl("label", "crd", CRD, "--overwrite", "app.kubernetes.io/managed-by=Helm")
    cluster.kubectl("annotate", "crd", CRD, "--overwrite",
                    "meta.helm.sh/release-name=ftjob",
                    f"meta.helm.sh/release-namespace={RELEASE_NAMESPACE}")


def test_readme_walkthrough_installs_submits_watches_logs_plots_downloads(
        cluster, namespace, seaweedfs, s3_bucket, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_model_cache",
                                                  REPO / "examples/seed_model_cache.py")
    seeding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seeding)
    variables, commands = walkthrough()
    bucket = s3_bucket("walkthrough")
    work = tmp_path / "laptop"
    work.mkdir()
    for shipped in ("examples", "charts"):
        (work / shipped).symlink_to(REPO / shipped)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "kubectl").symlink_to(cluster.binaries["kubectl"])
    (tools / "helm").symlink_to(cluster.binaries["helm"])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.kubeconfig.read_text())
    cluster.kubectl("config", "set-context", "--current", f"--namespace={namespace}",
                    "--kubeconfig", str(kubeconfig))
    env = {**os.environ, **seaweedfs.env, "BUCKET": bucket, "KUBECONFIG": str(kubeconfig),
           "PATH": f"{tools}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    assert set(variables) <= set(env)
    # The pods load the quickstart's hub model from their cache, seeded as on an offline
    # node.
    hf_home = tmp_path / "hf-home"
    seeding.seed(seeding.packaged_model_dir(), hf_home / "hub")
    adopt_crd(cluster)

    outputs, operator, kubelet = {}, None, None
    try:
        for command in commands:
            result = subprocess.run(["bash", "-c", command], cwd=work, env=env,
                                    capture_output=True, text=True, timeout=900)
            outputs[command.split()[1]] = result
            with (tmp_path / "walkthrough.log").open("a") as transcript:  # kept on failure
                transcript.write(f"$ {command}\n{result.stdout}{result.stderr}\n")
            log = operator.log()[-3000:] if operator else ""
            assert result.returncode == 0, (command, result.stdout[-3000:],
                                            result.stderr[-3000:], log)
            if command.startswith("helm install"):
                operator, kubelet = run_what_the_cluster_runs(cluster, namespace, tmp_path,
                                                              hf_home)
    finally:
        if kubelet:
            kubelet.stop()
        if operator:
            operator.kill()
        cluster.kubectl("uncordon", "cpu-node-0")
        subprocess.run([cluster.binaries["helm"], "--kubeconfig", str(cluster.kubeconfig),
                        "uninstall", "ftjob", "-n", RELEASE_NAMESPACE, "--wait"],
                       capture_output=True, timeout=120)

    assert "Succeeded" in outputs["submit"].stderr, outputs["submit"].stderr[-2000:]
    header, row = outputs["list"].stdout.splitlines()[:2]
    assert row.split()[:4] == ["quickstart", "Succeeded", "100%", "20/20"], row
    assert "Phase:      Succeeded" in outputs["status"].stdout
    assert "'train_loss'" in outputs["logs"].stdout, outputs["logs"].stdout[-2000:]
    picture = work / "quickstart.png"
    assert picture.read_bytes()[:4] == b"\x89PNG"
    model = work / "quickstart-model"
    assert json.loads((model / "config.json").read_text())["architectures"] == \
        ["BertForSequenceClassification"]
    for exported in ("config.json", "model.safetensors", "metrics.json", "tokenizer.json"):
        assert (model / exported).is_file(), sorted(p.name for p in model.iterdir())
    # The CRD outlives the release (crds.keep), as the README says.
    assert cluster.kubectl("get", "crd", CRD, check=False).returncode == 0


def run_what_the_cluster_runs(cluster, namespace: str, tmp_path: Path, hf_home: Path):
    """The chart's operator, on its own ServiceAccount and settings, and a node for the
    training pods."""
    settings = cluster.get("configmap", "ftjob-defaults", "-n", RELEASE_NAMESPACE)["data"]
    kubeconfig = service_account_kubeconfig(cluster, RELEASE_NAMESPACE, "ftjob",
                                            tmp_path / "operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, namespace, tmp_path / "operator.log",
                               settings).start()
    cluster.kubectl("cordon", "cpu-node-0")
    kubelet = LocalKubelet(cluster.kubeconfig, tmp_path / "kubelet", extra_env={
        "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "FTJOB_STATUS_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1"}).start()
    return operator, kubelet
