"""The fault table (docs/reliability.md) on the simulated cluster: each test brings a fault about with the
simulator's real processes and fails unless the collection survives it. site.yml converges real replicas; the
registry's access log (one line "METHOD PATH STATUS BYTES" per request) proves who downloaded what; node loss
and the API server restart are the simulator's (sim.faults), so what follows is the real controllers' doing.

The other rows of the table live beside the code they exercise: the drain blocked by the budget, uninstall and
the image upgrade in test_workload.py, the registry stopped mid-pull and the restart that keeps the models in
test_models.py.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from registry_access import blob_downloads, log_lines

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / ".collections"))
NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"

# The openai package against the Service's ClusterIP, run in a client pod's network namespace: every request
# crosses the node namespace's service proxy (DNAT to a ready endpoint), as from any pod in the cluster.
CLIENT = r"""
import json, sys, time
import httpx, openai
url, key, model, stop = sys.argv[1:5]
sent = []
# A new connection for every request, so each one is sent to an endpoint of the Service's choosing (a kept-alive
# connection would stay with one replica); the client's own retries carry it past an endpoint that is gone.
http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=httpx.Timeout(5.0, connect=1.0),
                    event_hooks={"request": [lambda request: sent.append(1)]})
# Each try to the lost endpoint fails after the 1 s connect timeout; ten retries outlast the ~20 s until it goes.
client = openai.OpenAI(base_url=url, api_key=key, max_retries=10, http_client=http)
while True:
    try:
        open(stop).close()
        break
    except OSError:
        pass
    started, before = time.time(), len(sent)
    try:
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=4, seed=1)
        line = {"t": started, "s": time.time() - started, "ok": answer.usage.completion_tokens > 0}
    except Exception as exc:
        line = {"t": started, "s": time.time() - started, "ok": False, "error": repr(exc)[:300]}
    line["tries"] = len(sent) - before
    print(json.dumps(line), flush=True)
    time.sleep(0.2)
"""


@pytest.fixture(autouse=True)
def cluster_auth(monkeypatch, cluster):
    # Modules outside the module_defaults groups fall back to K8S_AUTH_KUBECONFIG, never ~/.kube/config.
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(cluster.kubeconfig))


@pytest.fixture(autouse=True)
def free_gpus(cluster, namespace):
    """Two GPUs in the simulator: give them back before the next test, and every node back up."""
    yield
    if not cluster.external:
        from sim import cluster as sim_cluster, faults
        for node in sim_cluster.read_state().get("down_nodes") or []:
            faults.set_node(node, "up", log=lambda *_: None)
    cluster.kubectl("delete", "deployments,statefulsets", "--all", "-n", namespace, "--cascade=foreground",
                    "--timeout=120s", check=False, timeout=180)
    cluster.wait_for(lambda: not cluster.get("pods", "-n", namespace)["items"], timeout=120,
                     what=f"the pods of {namespace} to go")


def only_sim(cluster):
    if cluster.external:
        pytest.skip("brings faults about with the simulator")


def converge(playbook, namespace, models, **variables):
    extra = {"ollama_namespace": namespace, "ollama_models": models}
    extra.update(variables)
    return playbook("site.yml", extra)


def live_pods(cluster, namespace):
    return [p for p in cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def ready_pods(cluster, namespace, count, exclude=(), timeout=120):
    def check():
        pods = [p for p in live_pods(cluster, namespace) if p["metadata"]["uid"] not in exclude]
        return pods if len(pods) == count and all(is_ready(p) for p in pods) else None
    return cluster.wait_for(check, timeout=timeout, what=f"{count} Ready Ollama pods")


def tags(cluster, namespace, pod):
    answer = cluster.ollama(namespace, pod, "/api/tags", check=False, timeout=10)
    if "models" not in answer:
        return None
    return {m["name"]: "sha256:" + m["digest"] for m in answer["models"]}


def access_log(cluster):
    return Path(cluster.kubeconfig).parent / "registry" / "logs" / "registry-access.log"


def sidecar_log(cluster, namespace, pod):
    """The models sidecar's output (the simulator's kubelet keeps each container's log as a file)."""
    base = Path(cluster.kubeconfig).parent / "logs" / "pods" / f"{namespace}_{pod['metadata']['name']}_{pod['metadata']['uid']}"
    return "".join(p.read_text() for p in sorted((base / "models").glob("*.log")))


