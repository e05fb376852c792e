"""The Helm chart against the real control plane: lint, server-side dry runs of every mode,
schema errors, an install under Pod Security `restricted`, least-privilege RBAC checked with
`kubectl auth can-i` and by running the operator on the chart's own ServiceAccount token,
upgrade and uninstall."""

from __future__ import annotations

import hashlib
import os

import pytest
import yaml

from tests.conftest import OPERATOR_ENV, REPO
from tests.support.helm import CHART, helm, restricted_namespace
from tests.support.operator import OperatorProcess, service_account_kubeconfig
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster

def test_chart_files_crd_is_the_generated_one():
    assert (CHART / "files/finetunejobs.ftjob.dev.yaml").read_text() == \
        (REPO / "crds/finetunejobs.ftjob.dev.yaml").read_text(), "run `make crd`"


def test_lint_and_server_side_dry_run_of_every_mode(cluster, crd):
    helm(cluster, "lint", str(CHART), "--strict")
    for namespace in ("team-a", "team-b", "ftjob-system"):
        cluster.kubectl("create", "namespace", namespace, check=False)
    modes = {"cluster": [],
             "namespaced": ["--set", "watch.mode=namespaces",
                            "--set", "watch.namespaces={team-a,team-b}"],
             "defaults": ["--set", "defaults.checkpointUri=s3://ckpt/models",
                          "--set", "defaults.credentialsSecret=s3", "--set",
                          "metrics.service.enabled=false"]}
    for mode, values in modes.items():
        rendered = helm(cluster, "template", "ftjob", str(CHART), "-n", "ftjob-system",
                        *values).stdout
        dry_run = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered,
                                  check=False)
        problems = [line for line in dry_run.stderr.splitlines()
                    if line and not line.startswith("Warning:")]
        assert not problems, (mode, problems)


