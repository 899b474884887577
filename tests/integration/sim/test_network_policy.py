"""NetworkPolicy enforced by kube-router in the simulator's node namespace, on real traffic:
the API server's pod proxy, pod to pod, pod to a Service's ClusterIP, and pod to the model registry."""


import pytest

from test_ollama_pods import ollama_deployment, running_pod

def sim_only(cluster):
    if cluster.external:
        pytest.skip("reaches into the simulator's pod network namespaces")


def pod_ip(cluster, namespace, pod):
    return cluster.get("pod", "-n", namespace, pod)["status"]["podIP"]


def start_ollama(cluster, namespace, name):
    cluster.apply(ollama_deployment(namespace, name, gpus=0))
    return running_pod(cluster, namespace, name)


def proxied(cluster, namespace, pod):
    """True when the API server's pod proxy reaches Ollama."""
    return "version" in cluster.ollama(namespace, pod, "/api/version", check=False, timeout=10)


def policy(namespace, name, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.fixture
def other_namespace(cluster):
    import uuid
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    cluster.kubectl("wait", "--for=delete", "pods", "--all", "-n", name, "--timeout=90s", check=False, timeout=120)


def start_behind_policy(cluster, namespace, name):
    """An Ollama pod that a policy already covers: it answers inside its own namespace only.

    Policies judge new connections (established ones stay, as on any node), and the API server keeps its
    proxy connections open, so the pod is never reached from outside before the policy is in place."""
    cluster.apply(ollama_deployment(namespace, name, gpus=0))

    def answering():
        for pod in cluster.get("pods", "-n", namespace, "-l", f"app={name}")["items"]:
            address = pod["status"].get("podIP")
            if pod["status"].get("phase") == "Running" and address and \
                    cluster.call_from_pod(namespace, pod["metadata"]["name"], address, 11434).startswith("HTTP/1.1 200"):
                return pod["metadata"]["name"]
        return None
    return cluster.wait_for(answering, timeout=90, what=f"Ollama of {name} to answer in its pod")


@pytest.mark.profile("k3s")
def test_default_deny_stops_the_pod_proxy_and_pods_and_allow_rules_open_exactly_their_sources(
        cluster, namespace, other_namespace):
    sim_only(cluster)
    neighbour = start_ollama(cluster, namespace, "neighbour")
    outsider = start_ollama(cluster, other_namespace, "outsider")
    neighbour_ip = pod_ip(cluster, namespace, neighbour)
    assert cluster.call_from_pod(other_namespace, outsider, neighbour_ip, 11434).startswith("HTTP/1.1 200"), \
        "without a policy every source reaches a pod"

    cluster.apply(policy(namespace, "deny", {"podSelector": {"matchLabels": {"app": "server"}},
                                             "policyTypes": ["Ingress"]}))
    server = start_behind_policy(cluster, namespace, "server")
    server_ip = pod_ip(cluster, namespace, server)
    assert not proxied(cluster, namespace, server)
    assert cluster.call_from_pod(other_namespace, outsider, server_ip, 11434).startswith("blocked")
    assert cluster.call_from_pod(namespace, neighbour, server_ip, 11434).startswith("blocked")
    # The policy selects `server` only: the neighbour stays open.
    assert proxied(cluster, namespace, neighbour)

    # A namespace rule opens the pods of that namespace and nothing else.
    cluster.apply(policy(namespace, "from-other", {
        "podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other_namespace}}}],
                     "ports": [{"port": 11434, "protocol": "TCP"}]}]}))
    cluster.wait_for(lambda: cluster.call_from_pod(other_namespace, outsider, server_ip, 11434).startswith("HTTP/1.1 200"),
                     timeout=30, what="the allowed namespace to get through")
    assert cluster.call_from_pod(namespace, neighbour, server_ip, 11434).startswith("blocked")
    assert not proxied(cluster, namespace, server)

    # An ipBlock for the node address (where the API server's proxy comes from) opens the proxy.
    from sim import network
    cluster.apply(policy(namespace, "from-node", {
        "podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": f"{network.NODE_IP}/32"}}]}]}))
    cluster.wait_for(lambda: proxied(cluster, namespace, server), timeout=30, what="the pod proxy to get through")
    assert cluster.call_from_pod(namespace, neighbour, server_ip, 11434).startswith("blocked")


@pytest.mark.profile("k3s")
def test_a_service_cluster_ip_reaches_a_ready_endpoint_under_the_policies(cluster, namespace, other_namespace):
    sim_only(cluster)
    server = start_ollama(cluster, namespace, "server")
    client = start_ollama(cluster, other_namespace, "client")
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server", "namespace": namespace},
                   "spec": {"selector": {"app": "server"}, "ports": [{"name": "http", "port": 80, "targetPort": 11434}]}})
    cluster_ip = cluster.get("service", "-n", namespace, "server")["spec"]["clusterIP"]
    cluster.wait_for(lambda: cluster.call_from_pod(other_namespace, client, cluster_ip, 80).startswith("HTTP/1.1 200"),
                     timeout=30, what="the ClusterIP to answer")
    cluster.apply(policy(namespace, "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    cluster.wait_for(lambda: cluster.call_from_pod(other_namespace, client, cluster_ip, 80).startswith("blocked"),
                     timeout=30, what="the policy to stop the translated connection")
    assert server


@pytest.mark.profile("k3s")
def test_an_egress_policy_stops_a_pod_reaching_the_model_registry(cluster, namespace):
    sim_only(cluster)
    pod = start_ollama(cluster, namespace, "puller")
    registry = next(iter(cluster.models)).split("/", 1)[0]
    host, port = registry.rsplit(":", 1)
    assert cluster.call_from_pod(namespace, pod, host, port, "/v2/").startswith("HTTP/1.1 200")
    cluster.apply(policy(namespace, "no-egress", {"podSelector": {"matchLabels": {"app": "puller"}},
                                                  "policyTypes": ["Egress"]}))
    cluster.wait_for(lambda: cluster.call_from_pod(namespace, pod, host, port, "/v2/").startswith("blocked"),
                     timeout=30, what="egress to the registry to be blocked")
    pulled = cluster.ollama(namespace, pod, "/api/pull", {"model": cluster.model("tiny-a"), "insecure": True,
                                                          "stream": False}, check=False, timeout=60)
    assert pulled.get("status") != "success", pulled
