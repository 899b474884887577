"""Bad input stops site.yml before its first write, naming the variable and the fix: the plan's checks (the
Ollama settings, settings that would be dropped) and the check play's server-side dry run of every object the
roles would write (what only the API server knows: label syntax, requests against limits).

Each case runs the real site.yml on the simulator, then reads the cluster: no namespace, no claim, no object.
"""

import json
import uuid

import pytest


@pytest.fixture(autouse=True)
def cluster_auth(monkeypatch, cluster):
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(cluster.kubeconfig))


def fresh_namespace():
    return f"t-{uuid.uuid4().hex[:8]}"


def converge(playbook, namespace, **variables):
    extra = {"ollama_namespace": namespace, "ollama_models": []}
    extra.update(variables)
    return playbook("site.yml", extra)


def failed_task(run):
    for play in run.report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task["hosts"].values():
                if result.get("failed"):
                    return play["play"]["name"], task["task"]["name"]
    return None


def nothing_written(cluster, namespace):
    assert cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0, f"{namespace} was created"
    claims = cluster.get("pvc", "-A")["items"]
    assert not [c for c in claims if c["metadata"]["namespace"] == namespace], claims
    assert not cluster.get("storageclasses", "-l", "app.kubernetes.io/managed-by=llmops.ollama")["items"]


