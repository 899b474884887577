"""Real Ollama in Ollama pods: pulls from the local registry, generation, and models that persist
only when a claim holds them. Talks to Ollama through the API server's pod proxy."""

import os
import signal
from pathlib import Path

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def ollama_deployment(namespace, name, claim=None, gpus=1):
    container = {"name": "ollama", "image": "docker.io/ollama/ollama:0.11.4",
                 "env": [{"name": "OLLAMA_KEEP_ALIVE", "value": "2m"}],
                 "resources": {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}}
    spec = {"tolerations": [GPU_TOLERATION], "containers": [container]}
    if claim:
        container["volumeMounts"] = [{"name": "models", "mountPath": "/root/.ollama"}]
        spec["volumes"] = [{"name": "models", "persistentVolumeClaim": {"claimName": claim}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def running_pod(cluster, namespace, app, exclude=()):
    def ready():
        for pod in cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]:
            name = pod["metadata"]["name"]
            if name in exclude or pod["metadata"].get("deletionTimestamp") or pod["status"].get("phase") != "Running":
                continue
            if "version" in cluster.ollama(namespace, name, "/api/version", check=False):
                return name
        return None
    return cluster.wait_for(ready, timeout=90, what=f"an answering Ollama pod of {app}")


def claim(cluster, namespace, name="models"):
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}})


def pull(cluster, namespace, pod, model):
    return cluster.ollama(namespace, pod, "/api/pull", {"model": model, "insecure": True, "stream": False}, check=False)


def tag_digests(cluster, namespace, pod):
    return {m["name"]: m["digest"] for m in cluster.ollama(namespace, pod, "/api/tags")["models"]}


def test_pull_lists_the_registry_digest_and_generates_on_cpu(cluster, namespace):
    claim(cluster, namespace)
    cluster.apply(ollama_deployment(namespace, "ollama", claim="models"))
    pod = running_pod(cluster, namespace, "ollama")
    assert cluster.ollama(namespace, pod, "/api/version")["version"] == "0.11.4"
    model = cluster.model("tiny-a")
    assert pull(cluster, namespace, pod, model) == {"status": "success"}
    assert tag_digests(cluster, namespace, pod)[model] == cluster.models[model].removeprefix("sha256:")
    answer = cluster.ollama(namespace, pod, "/api/generate",
                            {"model": model, "prompt": "hello", "stream": False,
                             "options": {"num_predict": 8, "seed": 7, "temperature": 0}})
    assert answer["done"] is True and answer["eval_count"] == 8 and answer["eval_duration"] > 0
    loaded = cluster.ollama(namespace, pod, "/api/ps")["models"]
    assert [m["name"] for m in loaded] == [model]
    # This Ollama is a CPU build: nothing sits in GPU memory.
    assert loaded[0]["size_vram"] == 0 and loaded[0]["size"] > 0


def test_models_survive_a_pod_replacement_only_on_a_claim(cluster, namespace):
    claim(cluster, namespace)
    cluster.apply(ollama_deployment(namespace, "kept", claim="models"))
    # Without a GPU request, so the replacement of "lost" cannot take the GPU of the node that
    # "kept"'s local volume pins it to.
    cluster.apply(ollama_deployment(namespace, "lost", gpus=0))
    model = cluster.model("tiny-b")
    first = {app: running_pod(cluster, namespace, app) for app in ("kept", "lost")}
    for app, pod in first.items():
        assert pull(cluster, namespace, pod, model) == {"status": "success"}
        assert model in tag_digests(cluster, namespace, pod)
    cluster.kubectl("delete", "pod", "-n", namespace, *first.values(), "--wait=true")
    second = {app: running_pod(cluster, namespace, app, exclude=first.values()) for app in first}
    assert model in tag_digests(cluster, namespace, second["kept"])
    assert model not in tag_digests(cluster, namespace, second["lost"])


def test_unknown_model_gives_ollamas_own_error(cluster, namespace):
    cluster.apply(ollama_deployment(namespace, "ollama"))
    pod = running_pod(cluster, namespace, "ollama")
    registry = cluster.model("tiny-a").split("/", 1)[0]
    answer = pull(cluster, namespace, pod, f"{registry}/library/not-there:latest")
    assert answer == {"error": "pull model manifest: file does not exist", "http_status": 500}


def ollama_pid_for(cluster, uid):
    """The `ollama serve` in the pod's network namespace."""
    from sim import network
    netns = os.stat(network.NETNS_DIR / network.pod_netns(Path(cluster.kubeconfig).parent, uid)).st_ino
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            inode = os.stat(entry / "ns" / "net").st_ino
        except OSError:
            continue
        if inode == netns and cmdline[1:2] == [b"serve"]:
            return int(entry.name)
    return None


def test_a_crashed_ollama_is_restarted_like_a_kubelet_would(cluster, namespace):
    if cluster.external:
        import pytest
        pytest.skip("kills a process of the simulator's pod runtime")
    cluster.apply(ollama_deployment(namespace, "ollama"))
    pod = running_pod(cluster, namespace, "ollama")
    uid = cluster.get("pod", pod, "-n", namespace)["metadata"]["uid"]
    old = ollama_pid_for(cluster, uid)
    assert old
    os.kill(old, signal.SIGKILL)

    def restarted():
        pid = ollama_pid_for(cluster, uid)
        return pid if pid and pid != old else None
    cluster.wait_for(restarted, timeout=30, what="a new ollama process")
    assert running_pod(cluster, namespace, "ollama") == pod
    events = cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}")["items"]
    assert any(e["reason"] == "BackOff" and "restart 1 in" in e["message"] for e in events)
