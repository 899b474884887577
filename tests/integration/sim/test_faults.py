"""Faults on command (k3s profile): a node that loses its heartbeats and its pods' processes, and
control-plane processes restarted in place. What happens after is the real controllers' doing."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def only_sim(cluster):
    if cluster.external:
        pytest.skip("faults on command need the simulator")


def ollama_deployment(namespace, name):
    container = {"name": "ollama", "image": "docker.io/ollama/ollama:0.11.4", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"tolerations": [GPU_TOLERATION], "containers": [container]}}}}


def answers(cluster, namespace, pod):
    # A pod on a lost node: the API server's proxy gets no answer; give up after 3 s.
    result = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:11434/proxy/api/version",
                             "--request-timeout=3s", check=False, timeout=30)
    return result.returncode == 0 and '"version"' in result.stdout


def answering_pod(cluster, namespace, app, exclude=(), timeout=120):
    def find():
        for pod in cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]:
            name = pod["metadata"]["name"]
            if (name not in exclude and not pod["metadata"].get("deletionTimestamp")
                    and pod["status"].get("phase") == "Running" and answers(cluster, namespace, name)):
                return pod
        return None
    return cluster.wait_for(find, timeout=timeout, what=f"an answering Ollama pod of {app}")


def pod_processes(cluster, uid):
    """The processes in the pod's network namespace (every container of it runs there)."""
    from sim import network
    netns = network.pod_netns(cluster.kubeconfig.parent, uid)
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def node_view(cluster, name):
    node = cluster.get("node", name)
    ready = next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")
    return ready, {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}


def test_a_downed_node_goes_not_ready_its_pods_stop_answering_and_up_brings_it_back(cluster, namespace):
    only_sim(cluster)
    from sim import faults
    cluster.apply(ollama_deployment(namespace, "ollama"))
    pod = answering_pod(cluster, namespace, "ollama")
    name, node, uid = pod["metadata"]["name"], pod["spec"]["nodeName"], pod["metadata"]["uid"]
    assert pod_processes(cluster, uid), "the simulator runs no process for the pod"
    started = time.monotonic()
    try:
        down = faults.set_node(node, "down", log=print)
        assert down["not_ready_seconds"] <= 60 and down["unreachable_taint_seconds"] <= 60
        ready, taints = node_view(cluster, node)
        assert ready == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in taints
        assert not answers(cluster, namespace, name)
        assert pod_processes(cluster, uid) == []
        # The taint manager evicts it after the 20 s toleration; the ReplicaSet replaces it on the other GPU node.
        replacement = answering_pod(cluster, namespace, "ollama", exclude=(name,), timeout=90)
        evicted_after = round(time.monotonic() - started, 1)
        assert replacement["spec"]["nodeName"] != node
        # Nobody confirms the old pod's end while its node is unreachable: it stays Terminating.
        old = cluster.get("pod", name, "-n", namespace)
        assert old["metadata"].get("deletionTimestamp") and old["spec"]["nodeName"] == node
        print(f"node {node}: NotReady after {down['not_ready_seconds']}s, replacement answering after {evicted_after}s")
    finally:
        up = faults.set_node(node, "up", log=print)
    assert up["ready_seconds"] <= 60
    ready, taints = node_view(cluster, node)
    assert ready == "True" and not {t for t in taints if t[0].startswith("node.kubernetes.io/")}
    # The pods it kept (the device plugin's) are Ready again, as after a kubelet's reconnect.
    plugin = cluster.get("daemonset", "nvidia-device-plugin-daemonset", "-n", "kube-system")["status"]
    assert plugin["numberReady"] == plugin["desiredNumberScheduled"] == 2
    # Back, KWOK confirms the evicted pod's end.
    cluster.wait_for(lambda: cluster.kubectl("get", "pod", name, "-n", namespace, check=False).returncode != 0,
                     timeout=60, what=f"the evicted pod {name} to go")


def test_the_runtime_restarts_the_pods_of_a_node_that_comes_back_in_time(cluster, namespace):
    only_sim(cluster)
    from sim import faults
    cluster.apply(ollama_deployment(namespace, "quick"))
    pod = answering_pod(cluster, namespace, "quick")
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    try:
        faults.set_node(node, "down", wait=False, log=print)
        cluster.wait_for(lambda: not answers(cluster, namespace, name), timeout=15, what="the pod to stop answering")
    finally:
        up = faults.set_node(node, "up", log=print)
    assert up["pods_ready_again"] == 0  # back within the grace period: never NotReady
    # Back before its eviction: the same pod answers again.
    cluster.wait_for(lambda: answers(cluster, namespace, name), timeout=60, what=f"{name} to answer again")