def registry_model_bytes(model):
    """The bytes of a model's layers and config, from its registry manifest."""
    from ansible_collections.llmops.ollama.plugins.module_utils import ollama_client
    return ollama_client.fetch_manifest(model, [model.split("/", 1)[0]])["size"]


def failures(run):
    """Every failure message of a run, in order."""
    return "\n".join(result.get("msg", "") for play in run.report.get("plays", []) for task in play.get("tasks", [])
                     for result in task["hosts"].values() if result.get("failed"))


def ready_endpoints(cluster, namespace):
    slices = cluster.get("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={NAME}")["items"]
    return sum(1 for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))


def claim_uids(cluster, namespace):
    return {c["metadata"]["name"]: c["metadata"]["uid"] for c in cluster.get("pvc", "-n", namespace)["items"]}


def timed(what, durations):
    """Record how long a step took (printed with -s; the reliability table quotes them)."""
    class Step:
        def __enter__(self):
            self.start = time.monotonic()

        def __exit__(self, *exc):
            durations[what] = round(time.monotonic() - self.start, 1)
    return Step()


# ---------------------------------------------------------------- self-heal


@pytest.mark.profile("k3s")
def test_a_replica_with_a_full_store_downloads_nothing_at_start(playbook, cluster, namespace):
    only_sim(cluster)
    models = [cluster.model("tiny-a"), cluster.model("tiny-b")]
    run = converge(playbook, namespace, models)
    assert run.rc == 0, run
    (old,) = ready_pods(cluster, namespace, 1)
    log = access_log(cluster)
    before = len(log_lines(log))
    started = time.monotonic()
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "-n", namespace, "--wait=false")
    (new,) = ready_pods(cluster, namespace, 1, exclude={old["metadata"]["uid"]})
    took = time.monotonic() - started
    # Not one request to the registry: the sidecar found every model in the store (ollama list) and said so.
    assert log_lines(log)[before:] == []
    assert tags(cluster, namespace, new["metadata"]["name"]) == {m: cluster.models[m] for m in models}
    said = sidecar_log(cluster, namespace, new)
    assert "ready: all 2 declared models are in the store" in said and "pulling" not in said, said
    sidecar = next(s for s in new["status"]["initContainerStatuses"] if s["name"] == "models")
    assert sidecar["ready"] and sidecar["started"]
    print(f"full store: restart to Ready {took:.1f}s, 0 registry requests")


@pytest.mark.profile("k3s")
def test_a_lost_claim_comes_back_ready_only_with_all_its_models_pulled_by_itself(playbook, cluster, namespace):
    models = [cluster.model("tiny-a"), cluster.model("tiny-b")]
    run = converge(playbook, namespace, models, ollama_storage_mode="per_replica")
    assert run.rc == 0, run
    (old,) = ready_pods(cluster, namespace, 1)
    log = access_log(cluster)
    before = len(log_lines(log))
    claim = f"models-{NAME}-0"
    old_claim = claim_uids(cluster, namespace)[claim]
    # The claim is lost with its pod: the StatefulSet makes both again, the claim empty.
    started = time.monotonic()
    cluster.kubectl("delete", "pvc", claim, "-n", namespace, "--wait=false")
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "-n", namespace, "--wait=false")

    samples = []  # (Ready, every declared model listed) of the new replica; Ready read first

    def back():
        pods = [p for p in live_pods(cluster, namespace) if p["metadata"]["uid"] != old["metadata"]["uid"]]
        if not pods:
            return None
        ready = is_ready(pods[0])
        listed = tags(cluster, namespace, pods[0]["metadata"]["name"])
        if listed is not None:
            samples.append((ready, set(listed) >= set(models)))
        return pods[0] if ready and listed is not None else None
    new = cluster.wait_for(back, timeout=120, interval=0.2, what="the new replica Ready")
    took = time.monotonic() - started
    assert claim_uids(cluster, namespace)[claim] != old_claim
    # Never Ready without its models, and seen NotReady while it lacked them.
    assert all(complete for ready, complete in samples if ready), samples
    assert (False, False) in samples, samples
    assert tags(cluster, namespace, new["metadata"]["name"]) == {m: cluster.models[m] for m in models}
    if cluster.external:
        return
    count, sent = blob_downloads(log_lines(log)[before:])
    expected = sum(registry_model_bytes(m) for m in models)
    assert count > 0 and sent >= expected, (count, sent, expected)
    said = sidecar_log(cluster, namespace, new)
    for model in models:
        assert f"pulled {model}" in said, said
    print(f"claim lost: back Ready with both models in {took:.1f}s; {count} blob downloads, {sent} bytes")


