"""A fleet in one run: three simulated clusters of different profiles (k3s, baremetal, eks) side by side, one
inventory host each in the group ollama_clusters, converged by one site.yml run in parallel, each with its own
namespace, replica count and models, read back from its own cluster; a second run changes nothing on any; a
cluster whose API server is gone fails alone, with the reason in the fleet report, while the others converge.

The clusters are the simulator's own (state, ports and pod network of their own: LLMOPS_TEST_FLEET_STATE,
LLMOPS_TEST_FLEET_PORT_BASES, LLMOPS_TEST_FLEET_POD_CIDRS); against an external cluster (LLMOPS_TEST_KUBECONFIG)
the test is skipped, since it needs three.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
_STATE = os.environ.get("LLMOPS_TEST_FLEET_STATE", str(REPO / ".sim-f"))
_BASES = [int(p) for p in os.environ.get("LLMOPS_TEST_FLEET_PORT_BASES", "27740,27840,27940").split(",")]
_CIDRS = os.environ.get("LLMOPS_TEST_FLEET_POD_CIDRS", "10.64.0.0/16,10.65.0.0/16,10.66.0.0/16").split(",")
# host -> (profile, the cluster's own settings)
FLEET = {
    "f1-k3s": ("k3s", {"ollama_namespace": "fleet-a", "ollama_replicas": 2, "models": ["tiny-a"]}),
    "f2-baremetal": ("baremetal", {"ollama_namespace": "fleet-b", "ollama_replicas": 1, "models": ["tiny-b"],
                                   "ollama_storage_install_local_path": True, "gpu_preflight_check_hosts": False}),
    "f3-eks": ("eks", {"ollama_namespace": "fleet-c", "ollama_replicas": 1, "models": ["tiny-a"],
                       "ollama_gpu_label_nodes": True}),
}
START_TIMEOUT = 600
RUN_TIMEOUT = 900


def _conftest_cluster_class():
    # The integration conftest's Cluster (kubectl, Ollama through the pod proxy and the gate), loaded by path:
    # its fixtures start one simulator, the fleet needs three.
    spec = importlib.util.spec_from_file_location("fleet_integration_conftest", REPO / "tests/integration/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Cluster


def sim_env(index):
    base = _BASES[index]
    return dict(os.environ, LLMOPS_SIM_STATE=f"{_STATE}{index + 1}", LLMOPS_SIM_API_PORT=str(base + 1),
                LLMOPS_SIM_ETCD_PORT=str(base + 2), LLMOPS_SIM_ETCD_PEER_PORT=str(base + 3),
                LLMOPS_SIM_KWOK_PORT=str(base + 4), LLMOPS_SIM_INGRESS_PORT=str(base + 5),
                LLMOPS_SIM_POD_CIDR=_CIDRS[index])


def sim_all(verbs, timeout):
    """Run `python -m sim VERB...` for the three clusters at once; {index: CompletedProcess-like (rc, output)}."""
    procs = {}
    for index, verb in verbs.items():
        procs[index] = subprocess.Popen([sys.executable, "-m", "sim", *verb], cwd=REPO / "sim", env=sim_env(index),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {}
    deadline = time.monotonic() + timeout
    for index, proc in procs.items():
        try:
            text, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        out[index] = (proc.returncode, text)
    return out


@pytest.fixture(scope="module")
def fleet():
    if os.environ.get("LLMOPS_TEST_KUBECONFIG"):
        pytest.skip("the fleet test starts three simulated clusters; an external cluster is one")
    from sim import build  # noqa: F401 (tests/integration/conftest.py put sim/ on sys.path)
    names = list(FLEET)
    down = {i: ["down"] for i in range(len(names))}
    try:
        sim_all(down, 180)
        started = sim_all({i: ["up", "--profile", FLEET[name][0]] for i, name in enumerate(names)}, START_TIMEOUT)
        failed = {names[i]: text[-3000:] for i, (rc, text) in started.items() if rc != 0}
        assert not failed, f"simulated clusters did not start: {failed}"
        Cluster = _conftest_cluster_class()
        clusters = {}
        for index, name in enumerate(names):
            state_dir = Path(f"{_STATE}{index + 1}")
            state = json.loads((state_dir / "state.json").read_text())
            clusters[name] = Cluster(state_dir / "kubeconfig", state_dir / "kubeconfig-user", FLEET[name][0],
                                     str(build.binary_path("kubectl")), False, models=state.get("models"))
        yield clusters
    finally:
        # Every cluster goes, whatever happened above.
        stopped = sim_all(down, 300)
        assert all(rc == 0 for rc, _ in stopped.values()), stopped


def host_vars(name, cluster, kubeconfig=None, **overrides):
    settings = dict(FLEET[name][1], **overrides)
    registry = next(iter(cluster.models)).split("/", 1)[0]
    variables = {k: v for k, v in settings.items() if k != "models"}
    variables.update(
        ollama_kubeconfig=str(kubeconfig or cluster.kubeconfig),
        ollama_models=[{"name": cluster.model(m)} for m in settings["models"]],
        ollama_insecure_registries=[registry],
        # The simulator's Ollama is a CPU build on counted GPUs.
        ollama_verify_allow_cpu=True)
    return variables


def write_inventory(path, hosts):
    path.write_text(yaml.safe_dump({"all": {"children": {"ollama_clusters": {
        "hosts": hosts,
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}}))
    return path


def site(inventory, report_path, timeout=RUN_TIMEOUT, playbook="site.yml"):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1", LLMOPS_FLEET_REPORT=str(report_path))
    for key in [k for k in env if k.startswith(("LLMOPS_SIM_", "K8S_AUTH_"))]:
        env.pop(key)  # each cluster host names its own cluster; nothing falls back to the environment
    started = time.monotonic()
    done = subprocess.run([str(REPO / ".venv/bin/ansible-playbook"), str(REPO / "playbooks" / playbook),
                           "-i", str(inventory)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=timeout, check=False)
    stdout = done.stdout
    result = json.loads(stdout[stdout.index("{"):]) if "{" in stdout else {}
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"rc": done.returncode, "stats": result.get("stats", {}), "report": report.get("clusters", {}),
            "stderr": done.stderr, "seconds": time.monotonic() - started, "json": result}


def workload(cluster, namespace):
    """(kind, spec.replicas, ready replicas) of the Ollama workload in namespace."""
    for kind in ("statefulset", "deployment"):
        found = cluster.get(kind, "-n", namespace, "-l", "app.kubernetes.io/instance=ollama")["items"]
        if found:
            return kind, found[0]["spec"]["replicas"], found[0]["status"].get("readyReplicas", 0)
    return None, 0, 0


def models_on_replicas(cluster, namespace):
    """{pod: sorted model names} from each running replica's own Ollama (/api/tags through its gate)."""
    pods = cluster.get("pods", "-n", namespace, "-l", "app.kubernetes.io/instance=ollama")["items"]
    return {p["metadata"]["name"]: sorted(m["name"] for m in cluster.ollama(namespace, p["metadata"]["name"],
                                                                             "/api/tags")["models"])
            for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}