def test_monitoring_dashboard_and_alert_rules(cluster):
    import json

    cluster.kubectl("create", "namespace", "ftjob-system", check=False)
    rendered = helm(cluster, "template", "ftjob", str(CHART), "-n", "ftjob-system",
                    "--set", "metrics.dashboard.enabled=true",
                    "--set", "metrics.serviceMonitor.enabled=true",
                    "--set", "metrics.prometheusRule.enabled=true",
                    "--set", "metrics.prometheusRule.noProgressMinutes=45").stdout
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}
    dashboard = next(doc for doc in yaml.safe_load_all(rendered)
                     if doc and doc["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["ftjob.json"]) == \
        json.loads((CHART / "files/dashboard.json").read_text())
    # The per-job series keep their namespace and name labels through the scrape.
    assert objects["ServiceMonitor"]["spec"]["endpoints"][0]["honorLabels"] is True
    rules = {rule["alert"]: rule for group in objects["PrometheusRule"]["spec"]["groups"]
             for rule in group["rules"]}
    assert set(rules) == {"FineTuneJobNoProgress", "FineTuneJobRestartStorm",
                          "FtjobReconcileSlow"}
    assert "> 2700" in rules["FineTuneJobNoProgress"]["expr"]
    assert "{{ $labels.name }}" in rules["FineTuneJobNoProgress"]["annotations"]["summary"]
    dry_run = cluster.kubectl("apply", "--dry-run=server", "-f", "-",
                              input=yaml.safe_dump(dashboard), check=False)
    assert dry_run.returncode == 0, dry_run.stderr
    off = helm(cluster, "template", "ftjob", str(CHART)).stdout
    assert "grafana_dashboard" not in off and "PrometheusRule" not in off


@pytest.mark.parametrize("values, message", [
    (["--set", "bogus=1"], "additional properties 'bogus' not allowed"),
    (["--set", "watch.mode=namespaces"], "minItems"),
    (["--set", "watch.mode=everywhere"], "watch/mode"),
    (["--set", "image.tag=latest"], "image/tag"),
    (["--set", "defaults.checkpointUri=bucket-without-scheme"], "checkpointUri"),
])
def test_bad_values_are_refused_by_the_schema(cluster, values, message):
    result = helm(cluster, "template", "ftjob", str(CHART), *values, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def rbac_rules(rendered: str) -> list[dict]:
    return [rule for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] in
            ("ClusterRole", "Role") for rule in doc["rules"]]


def test_rbac_has_no_wildcards_and_no_secrets(cluster):
    rendered = helm(cluster, "template", "ftjob", str(CHART), "--set", "replicaCount=2").stdout
    for rule in rbac_rules(rendered):
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "*" not in rule.get("apiGroups", []), rule
        assert "secrets" not in rule["resources"], rule


@pytest.fixture
def release(cluster, crd, request):
    # One per test: the previous test's is still terminating.
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    namespace = restricted_namespace(cluster, f"c-ftjob-system-{os.getpid()}-{digest}")
    helm(cluster, "install", "ftjob", str(CHART), "-n", namespace, "--wait", "--timeout",
         "120s", "--set", "crds.enabled=false", "--set", "image.repository=registry.example/op",
         "--set", "defaults.checkpointUri=s3://ftjob-test/checkpoints",
         "--set", "defaults.credentialsSecret=storage-credentials")
    yield namespace
    helm(cluster, "uninstall", "ftjob", "-n", namespace, "--wait", check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_install_under_pod_security_restricted_and_least_privilege(cluster, release, tmp_path):
    namespace = release
    deployment = cluster.get("deployment", "ftjob", "-n", namespace)
    assert deployment["status"].get("readyReplicas") == 1  # the pod was admitted and runs
    service_account = f"system:serviceaccount:{namespace}:ftjob"

    def can(*args: str) -> bool:
        return cluster.kubectl("auth", "can-i", *args, f"--as={service_account}",
                               check=False).stdout.strip() == "yes"

    assert can("create", "jobs.batch", "-n", "default")
    assert can("patch", "finetunejobs.ftjob.dev", "--subresource=status", "-n", "default")
    assert not can("patch", "finetunejobs.ftjob.dev", "-n", "default")  # users own the spec
    assert can("create", "roles.rbac.authorization.k8s.io", "-n", "default")
    assert not can("get", "secrets", "-n", "default")
    assert not can("list", "secrets", "-n", namespace)
    assert not can("create", "deployments.apps", "-n", "default")
    assert not can("delete", "pods", "-n", "default")
    assert not can("create", "clusterroles.rbac.authorization.k8s.io")

    # The operator, on the chart's ServiceAccount token, runs a job in a restricted
    # namespace to completion (KWOK plays the pods): its RBAC is sufficient.
    jobs_namespace = restricted_namespace(cluster, f"rbac-jobs-{os.getpid()}")
    kubeconfig = service_account_kubeconfig(cluster, namespace, "ftjob",
                                            tmp_path / "operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, jobs_namespace, tmp_path / "operator.log",
                               OPERATOR_ENV).start()
    try:
        from tests.operator.test_operator import finetunejob

        cluster.apply(finetunejob("rbac", {"sim.ftjob.dev/run-for": "2s"}),
                      namespace=jobs_namespace)

        def phase():
            status = cluster.get("finetunejob", "rbac", "-n", jobs_namespace)
            return status.get("status", {}).get("phase") == "Succeeded"

        try:
            eventually(phase, timeout=90, what="the job to succeed")
        except AssertionError as error:
            raise AssertionError(f"{error}\noperator log:\n{operator.log()[-3000:]}") from None
        pods = cluster.get("pods", "-n", jobs_namespace)["items"]
        assert len(pods) == 2  # admitted under `restricted`
        forbidden = [line for line in operator.log().splitlines() if "Forbidden" in line]
        assert not forbidden, forbidden[:3]
    finally:
        operator.kill()
        cluster.kubectl("delete", "namespace", jobs_namespace, "--wait=false")


def job_referencing(name: str, **spec) -> dict:
    return {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name},
            "spec": {"model": {"name": "m"}, "dataset": {"name": "d"},
                     "runPolicy": {"suspend": True}, **spec}}


def test_admission_policy_keeps_a_job_from_what_its_creator_cannot_reach(cluster, release,
                                                                         namespace):
    """alice may create FineTuneJobs and nothing else; through a job she must not read a
    Secret she may not get, tolerate every taint, land on the control plane or run
    unconfined. Checked by impersonating her on the real API server."""
    cluster.kubectl("create", "secret", "generic", "team-creds", "-n", namespace,
                    "--from-literal=AWS_ACCESS_KEY_ID=x")
    cluster.kubectl("create", "role", "ftj-creator", "-n", namespace, "--verb=create,get",
                    "--resource=finetunejobs.ftjob.dev")
    cluster.kubectl("create", "rolebinding", "alice-ftj", "-n", namespace,
                    "--role=ftj-creator", "--user=alice")

    def create_as(user: str | None, job: dict):
        """A server-side dry run: admission runs in full, nothing is stored."""
        impersonate = [f"--as={user}"] if user else []  # None: the cluster admin
        return cluster.kubectl("create", "--dry-run=server", *impersonate, "-n", namespace,
                               "-f", "-", input=yaml.safe_dump(job), check=False)

    secret_references = {
        "checkpoints": {"checkpoints": {"credentialsSecret": "team-creds"}},
        "output": {"output": {"credentialsSecret": "team-creds"}},
        "hub-token": {"output": {"pushToHub": {"repo": "o/m", "tokenSecret": "team-creds"}}},
        "env": {"podTemplate": {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {
            "name": "team-creds", "key": "AWS_ACCESS_KEY_ID"}}}]}},
        "volume": {"podTemplate": {"volumes": [{"name": "s", "secret": {
            "secretName": "team-creds"}}]}},
        "projected": {"podTemplate": {"volumes": [{"name": "p", "projected": {"sources": [
            {"secret": {"name": "team-creds"}}]}}]}},
        "pull-secret": {"podTemplate": {"imagePullSecrets": ["team-creds"]}},
    }
    # The API server enforces a new policy after it has synced it (about a second).
    eventually(lambda: create_as("alice", job_referencing(
        "probe", **secret_references["checkpoints"])).returncode != 0, timeout=30,
        what="the admission policy to be enforced")
    for kind, spec in secret_references.items():
        refused = create_as("alice", job_referencing(f"ref-{kind}", **spec))
        assert refused.returncode != 0, kind
        assert "Forbidden" in refused.stderr and "alice may not get" in refused.stderr, \
            (kind, refused.stderr)
    # Whoever may read the Secret may use it: the admin now, alice once she is allowed.
    assert create_as(None, job_referencing("by-admin", **secret_references["env"])
                     ).returncode == 0
    cluster.kubectl("create", "role", "read-creds", "-n", namespace, "--verb=get",
                    "--resource=secrets", "--resource-name=team-creds")
    cluster.kubectl("create", "rolebinding", "alice-creds", "-n", namespace,
                    "--role=read-creds", "--user=alice")
    for kind, spec in secret_references.items():
        admitted = eventually(lambda: (lambda r: r if r.returncode == 0 else None)(
            create_as("alice", job_referencing(f"ok-{kind}", **spec))), timeout=30,
            what=f"{kind} admitted once alice may read the Secret")
        assert admitted.returncode == 0
    # Placement and confinement the pods could not have on alice's own rights.
    for name, template, words in [
        ("tolerate-all", {"tolerations": [{"operator": "Exists"}]}, "tolerates every taint"),
        ("control-plane", {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
         "control plane"),
        ("control-plane-affinity", {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role.kubernetes.io/master",
                                       "operator": "Exists"}]}]}}}}, "control plane"),
        ("unconfined", {"annotations": {
            "container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"}},
         "unconfined"),
    ]:
        refused = create_as("alice", job_referencing(name, podTemplate=template))
        assert refused.returncode != 0 and words in refused.stderr, (name, refused.stderr)
    assert create_as("alice", job_referencing("spot", podTemplate={"tolerations": [
        {"key": "spot", "operator": "Exists"}]})).returncode == 0
    # A cluster that wants tolerate-all jobs says so in the chart.
    helm(cluster, "upgrade", "ftjob", str(CHART), "-n", release, "--reuse-values", "--set",
         "admissionPolicy.allowTolerateAll=true")
    eventually(lambda: create_as("alice", job_referencing("tolerate-all", podTemplate={
        "tolerations": [{"operator": "Exists"}]})).returncode == 0, timeout=30,
        what="tolerate-all admitted once allowed")


