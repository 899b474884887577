"""The workload and HA roles through site.yml on the simulated cluster: where pods land, what the API server
admits, what a drain does, idempotence, check mode, uninstall, image upgrade and least privilege.

Every test runs the real playbooks (playbooks/site.yml and the runbooks) with ansible-playbook; the assertions
read the cluster with kubectl and Ollama through the API server's pod proxy.
"""

import http.client
import json
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"


@pytest.fixture(autouse=True)
def cluster_auth(monkeypatch, cluster):
    # Modules outside the module_defaults groups fall back to K8S_AUTH_KUBECONFIG, never ~/.kube/config.
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(cluster.kubeconfig))


@pytest.fixture(autouse=True)
def free_gpus(cluster, namespace):
    """The simulator has two GPUs: give them back before the next test instead of leaving it to the
    namespace deletion, which runs in the background."""
    yield
    cluster.kubectl("delete", "deployments,statefulsets", "--all", "-n", namespace, "--cascade=foreground",
                    "--timeout=120s", check=False, timeout=180)
    cluster.wait_for(lambda: not cluster.get("pods", "-n", namespace)["items"], timeout=120,
                     what=f"the pods of {namespace} to go")


def converge(playbook, namespace, check=False, diff=False, kubeconfig=None, **variables):
    # The namespace fixture creates the namespace as an admin would: hand its labels to the collection.
    extra = {"ollama_namespace": namespace, "ollama_models": [], "ollama_namespace_manage_labels": True}
    extra.update(variables)
    return playbook("site.yml", extra, check=check, diff=diff, kubeconfig=kubeconfig)