def test_api_server_restart_fails_requests_during_it_and_loses_no_state(cluster, namespace):
    only_sim(cluster)
    from sim import cluster as sim_cluster, faults
    from sim.kube import Kube
    cluster.kubectl("create", "configmap", "before", "-n", namespace, "--from-literal=kept=yes")
    state = sim_cluster.read_state()
    api = Kube("127.0.0.1", state["ports"]["apiserver"], Path(os.environ["LLMOPS_SIM_STATE"]) / "pki",
               client="admin", timeout=2)
    samples, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                ok = api.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/before")[0] == 200
            except Exception:
                ok = False
            samples.append((time.monotonic(), ok))
            time.sleep(0.1)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(1)
    result = faults.restart("kube-apiserver", log=print)
    time.sleep(1)
    stop.set()
    poller.join(10)
    failed = [t for t, ok in samples if not ok]
    assert failed, "no request failed while kube-apiserver restarted"
    assert samples[-1][1] and samples[0][1]
    assert result["new_pid"] != result["old_pid"] and 0 < result["down_seconds"] < 60
    argv = state["spawn"]["kube-apiserver"]["argv"]
    assert Path(f"/proc/{result['new_pid']}/cmdline").read_bytes().split(b"\0")[:-1] == [a.encode() for a in argv]
    kept = cluster.get("configmap", "before", "-n", namespace)
    assert kept["data"] == {"kept": "yes"}
    cluster.kubectl("create", "configmap", "after", "-n", namespace)
    print(f"kube-apiserver down {result['down_seconds']}s; {len(failed)} of {len(samples)} requests failed")


@pytest.mark.parametrize("component", ["etcd", "kube-controller-manager", "kube-scheduler"])
def test_each_control_plane_process_restarts_in_place_and_works_after(cluster, namespace, component):
    only_sim(cluster)
    from sim import cluster as sim_cluster, faults
    cluster.kubectl("create", "configmap", "before", "-n", namespace, "--from-literal=kept=yes")
    spec = sim_cluster.read_state()["spawn"][component]
    result = faults.restart(component, log=print)
    assert sim_cluster.read_state()["pids"][component] == result["new_pid"] != result["old_pid"]
    assert Path(f"/proc/{result['new_pid']}/cmdline").read_bytes().split(b"\0")[:-1] == [a.encode() for a in spec["argv"]]
    assert cluster.get("configmap", "before", "-n", namespace)["data"] == {"kept": "yes"}
    if component == "kube-controller-manager":  # its ServiceAccount controller serves a new namespace
        cluster.kubectl("create", "namespace", f"{namespace}-sa")
        try:
            cluster.wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", f"{namespace}-sa",
                                                     check=False).returncode == 0, timeout=60, what="the default SA")
        finally:
            cluster.kubectl("delete", "namespace", f"{namespace}-sa", "--wait=false", check=False)
    if component == "kube-scheduler":  # it schedules a new pod
        cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after", "namespace": namespace},
                        "spec": {"containers": [{"name": "c", "image": "registry.invalid/app:1"}]}})
        cluster.wait_for(lambda: cluster.get("pod", "after", "-n", namespace)["spec"].get("nodeName"), timeout=60,
                         what="the scheduler to place a pod")
    print(f"{component} down {result['down_seconds']}s")


def sim_cli(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=REPO / "sim", capture_output=True, text=True,
                          timeout=120, check=False)


def test_unknown_node_and_component_name_the_valid_ones(cluster):
    only_sim(cluster)
    node = sim_cli("node", "gpu-9", "--state", "down")
    assert node.returncode == 2
    assert "unknown node 'gpu-9'" in node.stderr and "use one of: k3s-gpu-0, k3s-gpu-1, k3s-server-0" in node.stderr
    component = sim_cli("restart", "kube-proxy")
    assert component.returncode == 2 and "unknown component 'kube-proxy'" in component.stderr
    assert "etcd, kube-apiserver, kube-controller-manager, kube-scheduler" in component.stderr
    state = sim_cli("node", "k3s-gpu-0", "--state", "sideways")
    assert state.returncode == 2 and "STATE=down or STATE=up" in state.stderr
