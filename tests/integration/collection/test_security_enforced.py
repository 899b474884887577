"""The collection's NetworkPolicies and routes on real traffic: kube-router enforcing them in the simulator's node
namespace, Traefik (k3s's ingress controller) routing the Ingress and the HTTPRoute, the gate in each Ollama pod.

- site.yml with the default policies converges, pulls and verifies through the API server's pod proxy, and a
  second run changes nothing;
- the egress policy lets Ollama reach the declared models' registry only: with no model declared, a pull fails;
- through the Service, a pod of a listed namespace (or a listed pod) reaches the gate, a pod elsewhere does not;
- in a shared namespace another workload stays reachable and keeps its labels;
- through Traefik, the Ingress and the HTTPRoute route the client paths to the gate and never the admin paths.

Each test says what it needs and skips without it: the simulator's policy engine (sim.netpol, kube-router),
Traefik (the k3s profile's ingress port), the gate (a `gate` container in the Ollama pods). On another cluster set
LLMOPS_TEST_ENFORCING=1 (its CNI enforces NetworkPolicy) and LLMOPS_TEST_INGRESS_URL (its Traefik's HTTP entry).
"""

import http.client
import json
import os
import time
import uuid

import pytest

NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"
KEY = "llmops-test-key-" + "0123456789abcdef" * 2
CLIENT_PATHS = ["/api/version", "/api/tags"]
ADMIN_PATHS = ["/api/pull", "/api/delete", "/api/create", "/api/push", "/api/copy", "/api/blobs/sha256:00"]
GATEWAY_GROUP = "gateway.networking.k8s.io"

# One bounded TCP connect and HTTP GET from inside a pod's network namespace; prints the status line or "blocked".
# ---------------------------------------------------------------- what each test needs

@pytest.fixture
def enforcing(cluster):
    if cluster.external:
        if os.environ.get("LLMOPS_TEST_ENFORCING") != "1":
            pytest.skip("set LLMOPS_TEST_ENFORCING=1 when this cluster's network plugin enforces NetworkPolicy")
        pytest.skip("reaching into pod network namespaces needs the simulator")
    try:
        from sim import netpol  # noqa: F401  (the simulator's kube-router)
        from sim import network  # noqa: F401
    except ImportError:
        pytest.skip("needs the simulator's policy engine (sim.netpol, kube-router in the node namespace)")


@pytest.fixture
def ingress_url(cluster):
    if os.environ.get("LLMOPS_TEST_INGRESS_URL"):
        return os.environ["LLMOPS_TEST_INGRESS_URL"].rstrip("/")
    from sim import cluster as simcluster
    port = (simcluster.read_state().get("ports") or {}).get("ingress")
    if not port or cluster.kubectl("get", "ingressclass", "traefik", check=False).returncode != 0:
        pytest.skip("needs Traefik (the simulator's k3s profile with its ingress port)")
    return f"http://127.0.0.1:{port}"


def gate_runs(cluster, namespace):
    pods = cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
    return bool(pods) and any(c["name"] == "gate" for c in pods[0]["spec"]["containers"])


# ---------------------------------------------------------------- helpers

def converge(playbook, namespace, **variables):
    extra = {"ollama_namespace": namespace, "ollama_models": [], "ollama_namespace_manage_labels": True,
             "ollama_api_keys": [KEY]}
    extra.update(variables)
    return playbook("site.yml", extra)


def reached(line):
    """A status line from the gate (or Ollama, before the gate): anything but a blocked connection."""
    return line.startswith("HTTP/1.1 ")


def eventually_reached(cluster, namespace, pod, host, port, timeout=30):
    """kube-router follows new pods within seconds: a pod just started may wait that long for its rules."""
    return cluster.wait_for(lambda: reached(cluster.call_from_pod(namespace, pod, host, port)), timeout=timeout,
                            what=f"{namespace}/{pod} to reach {host}:{port}")


def client_pod(cluster, namespace, name, labels=None):
    """A running pod of no workload of the collection's (the simulator runs the Ollama image for real)."""
    labels = dict({"app": name}, **(labels or {}))
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                                    "labels": labels},
                   "spec": {"containers": [{"name": "c", "image": "docker.io/ollama/ollama:0.32.15"}]}})

    def answering():
        pod = cluster.get("pod", name, "-n", namespace)
        address = pod["status"].get("podIP")
        if pod["status"].get("phase") == "Running" and address and \
                cluster.call_from_pod(namespace, name, address, 11434).startswith("HTTP/1.1 200"):
            return pod
        return None
    return cluster.wait_for(answering, timeout=90, what=f"the client pod {namespace}/{name}")