def live_pods(cluster, namespace):
    return [p for p in cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def running(cluster, namespace, count):
    def check():
        pods = live_pods(cluster, namespace)
        ok = len(pods) == count and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None
    return cluster.wait_for(check, timeout=120, what=f"{count} running Ollama pods")


def workload_objects(cluster, namespace):
    return cluster.get("deployments,statefulsets", "-n", namespace)["items"]


def report_lines(run):
    results = run.task_results("Report where each pod landed")
    assert results, run
    return results[-1]["msg"]


def assert_restricted_and_admitted(cluster, namespace, pod):
    labels = cluster.get("namespace", namespace)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["fsGroup"] == 10001
    assert [c["name"] for c in spec["containers"]] == ["ollama", "gate"]
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    # The same namespace refuses what the restricted level forbids: the admission is really on.
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root-probe", "namespace": namespace},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "securityContext": {"privileged": True}}]}}
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(privileged), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


def assert_gate(cluster, namespace, pod, run):
    """The gate container, its Secrets and ConfigMap, the hashes on the pod, and no key anywhere in the run."""
    gate = next(c for c in pod["spec"]["containers"] if c["name"] == "gate")
    assert gate["image"] == "docker.io/nginxinc/nginx-unprivileged:1.30.4"
    assert gate["command"] == ["nginx", "-c", "/etc/llmops-gate/nginx/nginx.conf", "-e", "stderr", "-g", "daemon off;"]
    assert gate["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert gate["readinessProbe"]["httpGet"]["path"] == "/llmops/readyz"
    assert gate["livenessProbe"]["httpGet"]["path"] == "/llmops/healthz"
    ollama = pod["spec"]["containers"][0]
    assert ollama["livenessProbe"]["httpGet"] == {"path": "/llmops/livez", "port": 8080, "scheme": "HTTP"}
    assert ollama["startupProbe"]["httpGet"]["path"] == "/llmops/readyz"
    assert ollama["readinessProbe"]["httpGet"] == {"path": "/llmops/readyz", "port": 8080, "scheme": "HTTP"}
    assert ollama["startupProbe"]["periodSeconds"] * ollama["startupProbe"]["failureThreshold"] >= 600
    annotations = pod["metadata"]["annotations"]
    assert re.match(r"^[0-9a-f]{64}$", annotations["llmops.ollama/gate-keys"])
    assert re.match(r"^[0-9a-f]{64}$", annotations["llmops.ollama/gate-config"])
    assert "nginx.conf" in cluster.get("configmap", f"{NAME}-gate", "-n", namespace)["data"]
    keys = cluster.gate_keys(namespace, NAME)
    assert len(keys["admin"]) == 43 and len(keys["clients"]) == 1  # generated once, kept
    for key in [keys["admin"]] + keys["clients"]:
        assert key not in run.stdout and key not in run.stderr
    # Without the admin header the gate refuses, even through the API server.
    refused = cluster.ollama(namespace, pod["metadata"]["name"], "/api/tags", headers={}, check=False)
    assert refused.get("http_status") == 401, refused
    return keys


SINGLE = [
    pytest.param({}, marks=pytest.mark.profile("k3s"), id="k3s"),
    pytest.param({"ollama_storage_install_local_path": True}, marks=pytest.mark.profile("baremetal"), id="baremetal"),
    pytest.param({"ollama_gpu_label_nodes": True}, marks=pytest.mark.profile("eks"), id="eks"),
]


@pytest.mark.parametrize("variables", SINGLE)
def test_one_replica_lands_on_a_gpu_node_with_its_claim_bound_and_mounted(playbook, cluster, namespace, variables):
    run = converge(playbook, namespace, **variables)
    assert run.rc == 0, run
    (pod,) = running(cluster, namespace, 1)
    node = pod["spec"]["nodeName"]
    assert node in cluster.gpu_nodes()
    assert any(node in line and pod["metadata"]["name"] in line for line in report_lines(run))

    deployment = cluster.get("deployment", NAME, "-n", namespace)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    container = pod["spec"]["containers"][0]
    gpu = {"nvidia.com/gpu": "1"}
    assert container["resources"]["requests"].items() >= gpu.items()
    assert container["resources"]["limits"].items() >= gpu.items()
    assert container["image"] == "docker.io/ollama/ollama:0.32.15"
    if cluster.profile == "k3s":
        assert pod["spec"]["runtimeClassName"] == "nvidia"
    else:
        assert "runtimeClassName" not in pod["spec"]

    claim_name = next(v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                      if "persistentVolumeClaim" in v)
    claim = cluster.get("pvc", claim_name, "-n", namespace)
    assert claim["status"]["phase"] == "Bound"
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert env["OLLAMA_MODELS"].startswith(mount["mountPath"] + "/")
    # Ollama on loopback only, behind the gate: the pod's one listener on the pod IP.
    assert env["OLLAMA_HOST"] == "127.0.0.1:11434" and "ports" not in container
    keys = assert_gate(cluster, namespace, pod, run)
    # Ollama runs in the pod, on the claim, and answers through the API server and the gate.
    assert "version" in cluster.ollama(namespace, pod["metadata"]["name"], "/api/version")
    assert_restricted_and_admitted(cluster, namespace, pod)

    service = cluster.get("service", NAME, "-n", namespace)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 11434
    assert service["spec"]["ports"][0]["targetPort"] == "http"  # the gate's port
    assert cluster.get("serviceaccount", NAME, "-n", namespace)["automountServiceAccountToken"] is False
    assert cluster.kubectl("get", "pdb", NAME, "-n", namespace, check=False).returncode != 0

    again = converge(playbook, namespace, **variables)
    assert again.rc == 0 and again.changed == 0, again
    # The generated keys are kept, so the pod did not roll.
    assert cluster.gate_keys(namespace, NAME) == keys
    assert running(cluster, namespace, 1)[0]["metadata"]["uid"] == pod["metadata"]["uid"]
    dry = converge(playbook, namespace, check=True, diff=True, **variables)
    assert dry.rc == 0 and dry.changed == 0, dry


@pytest.mark.profile("k3s")
def test_two_replicas_spread_and_a_drain_evicts_one_while_the_budget_blocks_a_second(playbook, cluster, namespace):
    run = converge(playbook, namespace, ollama_replicas=2, ollama_gpu_quota="auto")
    assert run.rc == 0, run
    pods = running(cluster, namespace, 2)
    nodes = sorted(p["spec"]["nodeName"] for p in pods)
    assert len(set(nodes)) == 2 and set(nodes) <= set(cluster.gpu_nodes())
    sts = cluster.get("statefulset", NAME, "-n", namespace)
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    for index in range(2):
        assert cluster.get("pvc", f"models-{NAME}-{index}", "-n", namespace)["status"]["phase"] == "Bound"
    pdb = cluster.get("pdb", NAME, "-n", namespace)
    assert pdb["spec"]["minAvailable"] == 1
    quota = cluster.get("resourcequota", f"{NAME}-gpu", "-n", namespace)
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "2"
    anti = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"

    first = next(p for p in pods if p["metadata"]["name"].endswith("-0"))
    first_node = first["spec"]["nodeName"]
    second_node = next(n for n in nodes if n != first_node)
    cluster.wait_for(lambda: cluster.get("pdb", NAME, "-n", namespace)["status"].get("disruptionsAllowed") == 1,
                     what="the budget to allow one disruption")
    try:
        drained = cluster.kubectl("drain", first_node, "--ignore-daemonsets", "--delete-emptydir-data",
                                  f"--pod-selector={SELECTOR}", "--timeout=90s", check=False, timeout=150)
        assert drained.returncode == 0, drained.stderr
        assert f"pod/{first['metadata']['name']} evicted" in drained.stdout
        blocked = cluster.kubectl("drain", second_node, "--ignore-daemonsets", "--delete-emptydir-data",
                                  f"--pod-selector={SELECTOR}", "--timeout=10s", check=False, timeout=60)
        assert blocked.returncode != 0
        assert "disruption budget" in blocked.stderr
        still = [p for p in live_pods(cluster, namespace) if p["spec"].get("nodeName") == second_node]
        assert still and still[0]["status"]["phase"] == "Running"
        # The runbook sees the same budget and stops before cordoning anything.
        cluster.kubectl("uncordon", second_node)
        runbook = playbook("drain.yml", {"ollama_namespace": namespace, "ollama_drain_node": second_node})
        assert runbook.rc != 0 and "PodDisruptionBudget" in runbook.failure, runbook
        assert not cluster.get("node", second_node)["spec"].get("unschedulable")
    finally:
        cluster.kubectl("uncordon", first_node, check=False)
        cluster.kubectl("uncordon", second_node, check=False)
    running(cluster, namespace, 2)


@pytest.mark.profile("k3s")
def test_drain_runbook_evicts_one_replica_and_uncordons(playbook, cluster, namespace):
    assert converge(playbook, namespace, ollama_replicas=2).rc == 0
    pods = running(cluster, namespace, 2)
    node = pods[0]["spec"]["nodeName"]
    cluster.wait_for(lambda: cluster.get("pdb", NAME, "-n", namespace)["status"].get("disruptionsAllowed") == 1,
                     what="the budget to allow one disruption")
    try:
        run = playbook("drain.yml", {"ollama_namespace": namespace, "ollama_drain_node": node})
        assert run.rc == 0, run
        assert cluster.get("node", node)["spec"].get("unschedulable") is True
        assert not [p for p in live_pods(cluster, namespace) if p["spec"].get("nodeName") == node]
        report = run.task_results("Report where the Ollama pods run now")[0]["msg"]
        # local-path pins the evicted replica to its node: the runbook says so instead of waiting forever.
        assert any("cannot run again" in line for line in report), report
        back = playbook("drain.yml", {"ollama_namespace": namespace, "ollama_drain_node": node,
                                      "ollama_drain_uncordon": True})
        assert back.rc == 0, back
        assert not cluster.get("node", node)["spec"].get("unschedulable")
    finally:
        cluster.kubectl("uncordon", node, check=False)
    running(cluster, namespace, 2)


@pytest.mark.profile("eks")
def test_two_replicas_land_on_two_gpu_nodes_in_two_zones_on_eks(playbook, cluster, namespace):
    run = converge(playbook, namespace, ollama_replicas=2, ollama_gpu_label_nodes=True)
    assert run.rc == 0, run
    pods = running(cluster, namespace, 2)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) == 2 and nodes <= set(cluster.gpu_nodes())
    zones = {cluster.get("node", n)["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
    assert zones == {"us-east-1a", "us-east-1b"}
    spread = cluster.get("statefulset", NAME, "-n", namespace)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread[0]["whenUnsatisfiable"] == "DoNotSchedule"
    for index in range(2):
        claim = cluster.get("pvc", f"models-{NAME}-{index}", "-n", namespace)
        assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "gp3"
    again = converge(playbook, namespace, ollama_replicas=2, ollama_gpu_label_nodes=True)
    assert again.rc == 0 and again.changed == 0, again


BAD_INPUT = [
    ({"ollama_replicas": 3}, "ollama_replicas"),
    ({"ollama_replicas": 2, "ollama_storage_mode": "shared"}, "ollama_storage_mode"),
    ({"ollama_gpus_per_pod": 0}, "ollama_gpus_per_pod"),
    ({"ollama_image_tag": "0.1.30"}, "ollama_image_tag"),
    ({"ollama_ingress_enabled": True, "ollama_ingress_host": "ollama.example.com", "ollama_ingress_auth_type": "none"},
     "ollama_ingress_auth_type"),
    ({"ollama_workload_env": {"OLLAMA_HOST": "0.0.0.0:8080"}}, "ollama_workload_env"),
    ({"ollama_workload_ingress_paths": ["/api"], "ollama_ingress_enabled": True, "ollama_ingress_host": "o.example.com",
      "ollama_workload_ingress_controller_namespace": "kube-system"}, "ollama_workload_ingress_paths"),
    ({"ollama_gpu_quota": 1, "ollama_replicas": 2}, "ollama_gpu_quota"),
    # the gate's keys and settings
    ({"ollama_api_keys": ["short-key-" + "s" * 12]}, "ollama_api_keys"),
    ({"ollama_api_keys": ["twice-" + "t" * 40, "other-" + "o" * 40, "twice-" + "t" * 40]}, "ollama_api_keys"),
    ({"ollama_api_keys_generate": False}, "ollama_api_keys"),
    ({"ollama_gate_open_admin_endpoints": ["pull", "upload"]}, "ollama_gate_open_admin_endpoints"),
    ({"ollama_workload_startup_seconds": 120}, "ollama_workload_startup_seconds"),
]


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("variables,variable", BAD_INPUT, ids=[v for _, v in BAD_INPUT])
def test_bad_input_stops_before_the_workload_is_written(playbook, cluster, namespace, variables, variable):
    run = converge(playbook, namespace, **variables)
    assert run.rc != 0
    assert variable in str(run.failure) and "Fix:" in str(run.failure), run
    assert workload_objects(cluster, namespace) == []
    written = cluster.get("pvc,services,poddisruptionbudgets,resourcequotas,networkpolicies,ingresses,secrets",
                          "-n", namespace)
    assert written["items"] == []
    for key in variables.get("ollama_api_keys", []):
        assert key not in run.stdout and key not in run.stderr  # named by position only


@pytest.mark.profile("k3s")
def test_workload_without_the_scheduling_stanza_stops_before_any_write(playbook, cluster, namespace):
    # Without ha_policy's stanza the pods would carry no GPU node affinity or tolerations.
    run = playbook("../tests/integration/collection/workload-without-ha-policy.yml", {"ollama_namespace": namespace})
    assert run.rc != 0 and "ollama_workload_scheduling is missing" in run.failure and "Fix:" in run.failure, run
    assert "llmops.ollama.ha_policy" in run.failure
    assert workload_objects(cluster, namespace) == []
    assert cluster.get("services,networkpolicies", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_check_diff_reports_a_change_truthfully_and_changes_nothing(playbook, cluster, namespace):
    assert converge(playbook, namespace).rc == 0
    before = cluster.get("deployment", NAME, "-n", namespace)
    dry = converge(playbook, namespace, check=True, diff=True, ollama_workload_env={"OLLAMA_KEEP_ALIVE": "1h"})
    assert dry.rc == 0 and dry.changed >= 1, dry
    (apply_result,) = dry.task_results("Apply the namespace, ServiceAccount")
    changed = {r["kind"]: r["changed"] for r in apply_result["results"]}
    assert changed.pop("Deployment") and not any(changed.values()), apply_result["results"]
    (deployment_diff,) = apply_result["diff"]
    assert deployment_diff["after"]["kind"] == "Deployment" and '"1h"' in json.dumps(deployment_diff["after"])
    assert '"1h"' not in json.dumps(deployment_diff["before"])
    after = cluster.get("deployment", NAME, "-n", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    real = converge(playbook, namespace, ollama_workload_env={"OLLAMA_KEEP_ALIVE": "1h"})
    assert real.rc == 0 and real.changed >= 1, real
    env = cluster.get("deployment", NAME, "-n", namespace)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OLLAMA_KEEP_ALIVE", "value": "1h"} in env
    settled = converge(playbook, namespace, check=True, diff=True, ollama_workload_env={"OLLAMA_KEEP_ALIVE": "1h"})
    assert settled.rc == 0 and settled.changed == 0, settled


@pytest.mark.profile("k3s")
def test_check_diff_on_a_fresh_namespace_reports_the_creates_and_writes_nothing(playbook, cluster):
    fresh = "t-fresh-check"
    dry = converge(playbook, fresh, check=True, diff=True)
    assert dry.rc == 0 and dry.changed >= 1, dry
    (apply_result,) = dry.task_results("Apply the namespace, ServiceAccount")
    assert {r["kind"] for r in apply_result["results"] if r["changed"]} >= {"Namespace", "Deployment", "Service"}
    (storage,) = dry.task_results("create the claim that holds the models")
    claims = [r for r in storage["results"] if r["kind"] == "PersistentVolumeClaim"]
    assert storage["changed"] and [c["changed"] for c in claims] == [True], storage
    assert cluster.kubectl("get", "namespace", fresh, check=False).returncode != 0


@pytest.mark.profile("k3s")
def test_uninstall_keeps_the_claims_unless_purged(playbook, cluster, namespace):
    assert converge(playbook, namespace, ollama_replicas=2).rc == 0
    running(cluster, namespace, 2)
    run = playbook("uninstall.yml", {"ollama_namespace": namespace})
    assert run.rc == 0, run
    assert workload_objects(cluster, namespace) == []
    assert cluster.get("services,poddisruptionbudgets,networkpolicies", "-n", namespace)["items"] == []
    assert live_pods(cluster, namespace) == []
    claims = sorted(c["metadata"]["name"] for c in cluster.get("pvc", "-n", namespace)["items"])
    assert claims == [f"models-{NAME}-0", f"models-{NAME}-1"]
    # The gate's configuration and admin key go; the client keys stay for the next install.
    assert [s["metadata"]["name"] for s in cluster.get("secrets", "-n", namespace)["items"]] == [f"{NAME}-api-keys"]
    assert cluster.kubectl("get", "configmap", f"{NAME}-gate", "-n", namespace, check=False).returncode != 0
    purged = playbook("uninstall.yml", {"ollama_namespace": namespace, "ollama_purge": True})
    assert purged.rc == 0, purged
    assert cluster.get("pvc", "-n", namespace)["items"] == []
    assert cluster.get("secrets", "-n", namespace)["items"] == []


def ready_endpoints(cluster, namespace):
    slices = cluster.get("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={NAME}")["items"]
    return sum(1 for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))


def gate_status(pod_ip, key):
    """The status of /api/tags asked of a pod's gate directly, as a client with this key."""
    conn = http.client.HTTPConnection(pod_ip, 8080, timeout=10)
    try:
        conn.request("GET", "/api/tags", headers={"Authorization": f"Bearer {key}"})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.profile("k3s")
def test_key_rotation_with_two_replicas_keeps_a_ready_endpoint_throughout(playbook, cluster, namespace):
    old_key, new_key = "rotate-old-" + "o" * 32, "rotate-new-" + "n" * 32
    # No NetworkPolicy here: the test asks the gates from the host, as a client of the pod network.
    settings = {"ollama_replicas": 2, "ollama_workload_network_policy": False}
    first = converge(playbook, namespace, ollama_api_keys=[old_key], **settings)
    assert first.rc == 0, first
    before = {p["metadata"]["name"]: p for p in running(cluster, namespace, 2)}
    direct = not cluster.external
    if direct:
        assert {gate_status(p["status"]["podIP"], old_key) for p in before.values()} == {200}
        assert {gate_status(p["status"]["podIP"], new_key) for p in before.values()} == {401}

    samples, done = [], threading.Event()

    def watch():
        while not done.is_set():
            samples.append(ready_endpoints(cluster, namespace))
            time.sleep(0.5)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        rotated = converge(playbook, namespace, ollama_api_keys=[new_key], **settings)
    finally:
        done.set()
        watcher.join(timeout=30)
    assert rotated.rc == 0 and rotated.changed > 0, rotated
    assert samples and min(samples) >= 1, samples
    after = running(cluster, namespace, 2)
    assert not {p["metadata"]["uid"] for p in after} & {p["metadata"]["uid"] for p in before.values()}
    assert {p["metadata"]["annotations"]["llmops.ollama/gate-keys"] for p in after} != {
        p["metadata"]["annotations"]["llmops.ollama/gate-keys"] for p in before.values()}
    assert cluster.gate_keys(namespace, NAME)["clients"] == [new_key]
    if direct:
        assert {gate_status(p["status"]["podIP"], new_key) for p in after} == {200}
        assert {gate_status(p["status"]["podIP"], old_key) for p in after} == {401}
    for key in (old_key, new_key):
        assert key not in first.stdout + rotated.stdout


UPGRADES = [
    pytest.param({}, marks=pytest.mark.profile("k3s"), id="k3s-local-path"),
    pytest.param({"ollama_gpu_label_nodes": True}, marks=pytest.mark.profile("eks"), id="eks-gp3"),
]


@pytest.mark.parametrize("variables", UPGRADES)
def test_image_upgrade_rolls_without_multi_attach_and_keeps_the_models(playbook, cluster, namespace, variables):
    # One RWO claim pinned to a node (local-path) or a zone (EBS) whose only GPU the old pod holds: a surge pod
    # could never start there, so a RollingUpdate would deadlock; the plan's Recreate must finish.
    model = cluster.model("tiny-a")
    # The model is pulled by hand, not declared: the egress policy admits only declared registries, so open this one.
    host, port = model.split("/", 1)[0].rsplit(":", 1)
    variables = dict(variables, ollama_workload_extra_egress=[
        {"to": [{"ipBlock": {"cidr": f"{host}/32"}}], "ports": [{"port": int(port), "protocol": "TCP"}]}])
    assert converge(playbook, namespace, ollama_image_tag="0.32.14", **variables).rc == 0
    (old,) = running(cluster, namespace, 1)
    pulled = cluster.ollama(namespace, old["metadata"]["name"], "/api/pull",
                            {"model": model, "insecure": True, "stream": False})
    assert pulled.get("status") == "success", pulled
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in old["spec"]["volumes"] if "persistentVolumeClaim" in v)
    volume = cluster.get("pvc", claim, "-n", namespace)["spec"]["volumeName"]

    run = playbook("upgrade.yml", dict({"ollama_namespace": namespace, "ollama_models": [],
                                        "ollama_image_tag": "0.32.15", "ollama_namespace_manage_labels": True},
                                       **variables))
    assert run.rc == 0, run
    (new,) = running(cluster, namespace, 1)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"]["containers"][0]["image"] == "docker.io/ollama/ollama:0.32.15"
    assert cluster.get("deployment", NAME, "-n", namespace)["spec"]["strategy"]["type"] == "Recreate"
    assert cluster.get("pvc", claim, "-n", namespace)["spec"]["volumeName"] == volume
    tags = cluster.ollama(namespace, new["metadata"]["name"], "/api/tags")
    assert any(m["name"] == model for m in tags["models"]), tags
    events = cluster.get("events", "-n", namespace)["items"]
    assert not [e for e in events if "Multi-Attach" in e.get("message", "")]


def rbac_objects(namespace):
    """The Role, ClusterRole and bindings docs/rbac.md gives, for the namespace and the user sim-user."""
    text = (REPO / "docs" / "rbac.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks, "docs/rbac.md has no yaml block"
    objects = [o for block in blocks for o in yaml.safe_load_all(block) if o]
    rendered = json.loads(json.dumps(objects).replace("OLLAMA_NAMESPACE", namespace).replace("OLLAMA_USER", "sim-user"))
    return rendered


@pytest.mark.profile("k3s")
def test_site_runs_as_a_user_with_only_the_documented_rbac(playbook, cluster, namespace, monkeypatch):
    if not cluster.user_kubeconfig:
        pytest.skip("no non-admin kubeconfig (set LLMOPS_TEST_USER_KUBECONFIG)")
    user = str(cluster.user_kubeconfig)
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", user)
    denied = converge(playbook, namespace, kubeconfig=user)
    assert denied.rc != 0 and "403" in json.dumps(denied.report), denied
    for obj in rbac_objects(namespace):
        cluster.apply(obj)
    try:
        # The simulator's Ollama runs on the CPU: verification must accept that.
        models = {"ollama_models": [{"name": cluster.model("tiny-a"), "size": 330043}], "ollama_verify_allow_cpu": True}
        run = converge(playbook, namespace, kubeconfig=user, ollama_replicas=2, **models)
        assert run.rc == 0, run
        running(cluster, namespace, 2)
        again = converge(playbook, namespace, kubeconfig=user, ollama_replicas=2, **models)
        assert again.rc == 0 and again.changed == 0, again
        gone = playbook("uninstall.yml", {"ollama_namespace": namespace}, kubeconfig=user)
        assert gone.rc == 0, gone
    finally:
        for obj in rbac_objects(namespace):
            if obj["kind"].startswith("Cluster"):
                cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], check=False)
