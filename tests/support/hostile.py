"""Hypothesis strategies for hostile FineTuneJobs: valid jobs with a few parts replaced by
values a careless or malicious user might write (wrong types, Kubernetes names that are not,
ftjob's reserved names, out-of-range training arguments, unknown fields), and documents
that are not documents at all (binary, alias bombs and cycles, deep nesting, huge strings)."""

from __future__ import annotations

import copy
import json
import string

import yaml
from hypothesis import strategies as st

BASE = {
    "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "fuzz"},
    "spec": {
        "model": {"name": "sentence-transformers/all-MiniLM-L6-v2", "numLabels": 2},
        "dataset": {"files": {"train": "s3://data/train.csv"},
                    "textColumns": ["sentence1", "sentence2"]},
        "training": {"maxSteps": 10, "learningRate": 5e-5},
        "distributed": {"nodes": 1, "gpusPerNode": 1},
        "checkpoints": {"uri": "s3://ftjob-test/fuzz", "keep": 2},
        "runPolicy": {"backoffLimit": 0},
        "resources": {"requests": {"cpu": "1"}},
        "podTemplate": {
            "annotations": {"sim.ftjob.dev/run-for": "1s"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "spot", "operator": "Exists"}],
            "env": [{"name": "NCCL_DEBUG", "value": "WARN"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
    },
}

# Values users and attackers write where names, paths and numbers belong.
NASTY_STRINGS = [
    "", " ", "config", "scratch", "dshm", "/etc/ftjob", "/scratch", "/dev/shm", "/dev/shm/",
    "../etc", "a/../b", "cpuu", "kubernetes.io/x", "nvidia.com/gpu", "FTJOB_RESUME_FROM",
    "a b", "UPPER", "-lead", "trail-", "x" * 64, "x" * 300, "é", "\u202e", "\x00", "\t",
    "s3:// ", "s3:///nobucket", "s3://b", "ftp://x/y", "file://relative", "http://h:99999",
    "localhost:9000", "5e-5", "NaN", "1e309", "0x10", "on", "null", "~", "{}", "[]",
    "node-role.kubernetes.io/control-plane", "unconfined", "Exists", "In", "9999999999999",
]
NASTY_NUMBERS = [0, -1, 1, 2**31, 2**63, -2**63, 0.5, -0.0, 1e-300, 1e300, 3.14]


def json_values(max_leaves: int = 8):
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-2**64, max_value=2**64),
        st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(NASTY_NUMBERS),
        st.text(max_size=40), st.sampled_from(NASTY_STRINGS))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=20), st.sampled_from(NASTY_STRINGS)),
                        inner, max_size=4)), max_leaves=max_leaves)


def _paths(node, prefix=()):
    """Every path to a value in `node` (dict keys and list indices)."""
    yield prefix
    children = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


PATHS = [path for path in _paths(BASE) if path]
# Fields that exist in the API but not in BASE, where a value can land.
EXTRA_PATHS = [
    ("spec", "peft"), ("spec", "output"), ("spec", "output", "pushToHub"),
    ("spec", "distributed", "deepspeed"), ("spec", "distributed", "elastic"),
    ("spec", "resources", "limits"), ("spec", "podTemplate", "affinity"),
    ("spec", "podTemplate", "labels"), ("spec", "podTemplate", "imagePullSecrets"),
    ("spec", "checkpoints", "endpointUrl"), ("spec", "checkpoints", "credentialsSecret"),
    ("spec", "training", "fp16"), ("spec", "training", "bf16"),
    ("spec", "training", "perDeviceTrainBatchSize"), ("spec", "training", "seed"),
    ("spec", "training", "loadBestModelAtEnd"), ("spec", "training", "evalStrategy"),
    ("spec", "podTemplate", "volumes", 0, "hostPath"),
    ("spec", "podTemplate", "volumes", 0, "secret"),
    ("spec", "podTemplate", "env", 0, "valueFrom"),
    ("spec", "podTemplate", "securityContext"), ("spec", "runPolicy", "suspend"),
]


def _set(document, path, value):
    node = document
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value


def _delete(document, path):
    node = document
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


@st.composite
def hostile_jobs(draw) -> dict:
    """BASE with one to four parts replaced, deleted or added."""
    document = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PATHS + EXTRA_PATHS))
        action = draw(st.sampled_from(["set", "set", "set", "delete"]))
        if action == "delete":
            _delete(document, path)
        else:
            _set(document, path, draw(json_values()))
    return document


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BROKEN_DOCUMENTS = [
    _bomb(9), "a: &a [*a]\n", "&x {spec: *x}\n", "[" * 500 + "]" * 500,
    "".join(" " * i + "k:\n" for i in range(200)) + " " * 200 + "v\n",
    "spec: {training: {learningRate: .nan}}\n", "spec: !!python/object/apply:os.system [ls]\n",
    "\t- tab\n", "- a\n- b\n", "just a string\n", "42\n", "---\n---\n", "",
    "key: 'unterminated\n", "{\"spec\": }", "%YAML 9.9\n---\na: 1\n", "!!binary AAAA\n",
    "? [complex, key]\n: value\n", "<<: *undefined\n",
]


def hostile_files():
    """Bytes of a file handed to `ftjob validate`."""
    as_yaml = hostile_jobs().map(lambda d: yaml.safe_dump(d).encode())
    as_json = hostile_jobs().map(lambda d: json.dumps(d).encode())
    two_docs = st.tuples(hostile_jobs(), hostile_jobs()).map(
        lambda pair: yaml.safe_dump_all(list(pair)).encode())
    broken = st.sampled_from(BROKEN_DOCUMENTS).map(str.encode)
    binary = st.binary(max_size=2048)
    text = st.text(alphabet=string.printable + "&*!|>:{}[]#%@`\u00e9\u202e", max_size=400).map(
        lambda t: t.encode())
    utf16 = hostile_jobs().map(lambda d: b"\xff\xfe" + yaml.safe_dump(d).encode("utf-16-le"))
    return st.one_of(as_yaml, as_json, two_docs, broken, binary, text, utf16)


# How many hostile inputs each fuzz test put through, printed at the end of the run.
COUNTS: dict[str, int] = {}
