"""The simulated cluster behaves like a real GPU cluster where the collection's promises depend on it."""

import json

import pytest

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_pod(name, namespace, gpus=1, labels=None, claim=None):
    spec = {
        "tolerations": [GPU_TOLERATION],
        "containers": [{"name": "c", "image": "registry.invalid/app:1",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
    }
    if claim:
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}}, "spec": spec}


def pod_phase_and_node(cluster, namespace, name):
    pod = cluster.get("pod", name, "-n", namespace)
    return pod["status"].get("phase"), pod["spec"].get("nodeName")


def scheduling_failure(cluster, namespace, name):
    events = cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return " ".join(e["message"] for e in events if e["reason"] == "FailedScheduling")


def test_gpu_pods_land_only_on_gpu_nodes_and_wait_when_gpus_run_out(cluster, namespace):
    gpu_nodes = cluster.gpu_nodes()
    assert len(gpu_nodes) == 2
    names = [f"gpu-{i}" for i in range(3)]
    for name in names:
        cluster.create(gpu_pod(name, namespace))
    cluster.wait_for(lambda: sum(pod_phase_and_node(cluster, namespace, n)[0] == "Running" for n in names) == 2,
                     what="two GPU pods running")
    placed = {n: pod_phase_and_node(cluster, namespace, n) for n in names}
    running = [node for phase, node in placed.values() if phase == "Running"]
    assert sorted(running) == sorted(gpu_nodes)
    pending = [n for n, (phase, _) in placed.items() if phase == "Pending"]
    assert len(pending) == 1
    message = cluster.wait_for(lambda: scheduling_failure(cluster, namespace, pending[0]), what="FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in message


def test_required_anti_affinity_places_one_replica_per_gpu_node(cluster, namespace):
    template = gpu_pod("x", namespace, labels={"app": "spread"})
    template["spec"]["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": "kubernetes.io/hostname"}]},
    }
    # Ask for no GPU so that only the anti-affinity can keep the third replica out.
    template["spec"]["containers"][0]["resources"] = {}
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "spread", "namespace": namespace},
                   "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "spread"}},
                            "template": {"metadata": {"labels": {"app": "spread"}}, "spec": template["spec"]}}})

    def pods():
        return cluster.get("pods", "-n", namespace, "-l", "app=spread")["items"]
    cluster.wait_for(lambda: sum(p["status"].get("phase") == "Running" for p in pods()) == 2, what="two replicas")
    items = pods()
    nodes = sorted(p["spec"]["nodeName"] for p in items if p["status"].get("phase") == "Running")
    assert nodes == sorted(cluster.gpu_nodes())
    pending = [p["metadata"]["name"] for p in items if p["status"].get("phase") == "Pending"]
    assert len(pending) == 1
    message = cluster.wait_for(lambda: scheduling_failure(cluster, namespace, pending[0]), what="FailedScheduling")
    assert "anti-affinity" in message


def test_eviction_that_breaks_a_disruption_budget_is_refused(cluster, namespace):
    template = gpu_pod("x", namespace, labels={"app": "guarded"})
    template["spec"]["containers"][0]["resources"] = {}
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "guarded", "namespace": namespace},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "guarded"}},
                            "template": {"metadata": {"labels": {"app": "guarded"}}, "spec": template["spec"]}}})
    cluster.apply({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "guarded", "namespace": namespace},
                   "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}})
    cluster.wait_for(lambda: cluster.get("pdb", "guarded", "-n", namespace).get("status", {}).get("currentHealthy") == 2,
                     what="the budget to see two healthy pods")
    pod = cluster.get("pods", "-n", namespace, "-l", "app=guarded")["items"][0]["metadata"]["name"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    refused = cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                              input=json.dumps(eviction), check=False)
    assert refused.returncode != 0
    assert "429" in refused.stderr or "disruption budget" in refused.stderr
    # Once the budget allows one disruption, the same eviction goes through.
    cluster.kubectl("patch", "pdb", "guarded", "-n", namespace, "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    cluster.wait_for(lambda: cluster.get("pdb", "guarded", "-n", namespace)["status"].get("disruptionsAllowed") == 1,
                     what="one allowed disruption")
    cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                    input=json.dumps(eviction))


def test_local_path_claim_binds_after_scheduling_and_pins_its_volume_to_that_node(cluster, namespace):
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    claim = cluster.get("pvc", "models", "-n", namespace)
    assert claim["spec"]["storageClassName"] == "local-path"  # the default class was applied
    import time
    time.sleep(2)
    assert cluster.get("pvc", "models", "-n", namespace)["status"]["phase"] == "Pending"
    cluster.create(gpu_pod("user", namespace, claim="models"))
    cluster.wait_for(lambda: cluster.get("pvc", "models", "-n", namespace)["status"]["phase"] == "Bound", what="Bound")
    node = cluster.wait_for(lambda: pod_phase_and_node(cluster, namespace, "user")[1], what="pod scheduled")
    pv = cluster.get("pv", cluster.get("pvc", "models", "-n", namespace)["spec"]["volumeName"])
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"


def test_local_path_refuses_read_write_many(cluster, namespace):
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared", "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    cluster.create(gpu_pod("user", namespace, claim="shared"))

    def failure():
        events = cluster.get("events", "-n", namespace, "--field-selector", "involvedObject.name=shared")["items"]
        return [e["message"] for e in events if e["reason"] == "ProvisioningFailed"]
    assert "does not support access mode(s) ReadWriteMany" in cluster.wait_for(failure, what="ProvisioningFailed")[0]
    assert cluster.get("pvc", "shared", "-n", namespace)["status"]["phase"] == "Pending"


def test_restricted_pod_security_rejects_a_privileged_pod(cluster, namespace):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = gpu_pod("root", namespace)
    pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    result = cluster.create(pod, check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr and "restricted" in result.stderr


def test_non_admin_user_is_denied_what_its_role_does_not_grant(cluster, namespace):
    if cluster.user_kubeconfig is None:
        pytest.skip("no non-admin kubeconfig given (LLMOPS_TEST_USER_KUBECONFIG)")
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "pod-reader", "namespace": namespace},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "pod-reader", "namespace": namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                   "subjects": [{"kind": "User", "name": "sim-user", "apiGroup": "rbac.authorization.k8s.io"}]})
    user = cluster.user_kubeconfig
    cluster.wait_for(lambda: cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=user, check=False).returncode == 0,
                     what="the binding to take effect")
    for args in (["get", "secrets", "-n", namespace], ["get", "pods", "-n", "default"],
                 ["create", "configmap", "x", "-n", namespace]):
        denied = cluster.kubectl(*args, kubeconfig=user, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), args