@pytest.fixture
def other_namespaces(cluster):
    made = []

    def make():
        name = f"t-{uuid.uuid4().hex[:8]}"
        cluster.kubectl("create", "namespace", name)
        made.append(name)
        return name
    yield make
    for name in made:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def free_gpus(cluster, namespace):
    yield
    cluster.kubectl("delete", "deployments,statefulsets", "--all", "-n", namespace, "--cascade=foreground",
                    "--timeout=120s", check=False, timeout=180)


def gate_address(cluster, namespace):
    (pod,) = [p for p in cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
              if not p["metadata"].get("deletionTimestamp")]
    service = cluster.get("service", NAME, "-n", namespace)["spec"]
    port = next(p["containerPort"] for container in pod["spec"]["containers"] for p in container.get("ports", [])
                if p.get("name") == "http")
    return pod["status"]["podIP"], port, service["clusterIP"], service["ports"][0]["port"]


def via_ingress(url, host, path, key=None, method="GET", timeout=10):
    address = url.split("://", 1)[1]
    conn = http.client.HTTPConnection(address, timeout=timeout)
    headers = {"Host": host}
    if key:
        headers["Authorization"] = "Bearer " + key
    body = json.dumps({"model": "x"}) if method == "POST" else None
    try:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read(512).decode("utf-8", "replace")
    finally:
        conn.close()


