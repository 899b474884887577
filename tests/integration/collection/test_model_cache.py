"""The model cache (ollama_model_cache) on the simulated cluster: site.yml deploys the pull-through registry, the
replicas pull through it under NetworkPolicies that kube-router enforces, and the model registry serves each
model once. The registry's request log (one JSON line per request, with its client) proves what it served to the
namespace's pods, told apart from the controller, whose plan reads each model's GGUF header on every run; the
replicas' /api/tags, what clients see. The cache pod runs CNCF Distribution (the simulator builds the release the
collection's image pins) behind the collection's nginx front.
"""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / ".collections"))
NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"
CACHE_SELECTOR = f"app.kubernetes.io/name=ollama-model-cache,app.kubernetes.io/instance={NAME}"


@pytest.fixture(autouse=True)
def cluster_auth(monkeypatch, cluster):
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(cluster.kubeconfig))


def converge(playbook, cluster, namespace, models, **variables):
    extra = {"ollama_namespace": namespace, "ollama_models": models, "ollama_model_cache": True,
             "ollama_replicas": 2, "ollama_storage_mode": "per_replica"}
    extra.update(variables)
    return playbook("site.yml", extra)


def request_log(cluster):
    return Path(cluster.kubeconfig).parent / "registry" / "logs" / "registry-requests.jsonl"


