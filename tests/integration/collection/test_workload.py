"""The workload and HA roles through site.yml on the simulated cluster: where pods land, what the API server
admits, what a drain does, idempotence, check mode, uninstall, image upgrade and least privilege.

Every test runs the real playbooks (playbooks/site.yml and the runbooks) with ansible-playbook; the assertions
read the cluster with kubectl and Ollama through the API server's pod proxy.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"
ADMIN_ENDPOINTS = ("/api/pull", "/api/push", "/api/create", "/api/delete", "/api/copy", "/api/blobs")


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
    extra = {"ollama_namespace": namespace, "ollama_models": []}
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
    container = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["fsGroup"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    # The same namespace refuses what the restricted level forbids: the admission is really on.
    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root-probe", "namespace": namespace},
                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                           "securityContext": {"privileged": True}}]}}
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(privileged), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


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
    assert container["image"] == "docker.io/ollama/ollama:0.11.4"
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
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434"
    # Ollama runs in the pod, on the claim, and answers through the API server.
    assert "version" in cluster.ollama(namespace, pod["metadata"]["name"], "/api/version")
    assert_restricted_and_admitted(cluster, namespace, pod)

    service = cluster.get("service", NAME, "-n", namespace)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 11434
    assert cluster.get("serviceaccount", NAME, "-n", namespace)["automountServiceAccountToken"] is False
    assert cluster.kubectl("get", "pdb", NAME, "-n", namespace, check=False).returncode != 0

    again = converge(playbook, namespace, **variables)
    assert again.rc == 0 and again.changed == 0, again
    dry = converge(playbook, namespace, check=True, diff=True, **variables)
    assert dry.rc == 0 and dry.changed == 0, dry


@pytest.mark.profile("k3s")
def test_two_replicas_spread_and_a_drain_evicts_one_while_the_budget_blocks_a_second(playbook, cluster, namespace):
    run = converge(playbook, namespace, ollama_replicas=2, ha_policy_gpu_quota="auto")
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
      "ollama_ingress_auth_secret": "basic-auth"}, "ollama_workload_ingress_paths"),
    ({"ha_policy_gpu_quota": 1, "ollama_replicas": 2}, "ha_policy_gpu_quota"),
]


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("variables,variable", BAD_INPUT, ids=[v for _, v in BAD_INPUT])
def test_bad_input_stops_before_the_workload_is_written(playbook, cluster, namespace, variables, variable):
    run = converge(playbook, namespace, **variables)
    assert run.rc != 0
    assert variable in str(run.failure) and "Fix:" in str(run.failure), run
    assert workload_objects(cluster, namespace) == []
    written = cluster.get("pvc,services,poddisruptionbudgets,resourcequotas,networkpolicies,ingresses", "-n", namespace)
    assert written["items"] == []


@pytest.mark.profile("k3s")
def test_workload_without_the_scheduling_stanza_stops_before_any_write(playbook, cluster, namespace):
    # Without ha_policy's stanza the pods would carry no GPU node affinity or tolerations.
    run = playbook("../tests/integration/collection/workload-without-ha-policy.yml", {"ollama_namespace": namespace})
    assert run.rc != 0 and "ollama_workload_scheduling is missing" in run.failure and "Fix:" in run.failure, run
    assert "llmops.ollama.ha_policy" in run.failure
    assert workload_objects(cluster, namespace) == []
    assert cluster.get("services,networkpolicies", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_missing_basic_auth_secret_stops_before_the_workload_is_written(playbook, cluster, namespace):
    run = converge(playbook, namespace, ollama_ingress_enabled=True, ollama_ingress_host="ollama.example.com",
                   ollama_ingress_auth_secret="nope")
    assert run.rc != 0 and "ollama_ingress_auth_secret nope does not exist" in run.failure, run
    assert workload_objects(cluster, namespace) == []


@pytest.mark.profile("k3s")
def test_network_policy_and_ingress_are_what_the_user_asked_for(playbook, cluster, namespace):
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "basic-auth", "--from-literal=auth=u:$apr1$x$y")
    asked = {"ollama_ingress_enabled": True, "ollama_ingress_host": "ollama.example.com",
             "ollama_ingress_auth_secret": "basic-auth", "ollama_ingress_class_name": "nginx",
             "ollama_ingress_tls_secret": "ollama-tls",
             "ollama_workload_allowed_namespaces": ["open-webui"],
             "ollama_workload_allowed_pods": [{"labels": {"app": "batch"}}, {"namespace": "apps", "labels": {"app": "rag"}}]}
    run = converge(playbook, namespace, **asked)
    assert run.rc == 0, run

    ingress = cluster.get("ingress", NAME, "-n", namespace)
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert notes["nginx.ingress.kubernetes.io/auth-secret"] == "basic-auth"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["ollama.example.com"], "secretName": "ollama-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "ollama.example.com"
    paths = [p["path"] for p in rule["http"]["paths"]]
    assert "/api/chat" in paths and "/v1" in paths
    for path in paths:
        assert path != "/" and not any(path.startswith(admin) or admin.startswith(path + "/") for admin in ADMIN_ENDPOINTS)
    assert all(p["backend"]["service"]["name"] == NAME for p in rule["http"]["paths"])

    policy = cluster.get("networkpolicy", f"{NAME}-ingress", "-n", namespace)["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress"]
    (allowed,) = policy["ingress"]
    assert allowed["ports"] == [{"port": 11434, "protocol": "TCP"}]
    sources = allowed["from"]
    assert {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                                        "values": ["open-webui"]}]}} in sources
    assert {"podSelector": {"matchLabels": {"app": "batch"}}} in sources
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}},
            "podSelector": {"matchLabels": {"app": "rag"}}} in sources
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in sources
    assert len(sources) == 4

    external = converge(playbook, namespace, **dict(asked, ollama_ingress_auth_type="external",
                                                    ollama_ingress_auth_url="https://auth.example.com/oauth2/auth",
                                                    ollama_ingress_open_admin_endpoints=True))
    assert external.rc == 0, external
    ingress = cluster.get("ingress", NAME, "-n", namespace)
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"] == "https://auth.example.com/oauth2/auth"
    assert "nginx.ingress.kubernetes.io/auth-type" not in notes
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/"]

    closed = converge(playbook, namespace, ollama_workload_network_policy=False)
    assert closed.rc == 0, closed
    assert cluster.get("ingresses,networkpolicies", "-n", namespace)["items"] == []


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
    purged = playbook("uninstall.yml", {"ollama_namespace": namespace, "ollama_purge": True})
    assert purged.rc == 0, purged
    assert cluster.get("pvc", "-n", namespace)["items"] == []


UPGRADES = [
    pytest.param({}, marks=pytest.mark.profile("k3s"), id="k3s-local-path"),
    pytest.param({"ollama_gpu_label_nodes": True}, marks=pytest.mark.profile("eks"), id="eks-gp3"),
]


@pytest.mark.parametrize("variables", UPGRADES)
def test_image_upgrade_rolls_without_multi_attach_and_keeps_the_models(playbook, cluster, namespace, variables):
    # One RWO claim pinned to a node (local-path) or a zone (EBS) whose only GPU the old pod holds: a surge pod
    # could never start there, so a RollingUpdate would deadlock; the plan's Recreate must finish.
    assert converge(playbook, namespace, **variables).rc == 0
    (old,) = running(cluster, namespace, 1)
    model = cluster.model("tiny-a")
    pulled = cluster.ollama(namespace, old["metadata"]["name"], "/api/pull",
                            {"model": model, "insecure": True, "stream": False})
    assert pulled.get("status") == "success", pulled
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in old["spec"]["volumes"] if "persistentVolumeClaim" in v)
    volume = cluster.get("pvc", claim, "-n", namespace)["spec"]["volumeName"]

    run = playbook("upgrade.yml", dict({"ollama_namespace": namespace, "ollama_models": [],
                                        "ollama_image_tag": "0.11.5"}, **variables))
    assert run.rc == 0, run
    (new,) = running(cluster, namespace, 1)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"]["containers"][0]["image"] == "docker.io/ollama/ollama:0.11.5"
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