def show(run):
    return f"rc={run['rc']} stats={run['stats']} report={json.dumps(run['report'], indent=1)} stderr={run['stderr'][-3000:]}"


@pytest.fixture(scope="module")
def converged(fleet, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    inventory = write_inventory(tmp / "hosts.yml", {name: host_vars(name, c) for name, c in fleet.items()})
    return {"tmp": tmp, "inventory": inventory, "first": site(inventory, tmp / "first.json")}


def test_one_run_converges_three_clusters_each_with_its_own_settings(fleet, converged):
    run = converged["first"]
    assert run["rc"] == 0, show(run)
    assert set(run["stats"]) == set(FLEET), run["stats"]
    for name, cluster in fleet.items():
        settings = FLEET[name][1]
        assert run["stats"][name]["failures"] == 0 and run["stats"][name]["changed"] > 0, (name, run["stats"])
        assert run["report"][name]["status"] == "ok", run["report"]
        # Read back from the cluster itself: its namespace, its replica count, its models on every replica.
        kind, replicas, ready = workload(cluster, settings["ollama_namespace"])
        assert (replicas, ready) == (settings["ollama_replicas"], settings["ollama_replicas"]), (name, kind)
        assert kind == ("statefulset" if settings["ollama_replicas"] > 1 else "deployment"), (name, kind)
        wanted = sorted(cluster.model(m) for m in settings["models"])
        on_replicas = models_on_replicas(cluster, settings["ollama_namespace"])
        assert len(on_replicas) == settings["ollama_replicas"], on_replicas
        assert all(models == wanted for models in on_replicas.values()), (name, on_replicas, wanted)
        # Nothing of another cluster's settings landed here.
        others = {FLEET[o][1]["ollama_namespace"] for o in FLEET if o != name}
        assert not others & {n["metadata"]["name"] for n in cluster.get("namespaces")["items"]}, name


def test_a_second_run_changes_nothing_on_any_cluster(converged):
    assert converged["first"]["rc"] == 0, show(converged["first"])
    run = site(converged["inventory"], converged["tmp"] / "second.json")
    assert run["rc"] == 0, show(run)
    assert {n: s["changed"] for n, s in run["stats"].items()} == {n: 0 for n in FLEET}, show(run)
    assert {n: r["status"] for n, r in run["report"].items()} == {n: "ok" for n in FLEET}, run["report"]


def test_a_cluster_whose_api_server_is_gone_fails_alone_with_the_reason(fleet, converged):
    assert converged["first"]["rc"] == 0, show(converged["first"])
    tmp = converged["tmp"]
    # f2's kubeconfig points at a port of its range where no API server listens (a stopped one answers alike);
    # f3 gets a second model in the same run, so "the others converge" means a change made, not a no-op.
    broken = yaml.safe_load(fleet["f2-baremetal"].kubeconfig.read_text())
    server = broken["clusters"][0]["cluster"]["server"]
    broken["clusters"][0]["cluster"]["server"] = server.rsplit(":", 1)[0] + f":{_BASES[1] + 6}"
    (tmp / "f2-stopped.kubeconfig").write_text(yaml.safe_dump(broken))
    hosts = {name: host_vars(name, c) for name, c in fleet.items()}
    hosts["f2-baremetal"] = host_vars("f2-baremetal", fleet["f2-baremetal"], kubeconfig=tmp / "f2-stopped.kubeconfig")
    hosts["f3-eks"] = host_vars("f3-eks", fleet["f3-eks"], models=["tiny-a", "tiny-b"])
    run = site(write_inventory(tmp / "broken.yml", hosts), tmp / "broken.json")

    assert run["rc"] != 0, show(run)
    assert run["stats"]["f2-baremetal"]["failures"] == 1, show(run)
    assert run["stats"]["f1-k3s"]["failures"] == 0 and run["stats"]["f3-eks"]["failures"] == 0, show(run)
    # The report names the cluster, where it stopped and why; the others are ok.
    failed = run["report"]["f2-baremetal"]
    assert failed["status"] == "failed" and "plan" in failed["task"].lower(), failed
    assert str(_BASES[1] + 6) in failed["msg"] or "connect" in failed["msg"].lower(), failed
    assert run["report"]["f1-k3s"]["status"] == "ok" and run["report"]["f3-eks"]["status"] == "ok", run["report"]
    assert "FLEET REPORT: 3 cluster(s), 2 ok, 1 failed" in run["stderr"], run["stderr"][-2000:]
    # The other two went on to the end: f3 pulled its new model on its replica; f1 changed nothing.
    assert run["stats"]["f3-eks"]["changed"] > 0 and run["stats"]["f1-k3s"]["changed"] == 0, show(run)
    wanted = sorted(fleet["f3-eks"].model(m) for m in ("tiny-a", "tiny-b"))
    assert all(m == wanted for m in models_on_replicas(fleet["f3-eks"], "fleet-c").values())
    # The broken cluster's workload is as the first run left it.
    assert workload(fleet["f2-baremetal"], "fleet-b")[1:] == (1, 1)


def test_two_hosts_on_one_workload_of_one_cluster_are_refused_before_any_change(fleet, converged, tmp_path):
    # f1's kubeconfig twice, the same namespace: each run would undo the other's settings.
    cluster = fleet["f1-k3s"]
    twin = dict(host_vars("f1-k3s", cluster, ollama_namespace="fleet-twin"), ollama_replicas=1)
    inventory = write_inventory(tmp_path / "twins.yml", {"twin-1": twin, "twin-2": dict(twin)})
    run = site(inventory, tmp_path / "twins.json")
    assert run["rc"] != 0, show(run)
    for host in ("twin-1", "twin-2"):
        assert run["report"][host]["status"] == "failed", run["report"]
        assert "reach the same cluster" in run["report"][host]["msg"], run["report"][host]
        assert "Fix: give each cluster host its own ollama_kubeconfig or ollama_context" in run["report"][host]["msg"]
    assert cluster.kubectl("get", "namespace", "fleet-twin", check=False).returncode != 0


def test_uninstall_over_the_fleet_removes_each_clusters_workload_and_keeps_its_models(fleet, converged):
    assert converged["first"]["rc"] == 0, show(converged["first"])
    run = site(converged["inventory"], converged["tmp"] / "uninstall.json", playbook="uninstall.yml")
    assert run["rc"] == 0, show(run)
    assert {n: r["status"] for n, r in run["report"].items()} == {n: "ok" for n in FLEET}, run["report"]
    for name, cluster in fleet.items():
        namespace = FLEET[name][1]["ollama_namespace"]
        assert workload(cluster, namespace)[0] is None, name
        claims = cluster.get("pvc", "-n", namespace)["items"]
        assert len(claims) == FLEET[name][1]["ollama_replicas"], (name, [c["metadata"]["name"] for c in claims])