def wait_routed(url, host, timeout=60):
    """Traefik picks up a new route within seconds; until then it answers 404 for every path."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status, _ = via_ingress(url, host, "/api/version")
        if status != 404:
            return status
        time.sleep(1)
    raise AssertionError(f"Traefik did not route {host} within {timeout}s (last status {status})")


# ---------------------------------------------------------------- the collection's own traffic

@pytest.mark.profile("k3s")
def test_site_pulls_and_verifies_under_the_enforced_default_policies(playbook, cluster, namespace, enforcing):
    models = [{"name": cluster.model("tiny-a"), "size": 330043}]
    run = converge(playbook, namespace, ollama_models=models)
    assert run.rc == 0, run
    assert cluster.get("networkpolicy", f"{NAME}-ingress", "-n", namespace)
    assert cluster.get("networkpolicy", f"{NAME}-egress", "-n", namespace)
    again = converge(playbook, namespace, ollama_models=models)
    assert again.rc == 0 and again.changed == 0, again


@pytest.mark.profile("k3s")
def test_the_egress_policy_admits_the_declared_registry_only(playbook, cluster, namespace, enforcing):
    # No model declared: the policy lets Ollama reach DNS only, so a pull from the registry cannot connect.
    assert converge(playbook, namespace).rc == 0
    models = [{"name": cluster.model("tiny-a"), "size": 330043}]
    blocked = playbook("models.yml", {"ollama_namespace": namespace, "ollama_models": models,
                                      "ollama_namespace_manage_labels": True, "ollama_api_keys": [KEY]})
    assert blocked.rc != 0, blocked
    # Declared, the plan opens the registry's port before the pull.
    allowed = converge(playbook, namespace, ollama_models=models)
    assert allowed.rc == 0, allowed


# ---------------------------------------------------------------- clients through the Service

@pytest.mark.profile("k3s")
def test_the_service_admits_listed_namespaces_and_pods_and_refuses_the_rest(
        playbook, cluster, namespace, other_namespaces, enforcing):
    allowed_ns, denied_ns = other_namespaces(), other_namespaces()
    run = converge(playbook, namespace, ollama_workload_allowed_namespaces=[allowed_ns],
                   ollama_workload_allowed_pods=[{"namespace": denied_ns, "labels": {"role": "rag"}}])
    assert run.rc == 0, run
    pod_ip, gate_port, cluster_ip, service_port = gate_address(cluster, namespace)
    client_pod(cluster, allowed_ns, "client")
    client_pod(cluster, denied_ns, "client")
    client_pod(cluster, denied_ns, "rag", labels={"role": "rag"})
    # The gate's pod address first (the policy alone), then the Service's ClusterIP (translated to it).
    for host, port in ((pod_ip, gate_port), (cluster_ip, service_port)):
        eventually_reached(cluster, allowed_ns, "client", host, port)
        eventually_reached(cluster, denied_ns, "rag", host, port)
        # Rules for all three pods are in by now: the one nobody listed stays out.
        assert cluster.call_from_pod(denied_ns, "client", host, port).startswith("blocked"), (host, port)


@pytest.mark.profile("k3s")
def test_a_shared_namespace_keeps_its_labels_and_its_other_pods_stay_reachable(
        playbook, cluster, namespace, other_namespaces, enforcing):
    cluster.kubectl("label", "namespace", namespace, "team=ml")
    webui = client_pod(cluster, namespace, "webui")
    labels = cluster.get("namespace", namespace)["metadata"]["labels"]
    run = converge(playbook, namespace, ollama_namespace_manage_labels=False)
    assert run.rc == 0, run
    assert cluster.get("namespace", namespace)["metadata"]["labels"] == labels
    elsewhere = other_namespaces()
    client_pod(cluster, elsewhere, "client")
    gate_ip, gate_port, _cluster_ip, _port = gate_address(cluster, namespace)
    eventually_reached(cluster, elsewhere, "client", webui["status"]["podIP"], 11434)
    assert cluster.call_from_pod(elsewhere, "client", gate_ip, gate_port).startswith("blocked")


# ---------------------------------------------------------------- through Traefik

def assert_traefik_serves_only_the_client_paths(cluster, namespace, ingress_url, host):
    """Through Traefik: no key is 401 (where the gate runs), a key opens every client path, no admin path opens."""
    assert wait_routed(ingress_url, host) in (200, 401)
    if gate_runs(cluster, namespace):
        assert via_ingress(ingress_url, host, "/api/tags")[0] == 401
    for path in CLIENT_PATHS:
        assert via_ingress(ingress_url, host, path, key=KEY)[0] == 200, path
    for path in ADMIN_PATHS:
        assert via_ingress(ingress_url, host, path, key=KEY, method="POST")[0] == 404, path


@pytest.mark.profile("k3s")
def test_traefik_routes_the_ingress_client_paths_to_the_gate_and_no_admin_path(
        playbook, cluster, namespace, enforcing, ingress_url):
    host = f"{namespace}.ollama.test"
    run = converge(playbook, namespace, ollama_ingress_enabled=True, ollama_ingress_host=host)
    assert run.rc == 0, run
    assert_traefik_serves_only_the_client_paths(cluster, namespace, ingress_url, host)


@pytest.fixture
def traefik_gateway_for_every_namespace(cluster):
    """k3s's Traefik Gateway admits routes from kube-system only (the chart's default); open its listener `web` to
    every namespace as a user does (gateway.listeners.web.namespacePolicy: All), and restore it after."""
    if cluster.kubectl("get", f"gateways.{GATEWAY_GROUP}", "traefik-gateway", "-n", "kube-system",
                       check=False).returncode != 0:
        pytest.skip("needs k3s's Traefik Gateway kube-system/traefik-gateway")
    before = cluster.get(f"gateways.{GATEWAY_GROUP}", "traefik-gateway", "-n", "kube-system")["spec"]["listeners"]
    opened = [dict(item, allowedRoutes={"namespaces": {"from": "All"}}) if item["name"] == "web" else item
              for item in before]
    cluster.kubectl("patch", f"gateways.{GATEWAY_GROUP}", "traefik-gateway", "-n", "kube-system", "--type=merge",
                    "-p", json.dumps({"spec": {"listeners": opened}}))
    try:
        yield
    finally:
        cluster.kubectl("patch", f"gateways.{GATEWAY_GROUP}", "traefik-gateway", "-n", "kube-system",
                        "--type=merge", "-p", json.dumps({"spec": {"listeners": before}}), check=False)


@pytest.mark.profile("k3s")
def test_traefik_routes_the_httproute_client_paths_to_the_gate_and_no_admin_path(
        playbook, cluster, namespace, enforcing, ingress_url, traefik_gateway_for_every_namespace):
    host = f"{namespace}.route.ollama.test"
    run = converge(playbook, namespace, ollama_httproute_enabled=True,
                   ollama_httproute_parent_refs=[{"name": "traefik-gateway", "namespace": "kube-system"}],
                   ollama_httproute_hostnames=[host])
    assert run.rc == 0, run
    assert_traefik_serves_only_the_client_paths(cluster, namespace, ingress_url, host)