def test_upgrade_and_uninstall_keep_the_crd_and_the_jobs(cluster, tmp_path):
    namespace = restricted_namespace(cluster, f"c-ftjob-upgrade-{os.getpid()}")
    # The session's CRD was applied with kubectl: hand it to the release the way a cluster
    # admin adopts existing objects into Helm.
    crd_name = "crd/finetunejobs.ftjob.dev"
    cluster.kubectl("label", crd_name, "--overwrite", "app.kubernetes.io/managed-by=Helm")
    cluster.kubectl("annotate", crd_name, "--overwrite", "meta.helm.sh/release-name=ftjob",
                    f"meta.helm.sh/release-namespace={namespace}")
    helm(cluster, "install", "ftjob", str(CHART), "-n", namespace, "--wait", "--timeout",
         "120s")
    assert cluster.get(crd_name)["metadata"][
        "annotations"]["helm.sh/resource-policy"] == "keep"
    cluster.apply({"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
                   "metadata": {"name": "kept"},
                   "spec": {"model": {"name": "m"}, "dataset": {"files": {"train": "t.csv"}},
                            "checkpoints": {"uri": "s3://bkt/kept"},
                            "runPolicy": {"suspend": True}}}, namespace=namespace)
    before = cluster.get("deployment", "ftjob", "-n", namespace)
    helm(cluster, "upgrade", "ftjob", str(CHART), "-n", namespace, "--wait", "--timeout",
         "120s", "--reuse-values", "--set", "defaults.queueName=team-a")
    defaults = cluster.get("configmap", "ftjob-defaults", "-n", namespace)["data"]
    assert defaults["FTJOB_QUEUE_NAME"] == "team-a"
    after = cluster.get("deployment", "ftjob", "-n", namespace)
    checksum = "checksum/defaults"
    assert after["spec"]["template"]["metadata"]["annotations"][checksum] != \
        before["spec"]["template"]["metadata"]["annotations"][checksum]  # pods roll
    helm(cluster, "uninstall", "ftjob", "-n", namespace, "--wait")
    assert cluster.kubectl("get", "deployment", "ftjob", "-n", namespace,
                           check=False).returncode != 0
    assert cluster.kubectl("get", "crd", "finetunejobs.ftjob.dev", check=False).returncode == 0
    assert cluster.kubectl("get", "finetunejob", "kept", "-n", namespace,
                           check=False).returncode == 0
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