BEFORE_ANY_WRITE = [
    # The plan (playbooks/preflight.yml): the Ollama settings as Ollama reads them.
    ("keep-alive-forever", {"ollama_workload_env": {"OLLAMA_KEEP_ALIVE": "forever"}},
     "ollama_workload_env", ["OLLAMA_KEEP_ALIVE 'forever' is not a duration", '"-1" for forever'],
     "Plan the Ollama deployment"),
    ("num-parallel-zero", {"ollama_workload_env": {"OLLAMA_NUM_PARALLEL": 0}},
     "ollama_workload_env", ["OLLAMA_NUM_PARALLEL 0 is not a whole number of at least 1"],
     "Plan the Ollama deployment"),
    # The check play's dry run: what the API server refuses.
    ("memory-limit-below-request", {"ollama_workload_resources": {"requests": {"cpu": "1", "memory": "8Gi"},
                                                                  "limits": {"cpu": "2", "memory": "4Gi"}}},
     "ollama_workload_resources", ['Invalid value: "8Gi": must be less than or equal to memory limit of 4Gi',
                                   "keep every request at or below its limit"],
     "Check the HA and workload settings before any change"),
    # The gate and the self-heal sidecar (initContainers[0]): the refusal names their own variables.
    ("gate-memory-limit-below-request",
     {"ollama_workload_gate_resources": {"requests": {"cpu": "50m", "memory": "512Mi"},
                                         "limits": {"cpu": "1", "memory": "256Mi"}}},
     "ollama_workload_gate_resources", ["- ollama_workload_gate_resources: ", "containers[1].resources.requests",
                                        "must be less than or equal to memory limit of 256Mi"],
     "Check the HA and workload settings before any change"),
    ("self-heal-memory-limit-below-request",
     {"ollama_workload_self_heal_resources": {"requests": {"cpu": "10m", "memory": "512Mi"},
                                              "limits": {"cpu": "500m", "memory": "256Mi"}}},
     "ollama_workload_self_heal_resources", ["- ollama_workload_self_heal_resources: ",
                                             "initContainers[0].resources.requests",
                                             "must be less than or equal to memory limit of 256Mi"],
     "Check the HA and workload settings before any change"),
    # What only the API server knows about the policies: a port out of range in a rule of the user's.
    ("egress-port-out-of-range",
     {"ollama_workload_extra_egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 70000}]}]},
     "ollama_workload_extra_egress", ["- ollama_workload_extra_egress: ", "ports[0].port",
                                      "write each rule as a NetworkPolicyEgressRule"],
     "Check the HA and workload settings before any change"),
    # The roles' argument specs (types and choices), checked for every role in the check play: before, a role's
    # spec was checked only when that role started, after storage had written the namespace and the claim.
    ("read-only-root-not-a-bool", {"ollama_workload_read_only_root_filesystem": "maybe"},
     "ollama_workload_read_only_root_filesystem", ["is of type", "Fix: give it the type and one of the choices that "
                                                   "roles/ollama_workload/README.md"],
     "Check the HA and workload settings before any change"),
    ("pod-security-level-not-a-choice", {"ollama_workload_pod_security_level": "strict"},
     "ollama_workload_pod_security_level", ["restricted, baseline, privileged", "Fix: "],
     "Check the HA and workload settings before any change"),
    ("storage-wait-timeout-not-a-number", {"storage_provisioner_wait_timeout": "soon"},
     "storage_provisioner_wait_timeout", ["roles/storage_provisioner/README.md"],
     "Check the HA and workload settings before any change"),
    # What a spec cannot say (settings_checks.py): a pattern, a retired setting.
    ("data-path-not-absolute", {"ollama_workload_data_path": "models"},
     "ollama_workload_data_path", ["ollama_workload_data_path must be an absolute path, got \"models\"",
                                   "Fix: set ollama_workload_data_path: /var/lib/ollama"],
     "Check the HA and workload settings before any change"),
    ("retired-ha-policy-gpu-quota", {"ha_policy_gpu_quota": "auto"},
     "ha_policy_gpu_quota", ["ha_policy_gpu_quota is retired", "Fix: set ollama_gpu_quota: \"auto\""],
     "Check the HA and workload settings before any change"),
    # The quota against the replicas: a decision of the plan.
    ("gpu-quota-below-the-replicas", {"ollama_gpu_quota": "0"},
     "ollama_gpu_quota", ['must be "", "auto" or a whole number of GPUs of at least 1', "set ollama_gpu_quota"],
     "Plan the Ollama deployment"),
    # Label syntax in the selectors: the plan's own check of the NetworkPolicies (exposure.py) names it first.
    ("invalid-label-key-in-pod-selector", {"ollama_workload_allowed_pods": [{"labels": {"app/web/ui": "x"}}]},
     "ollama_workload_allowed_pods", ["'app/web/ui'", "is not a DNS subdomain", "with valid label keys and values"],
     "Plan the Ollama deployment"),
    ("invalid-label-in-namespace-selector",
     {"ollama_workload_allowed_pods": [{"namespace": "open webui!", "labels": {"app": "webui"}}]},
     "ollama_workload_allowed_pods", ["namespace 'open webui!' is not a namespace name",
                                      "with valid label keys and values"],
     "Plan the Ollama deployment"),
]


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("variables, variable, fragments, play", [c[1:] for c in BEFORE_ANY_WRITE],
                         ids=[c[0] for c in BEFORE_ANY_WRITE])
def test_bad_input_stops_before_any_write(playbook, cluster, variables, variable, fragments, play):
    namespace = fresh_namespace()
    run = converge(playbook, namespace, **variables)
    assert run.rc != 0, run
    failure = str(run.failure)
    assert variable in failure and "Fix:" in failure, failure
    for fragment in fragments:
        assert fragment in failure, failure
    assert failed_task(run)[0] == play, failed_task(run)
    nothing_written(cluster, namespace)


@pytest.mark.profile("k3s")
def test_zone_spread_asked_on_nodes_without_zones_is_refused(playbook, cluster):
    # The k3s profile's GPU nodes carry no topology.kubernetes.io/zone label.
    namespace = fresh_namespace()
    run = converge(playbook, namespace, ollama_replicas=2, ollama_zone_spread=True)
    assert run.rc != 0, run
    assert "ollama_zone_spread is true but the eligible GPU nodes" in run.failure, run.failure
    assert "carry no topology.kubernetes.io/zone label" in run.failure and "Fix:" in run.failure
    assert "kubectl label node NODE topology.kubernetes.io/zone=ZONE" in run.failure
    nothing_written(cluster, namespace)


@pytest.mark.profile("k3s")
def test_the_dry_run_checks_an_existing_namespace_with_the_real_apply(playbook, cluster, namespace):
    # The namespace exists (an admin made it): the objects go through the apply itself, as a dry run.
    run = converge(playbook, namespace, ollama_workload_resources={"requests": {"memory": "8Gi"},
                                                                   "limits": {"memory": "4Gi"}})
    assert run.rc != 0 and "ollama_workload_resources" in run.failure, run
    (checked,) = [r for r in run.task_results("with a server-side dry run") if r.get("failed")]
    assert {c["checked_in"] for c in checked["checked"] if c["namespace"]} == {namespace}
    written = cluster.get("deployments,statefulsets,pvc,services,networkpolicies,serviceaccounts", "-n", namespace)
    # At most the ServiceAccount every namespace gets.
    assert {o["metadata"]["name"] for o in written["items"]} <= {"default"}, written


@pytest.mark.profile("k3s")
def test_a_first_run_checks_the_objects_of_a_namespace_not_yet_made_in_default(playbook, cluster):
    namespace = fresh_namespace()
    run = playbook("site.yml", {"ollama_namespace": namespace, "ollama_models": []}, check=True)
    assert run.rc == 0, run
    checks = run.task_results("with a server-side dry run")
    assert len(checks) == 3, checks
    checked = [c for result in checks for c in result["checked"]]
    assert {c["checked_in"] for c in checked if c["namespace"]} == {"default"}, json.dumps(checked)
    assert {c["kind"] for c in checked} >= {"Namespace", "Deployment", "Service", "NetworkPolicy",
                                            "PersistentVolumeClaim"}
    assert not any(c["refused"] for c in checked)
    nothing_written(cluster, namespace)
    assert not cluster.get("deployments,services", "-n", "default", "-l", "app.kubernetes.io/name=ollama")["items"]


@pytest.mark.profile("k3s")
def test_a_claim_template_change_of_an_existing_statefulset_is_refused_by_the_plan(playbook, cluster):
    # An earlier converge's StatefulSet (scaled to 0, so no pod or claim) with a claim template of another size.
    namespace = fresh_namespace()
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    labels = {"app.kubernetes.io/name": "ollama", "app.kubernetes.io/instance": "ollama"}
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "ollama", "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 0, "serviceName": "ollama-headless", "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "ollama", "image": "ollama/ollama:0.11.4"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "models"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                "resources": {"requests": {"storage": "123Gi"}}}}]}}
    cluster.apply(statefulset)
    before = cluster.get("statefulset", "ollama", "-n", namespace)["metadata"]["resourceVersion"]

    run = converge(playbook, namespace, ollama_replicas=2)
    assert run.rc != 0, run
    failure = str(run.failure)
    assert "ollama_claim_size" in failure and 'size "123Gi"' in failure, failure
    assert "delete statefulset ollama --cascade=orphan" in failure and "Fix:" in failure, failure
    assert failed_task(run)[0] == "Plan the Ollama deployment", failed_task(run)
    assert cluster.get("statefulset", "ollama", "-n", namespace)["metadata"]["resourceVersion"] == before
    assert not cluster.get("pvc", "-n", namespace)["items"]
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