# ---------------------------------------------------------------- node loss


@pytest.fixture
def client_pod(cluster):
    """A pod of no workload of the collection's in a namespace of its own (no Pod Security level): the openai
    client runs in its network namespace."""
    name = f"client-{os.getpid()}-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", name)
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": name,
                                                                    "labels": {"app": "client"}},
                   "spec": {"containers": [{"name": "c", "image": "docker.io/ollama/ollama:0.11.4"}]}})
    pod = cluster.wait_for(lambda: next((p for p in [cluster.get("pod", "client", "-n", name)]
                                         if p["status"].get("phase") == "Running"), None),
                           timeout=60, what="the client pod")
    from sim import network
    yield name, network.pod_netns(Path(cluster.kubeconfig).parent, pod["metadata"]["uid"])
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.profile("k3s")
def test_a_gpu_node_lost_with_two_replicas_keeps_an_endpoint_and_completions(playbook, cluster, namespace,
                                                                               client_pod, tmp_path):
    only_sim(cluster)
    from sim import faults
    model = cluster.model("tiny-a")
    client_namespace, client_netns = client_pod
    # The ingress policy admits the client's namespace to the gate (kube-router enforces it).
    run = converge(playbook, namespace, [model], ollama_replicas=2,
                   ollama_workload_allowed_namespaces=[client_namespace])
    assert run.rc == 0, run
    pods = ready_pods(cluster, namespace, 2)
    lost = next(p for p in pods if p["metadata"]["name"].endswith("-0"))
    node = lost["spec"]["nodeName"]
    claims = claim_uids(cluster, namespace)
    service = cluster.get("service", NAME, "-n", namespace)["spec"]["clusterIP"]
    key = cluster.gate_keys(namespace, NAME)["clients"][0]
    stop = tmp_path / "stop"
    client = subprocess.Popen(["ip", "netns", "exec", client_netns, sys.executable, "-c", CLIENT,
                               f"http://{service}:11434/v1", key, model, str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    endpoints, done = [], threading.Event()

    def watch():
        while not done.is_set():
            endpoints.append((time.time(), ready_endpoints(cluster, namespace)))
            time.sleep(0.5)
    watcher = threading.Thread(target=watch, daemon=True)
    durations = {}
    try:
        time.sleep(3)
        watcher.start()
        went = time.time()
        with timed("node down until NotReady", durations):
            faults.set_node(node, "down", log=print)
        # Until the node controller marks the replica NotReady its endpoint stays in the Service; then it goes.
        cluster.wait_for(lambda: ready_endpoints(cluster, namespace) == 1, timeout=60, what="the lost endpoint to go")
        durations["down until the endpoint went"] = round(time.time() - went, 1)
        time.sleep(8)
        # The runbook sees no room for the replica (the other GPU node runs the other replica) and says so.
        with timed("lost_node.yml refusal", durations):
            refused = playbook("lost_node.yml", {"ollama_namespace": namespace, "ollama_lost_node": node,
                                                 "ollama_lost_node_confirm": True})
        assert refused.rc != 0
        assert "no eligible node has room" in refused.failure and "nothing was deleted" in refused.failure, refused
        assert claim_uids(cluster, namespace) == claims
    finally:
        stop.touch()
        done.set()
        watcher.join(timeout=30)
        out, err = client.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, err
    ok = [line for line in lines if line["ok"]]
    after = [line for line in ok if line["t"] > went]
    failed = [line for line in lines if not line["ok"]]
    gaps = [b["t"] - a["t"] for a, b in zip(ok, ok[1:]) if b["t"] > went]
    # One Ready endpoint throughout, and the client kept getting completions while the node was gone.
    assert endpoints and min(n for _, n in endpoints) >= 1, endpoints
    assert len(after) >= 10, lines
    assert not failed, failed
    retried = [line for line in after if line["tries"] > 1]
    print(f"node loss: {len(ok)} completions, {len(after)} after the loss, 0 failed, {len(retried)} needed a retry "
          f"(at most {max(line['tries'] for line in lines)} tries); longest gap {max(gaps):.1f}s; min ready "
          f"endpoints {min(n for _, n in endpoints)}; {durations}")
    faults.set_node(node, "up", log=print)
    ready_pods(cluster, namespace, 2, timeout=120)


@pytest.mark.profile("k3s")
def test_lost_node_runbook_moves_the_replica_which_fetches_its_models(playbook, cluster, namespace):
    only_sim(cluster)
    from sim import faults
    models = [cluster.model("tiny-a"), cluster.model("tiny-b")]
    settings = {"ollama_storage_mode": "per_replica"}
    run = converge(playbook, namespace, models, **settings)
    assert run.rc == 0, run
    (old,) = ready_pods(cluster, namespace, 1)
    node = old["spec"]["nodeName"]
    claims = claim_uids(cluster, namespace)
    runbook = {"ollama_namespace": namespace, "ollama_lost_node": node}

    # Bad input stops before any change, naming the variable and the fix.
    unconfirmed = playbook("lost_node.yml", runbook)
    assert unconfirmed.rc != 0 and "ollama_lost_node_confirm is not true" in unconfirmed.failure, unconfirmed
    assert "Fix: see what it would delete with --check" in unconfirmed.failure
    up = playbook("lost_node.yml", dict(runbook, ollama_lost_node_confirm=True))
    assert up.rc != 0 and f"ollama_lost_node={node}: node {node} is Ready" in failures(up), up
    assert "playbooks/drain.yml" in failures(up)
    nameless = playbook("lost_node.yml", {"ollama_namespace": namespace, "ollama_lost_node_confirm": True})
    assert nameless.rc != 0 and "missing required arguments: ollama_lost_node" in failures(nameless), nameless
    assert "Fix: set ollama_lost_node (str, required: The node that is gone for good.)" in failures(nameless)
    assert claim_uids(cluster, namespace) == claims
    assert [p["metadata"]["uid"] for p in live_pods(cluster, namespace)] == [old["metadata"]["uid"]]

    log = access_log(cluster)
    faults.set_node(node, "down", log=print)
    dry = playbook("lost_node.yml", runbook, check=True)
    assert dry.rc == 0, dry
    would = dry.task_results("Find the stranded claims")[0]
    assert would["changed"] and f"models-{NAME}-0 (volume" in would["actions"][0], would
    assert claim_uids(cluster, namespace) == claims
    before = len(log_lines(log))
    started = time.monotonic()
    moved = playbook("lost_node.yml", dict(runbook, ollama_lost_node_confirm=True))
    took = time.monotonic() - started
    assert moved.rc == 0, moved
    report = moved.task_results("Report what was done")[0]["msg"]
    assert any("Ready with all its models (fetched by itself)" in line for line in report), report
    (new,) = ready_pods(cluster, namespace, 1, exclude={old["metadata"]["uid"]})
    assert new["spec"]["nodeName"] != node
    assert claim_uids(cluster, namespace)[f"models-{NAME}-0"] != claims[f"models-{NAME}-0"]
    assert tags(cluster, namespace, new["metadata"]["name"]) == {m: cluster.models[m] for m in models}
    assert blob_downloads(log_lines(log)[before:])[1] >= sum(registry_model_bytes(m) for m in models)
    print(f"lost node: runbook moved the replica and it was Ready with its models in {took:.1f}s")

    faults.set_node(node, "up", log=print)
    again = converge(playbook, namespace, models, **settings)
    assert again.rc == 0 and again.changed == 0, again


# ---------------------------------------------------------------- control plane and Ollama


@pytest.mark.profile("k3s")
def test_api_server_restarted_mid_converge_fails_clearly_or_completes_and_a_rerun_converges(
        playbook, cluster, namespace):
    only_sim(cluster)
    from sim import faults
    models = [cluster.model("tiny-a"), cluster.model("tiny-b")]
    outcome = {}
    first = threading.Thread(target=lambda: outcome.update(run=converge(playbook, namespace, models)), daemon=True)
    first.start()
    # Mid-converge: once the workload is written, while the run waits for its pods and pulls the models.
    cluster.wait_for(lambda: cluster.get("deployments", "-n", namespace)["items"], timeout=300, interval=0.2,
                     what="the workload to be written")
    restarted = faults.restart("kube-apiserver", log=print)
    first.join(timeout=900)
    run = outcome["run"]
    if run.rc != 0:
        # A clear failure: the task says the API server could not be reached, and how to go on.
        assert "API server" in run.failure or "connection refused" in run.failure.lower(), run
    again = converge(playbook, namespace, models)
    assert again.rc == 0, again
    (pod,) = ready_pods(cluster, namespace, 1)
    assert tags(cluster, namespace, pod["metadata"]["name"]) == {m: cluster.models[m] for m in models}
    steady = converge(playbook, namespace, models)
    assert steady.rc == 0 and steady.changed == 0, steady
    print(f"kube-apiserver down {restarted['down_seconds']}s mid-converge: first run rc={run.rc} "
          f"({(run.failure or 'completed')[:200]}); re-run changed={again.changed}, then changed=0")


def ollama_server_pid(cluster, pod):
    """The pid of `ollama serve` in the pod (the sidecar's ollama CLI runs beside it in the same namespace)."""
    from sim import network
    netns = network.pod_netns(Path(cluster.kubeconfig).parent, pod["metadata"]["uid"])
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False).stdout.split()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ollama") and b"serve" in argv:
            return int(pid)
    return None


@pytest.mark.profile("k3s")
def test_ollama_killed_mid_pull_then_a_rerun_completes_with_verified_digests(playbook, cluster, namespace, tmp_path,
                                                                              monkeypatch):
    only_sim(cluster)
    from sim import network
    big = cluster.model("tiny-big")
    state = Path(cluster.kubeconfig).parent
    netns = network.names(state)["registry_netns"]
    assert converge(playbook, namespace, []).rc == 0
    (pod,) = ready_pods(cluster, namespace, 1)
    # model_pull writes its progress files under the controller's temporary directory: this test's own.
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    def progress():
        for path in tmp_path.glob(f"llmops-model-pull-*/{pod['metadata']['name']}.json"):
            try:
                return json.loads(path.read_text())["models"].get(big, {}).get("percent", 0)
            except (OSError, ValueError, KeyError):
                return None
        return None
    # Slow the registry's loopback (registry -> its proxy) so the 58 MB download takes seconds.
    subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "40mbit",
                    "burst", "256kb", "latency", "2s"], check=True)
    outcome = {}
    try:
        first = threading.Thread(target=lambda: outcome.update(run=converge(playbook, namespace, [big])), daemon=True)
        first.start()
        # Mid-pull: model_pull's progress says the download is under way.
        at = cluster.wait_for(lambda: (lambda p: p if p is not None and 5 <= p < 90 else None)(progress()),
                              timeout=300, interval=0.1, what="the download of tiny-big under way")
        pid = ollama_server_pid(cluster, pod)
        assert pid, "no ollama serve process in the pod"
        os.kill(pid, 9)
        first.join(timeout=900)
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", "lo", "root"], check=False)
    run = outcome["run"]
    restarts = next(s for s in cluster.get("pod", pod["metadata"]["name"], "-n", namespace)["status"]
                    ["containerStatuses"] if s["name"] == "ollama")["restartCount"]
    assert restarts >= 1
    attempts = [m.get("attempts") for result in run.task_results("Report the models on each replica")
                for item in result.get("results", []) for m in item.get("item", {}).get("models", [])]
    # The re-run pins the registry's digest: model_pull checks it, and so does the sidecar (its ID).
    again = converge(playbook, namespace, [{"name": big, "digest": cluster.models[big]}])
    assert again.rc == 0, again
    (pod,) = ready_pods(cluster, namespace, 1)
    assert tags(cluster, namespace, pod["metadata"]["name"]) == {big: cluster.models[big]}
    answer = cluster.ollama(namespace, pod["metadata"]["name"], "/api/generate",
                            {"model": big, "prompt": "hi", "stream": False, "options": {"num_predict": 4, "seed": 1}})
    assert answer["done"] is True and answer["eval_count"] == 4
    print(f"Ollama killed at {at}% of the pull: first run rc={run.rc} ({(run.failure or 'completed')[:200]}); "
          f"pull attempts {attempts}; Ollama restarted {restarts}x; re-run rc=0 changed={again.changed}, "
          f"digest {cluster.models[big][:19]} verified")