def entries(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def blob_bytes(logged, clients):
    """Blob bytes the registry sent to these clients (the namespace's pods: the cache and the replicas; the
    controller's plan reads GGUF headers from the registry on every run, from the node's address)."""
    return sum(e["bytes"] for e in logged if e["client"] in clients and e["method"] == "GET"
               and ("/blobs/" in e["path"] or e["path"].startswith("/_sim/blobs/")))


def pod_ips(cluster, namespace):
    return {p["status"].get("podIP") for p in cluster.get("pods", "-n", namespace)["items"]} - {None}


def model_bytes(model):
    from ansible_collections.llmops.ollama.plugins.module_utils import ollama_client
    return ollama_client.fetch_manifest(model, [model.split("/", 1)[0]])["size"]


def live(cluster, namespace, selector):
    return [p for p in cluster.get("pods", "-n", namespace, "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def tags(cluster, namespace, pod):
    answer = cluster.ollama(namespace, pod, "/api/tags", check=False, timeout=10)
    return {m["name"]: "sha256:" + m["digest"] for m in answer.get("models") or []}


def failures(run):
    return "\n".join(result.get("msg", "") for play in run.report.get("plays", []) for task in play.get("tasks", [])
                     for result in task["hosts"].values() if result.get("failed"))


@pytest.mark.profile("k3s")
def test_two_replicas_through_the_cache_fetch_each_model_once_and_keep_its_name(playbook, cluster, namespace):
    models = [cluster.model("tiny-a"), cluster.model("tiny-big")]
    registry = models[0].split("/", 1)[0]
    log = request_log(cluster)
    before = len(entries(log))
    run = converge(playbook, cluster, namespace, models)
    assert run.rc == 0, run
    served = blob_bytes(entries(log)[before:], pod_ips(cluster, namespace))
    wanted = sum(model_bytes(m) for m in models)
    # Every blob once from the registry, for both replicas (without the cache: twice).
    assert wanted <= served <= 1.1 * wanted, (served, wanted)
    pods = live(cluster, namespace, SELECTOR)
    assert len(pods) == 2
    for pod in pods:
        # The models under their own names and digests; no cache-named copy left.
        assert tags(cluster, namespace, pod["metadata"]["name"]) == {m: cluster.models[m] for m in models}
    (cache,) = live(cluster, namespace, CACHE_SELECTOR)
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in cache["status"]["conditions"])
    # The replicas reach only the cache; the cache alone reaches the registry.
    egress = cluster.get("networkpolicy", f"{NAME}-egress", "-n", namespace)["spec"]["egress"]
    assert {p["port"] for rule in egress for p in rule.get("ports") or []} == {53, 5000}
    assert any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "ollama-model-cache"
               for rule in egress for peer in rule.get("to") or [])
    cache_egress = cluster.get("networkpolicy", f"{NAME}-model-cache-egress", "-n", namespace)["spec"]["egress"]
    assert int(registry.rsplit(":", 1)[1]) in {p["port"] for rule in cache_egress for p in rule.get("ports") or []}

    # A second converge changes nothing and fetches nothing.
    before = len(entries(log))
    again = converge(playbook, cluster, namespace, models)
    assert again.rc == 0, again
    assert again.changed == 0, [t["task"]["name"] for p in again.report["plays"] for t in p["tasks"]
                                if any(h.get("changed") for h in t["hosts"].values())]
    assert blob_bytes(entries(log)[before:], pod_ips(cluster, namespace)) == 0

    # A replica that loses its store heals through the cache: the registry serves nothing.
    before = len(entries(log))
    victim = pods[0]
    cluster.kubectl("delete", "pvc", f"models-{NAME}-0", "-n", namespace, "--wait=false")
    cluster.kubectl("delete", "pod", f"{NAME}-0", "-n", namespace, "--wait=false")

    def healed():
        fresh = [p for p in live(cluster, namespace, SELECTOR) if p["metadata"]["uid"] != victim["metadata"]["uid"]
                 and p["metadata"]["name"] == f"{NAME}-0"]
        if fresh and any(c["type"] == "Ready" and c["status"] == "True" for c in fresh[0]["status"].get("conditions") or []):
            return fresh[0]
        return None
    pod = cluster.wait_for(healed, timeout=180, what="ollama-0 Ready again on a new claim")
    assert tags(cluster, namespace, pod["metadata"]["name"]) == {m: cluster.models[m] for m in models}
    assert blob_bytes(entries(log)[before:], pod_ips(cluster, namespace)) == 0


@pytest.mark.profile("k3s")
def test_bad_cache_settings_stop_the_run_before_any_write(playbook, cluster, namespace):
    models = [cluster.model("tiny-big")]  # 58 MB, read from the registry by the plan
    run = converge(playbook, cluster, namespace, models, ollama_model_cache_size="1Mi",
                   ollama_model_cache_storage_class="no-such-class")
    assert run.rc != 0
    said = failures(run)
    assert "ollama_model_cache_size" in said and "smaller than the models" in said, said
    assert "ollama_model_cache_storage_class" in said and "'no-such-class'" in said, said
    # Nothing was written: no claim, no workload, no cache.
    assert cluster.get("pvc", "-n", namespace)["items"] == []
    assert cluster.get("deployments,statefulsets", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_a_registry_address_the_cache_policy_shuts_out_is_refused_before_any_write(playbook, cluster, namespace):
    model = cluster.model("tiny-a")
    registry = model.split("/", 1)[0]
    run = converge(playbook, cluster, namespace, [model], ollama_workload_egress_cidrs=["192.0.2.0/24"])
    assert run.rc != 0
    said = failures(run)
    assert "ollama_workload_egress_cidrs" in said and registry in said and "model cache could not reach" in said, said
    assert cluster.get("pvc", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_a_registry_the_cache_cannot_reach_fails_at_pull_time_with_the_reason(playbook, cluster, namespace):
    # An address in the simulator's pod network where nothing listens: neither the plan (the controller falls back
    # to the declared size) nor anything else can tell before the cache tries it.
    registry = cluster.model("tiny-a").split("/", 1)[0]
    host, port = registry.rsplit(":", 1)
    prefix, last = host.rsplit(".", 1)
    dead = "%s.%d:%s" % (prefix, int(last) - 20, port)
    model = cluster.model("tiny-a").replace(registry, dead)
    run = converge(playbook, cluster, namespace, [{"name": model, "size": "1MB"}],
                   ollama_insecure_registries=[registry, dead], model_pull_cache_timeout=150,
                   ollama_replicas=1, ollama_storage_mode="auto")
    assert run.rc != 0
    said = failures(run)
    assert "model cache" in said and f"http://{dead}" in said and "Fix:" in said, said
    assert "egress policy" in said, said
