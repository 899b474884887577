"""Faults on command, for fault tests and demos: a node that loses its heartbeats, and one control-plane
process restarted in place.

Node loss. KWOK (0.7) is every node's kubelet: it renews each node's Lease and heartbeats its status, and
its heartbeat stage re-queues itself (immediateNextStage), so neither changing the node's
`kwok.x-k8s.io/node` annotation nor taking its Lease stops the heartbeats (both measured). What stops them
is what a real node loss does: its kubelet's writes no longer reach the API server. `down` adds the node to
a ValidatingAdmissionPolicy that refuses KWOK's own writes for it (the node and its status, its Lease, its
pods); a refused write is not retried, so KWOK's loop for that node ends. kube-controller-manager's node
lifecycle controller then marks the node NotReady after its grace period, taints it
`node.kubernetes.io/unreachable` and evicts its pods once their tolerations run out; the evicted pods stay
Terminating, as on a real cluster, until the node returns. The simulator's kubelet stops the processes of
the pods on a down node (state["down_nodes"]) and the node's SSH host goes unreachable. `up` takes the node
out of the policy, restores the annotation (KWOK initializes the node again) and hands its Lease back, so
KWOK takes it over and manages the node's pods again; once the node is Ready, the pods it kept are
reported Ready again, as a reconnecting kubelet does.
"""

import http.client
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import hosts, images, profiles
from .cluster import HOST, Cluster, _alive, _http_ok, _port_free, locked_state, read_state
from .errors import SimError
from .kube import Kube, wait_for

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
POLICY = "llmsim-node-down"
POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
KWOK_USER = "sim-kwok"  # the common name of KWOK's client certificate (pki.CLIENTS)
STATES = ("down", "up")
# kube-apiserver here may serve up to 20 s after SIGTERM: its endpoint reconciler cannot remove the loopback
# address from the `kubernetes` Service and gives up after two reconcile intervals.
STOP_TIMEOUT = 35.0
HEALTH_TIMEOUT = 120.0


def _running_state() -> dict:
    state = read_state()
    if not state:
        raise SimError("the simulated cluster is down", "start it with make sim-up")
    return state


def _api(state: dict, client: str = "simctl") -> Kube:
    return Kube(HOST, state["ports"]["apiserver"], Cluster().pki, client=client)


def _ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def _taints(node: dict) -> set:
    return {t["key"] for t in node["spec"].get("taints", [])}


# ---- node loss -----------------------------------------------------------------------------
def down_policy(down_nodes: list) -> list:
    """The policy and binding that refuse KWOK's writes on behalf of the down nodes."""
    target = ('request.resource.resource == "pods" ? '
              '(has(variables.obj.spec.nodeName) ? variables.obj.spec.nodeName : "") : '
              'request.resource.resource == "leases" ? '
              '(request.namespace == "kube-node-lease" ? variables.obj.metadata.name : "") : '
              'variables.obj.metadata.name')
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY, "labels": {"app.kubernetes.io/managed-by": "llmops-sim"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"],
                 "resources": ["nodes", "nodes/status", "pods", "pods/status"]},
                {"apiGroups": ["coordination.k8s.io"], "apiVersions": ["v1"],
                 "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["leases"]}]},
            "matchConditions": [{"name": "kwok-only", "expression": f'request.userInfo.username == "{KWOK_USER}"'}],
            "variables": [
                {"name": "obj", "expression": 'request.operation == "DELETE" ? oldObject : object'},
                {"name": "down", "expression": "[" + ", ".join(f'"{n}"' for n in sorted(down_nodes)) + "]"}],
            "validations": [{
                "expression": f"!(({target}) in variables.down)",
                "messageExpression": '"node " + (' + target + ') + " is down (sim node ... --state down): '
                                     'its kubelet does not reach the API server"',
                "reason": "Forbidden"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY, "labels": {"app.kubernetes.io/managed-by": "llmops-sim"}},
        "spec": {"policyName": POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def _apply(api: Kube, path: str, obj: dict) -> None:
    status, body = api.request("PATCH", f"{path}/{obj['metadata']['name']}", obj,
                               content_type="application/apply-patch+yaml",
                               query={"fieldManager": "llmops-sim", "force": "true"})
    if status not in (200, 201):
        raise SimError(f"applying {obj['kind']} {obj['metadata']['name']} answered {status}: {body.get('message', body)}",
                       "check the API server log under .sim/logs")


def _set_policy(api: Kube, down_nodes: list) -> None:
    if down_nodes:
        policy, binding = down_policy(down_nodes)
        _apply(api, POLICIES, policy)
        _apply(api, BINDINGS, binding)
    else:
        api.request("DELETE", f"{BINDINGS}/{POLICY}")
        api.request("DELETE", f"{POLICIES}/{POLICY}")


def _kwok_may_write(kwok: Kube, name: str) -> bool:
    """Whether the API server admits a write of KWOK's to the node now (a dry run: nothing changes)."""
    status, _ = kwok.request("PATCH", f"/api/v1/nodes/{name}", {"metadata": {"labels": {"llmops-sim/probe": "x"}}},
                             content_type="application/merge-patch+json", query={"dryRun": "All"})
    return status == 200


def _hand_lease_back(api: Kube, name: str) -> None:
    """Renew the node's Lease once, under a holder that expires at once: the node lifecycle controller sees a
    heartbeat (a deleted Lease would let it fall back to the last status heartbeat, up to 45 s old, and flap
    the node NotReady), and KWOK takes the Lease over at its next renewal, which makes it manage the node and
    its pods again."""
    for _ in range(10):
        status, lease = api.request("GET", f"{LEASES}/{name}")
        if status == 404:
            return  # KWOK creates it
        now = time.time()
        lease["spec"].update(holderIdentity="llmsim-node-up", leaseDurationSeconds=1,
                             renewTime=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z")
        status, body = api.request("PUT", f"{LEASES}/{name}", lease)
        if status == 200:
            return
        if status != 409:
            raise SimError(f"renewing node {name}'s Lease answered {status}: {body.get('message', body)}",
                           "check the API server log under .sim/logs")
    raise SimError(f"node {name}'s Lease kept changing under the simulator", "run make sim-node again")


def _ready_again(api: Kube, name: str) -> int:
    """What a kubelet that reconnects does for the pods it kept running: report them Ready again (the node
    lifecycle controller marked them NotReady; KWOK has no stage for a running pod). Returns how many."""
    pods, _ = api.list_all("/api/v1/pods", fieldSelector=f"spec.nodeName={name}")
    count = 0
    for pod in pods:
        if images.runs_for_real(pod):
            continue  # the simulator's kubelet reports those from their probes
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if (not pod["metadata"].get("deletionTimestamp") and pod["status"].get("phase") == "Running"
                and conditions.get("Ready") == "False" and conditions.get("ContainersReady") == "True"):
            patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime":
                                                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]}}
            meta = pod["metadata"]
            api.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status", patch,
                        content_type="application/strategic-merge-patch+json")
            count += 1
    return count


def set_node(name: str, wanted: str, wait: bool = True, timeout: float = 180, log=print) -> dict:
    """Take a node down or bring it back; with wait, until the node controller has seen it (up always waits
    for Ready, then reports the node's remaining pods Ready again). Returns what was measured: seconds until
    NotReady and until the unreachable taint (down), until Ready (up)."""
    if wanted not in STATES:
        raise SimError(f"unknown node state '{wanted}'", "use STATE=down or STATE=up")
    state = _running_state()
    api, kwok = _api(state), _api(state, client="kwok")
    nodes = {n["metadata"]["name"]: n for n in api.list_all("/api/v1/nodes")[0]}
    if name not in nodes:
        raise SimError(f"unknown node '{name}'", f"use one of: {', '.join(sorted(nodes))}")
    started = time.monotonic()
    with locked_state() as current:  # first, so the kubelet stops (or starts) the node's pods at once
        down = set(current.get("down_nodes") or [])
        down = down | {name} if wanted == "down" else down - {name}
        current["down_nodes"] = sorted(down)
        _set_policy(api, sorted(down))
    # The policy reaches the API server's admission through a watch: wait until it holds.
    wait_for(lambda: _kwok_may_write(kwok, name) == (wanted == "up"), 30, interval=0.2,
             what=f"the API server to {'refuse' if wanted == 'down' else 'admit'} KWOK's writes for {name}")
    annotate = {"metadata": {"annotations": {profiles.FAKE_NODE_ANNOTATION: "down" if wanted == "down" else "fake"}}}
    api.request("PATCH", f"/api/v1/nodes/{name}", annotate, content_type="application/merge-patch+json")
    if wanted == "down":
        hosts.set_link(Cluster().dir, state, name, up=False)
        log(f"node {name} is down: its heartbeats stopped, its pods' processes stopped, its SSH host unreachable")
    else:
        _hand_lease_back(api, name)
        hosts.set_link(Cluster().dir, state, name, up=True)
        log(f"node {name} is back: KWOK heartbeats it again")
    measured = {"node": name, "state": wanted}
    if not wait and wanted == "down":
        return measured
    deadline = started + timeout
    while time.monotonic() < deadline:
        status, node = api.request("GET", f"/api/v1/nodes/{name}")
        if status == 200:
            elapsed = round(time.monotonic() - started, 1)
            if wanted == "down":
                if not _ready(node):
                    measured.setdefault("not_ready_seconds", elapsed)
                if "node.kubernetes.io/unreachable" in _taints(node):
                    measured["unreachable_taint_seconds"] = elapsed
                    measured.setdefault("not_ready_seconds", elapsed)
                    log(f"node {name}: NotReady after {measured['not_ready_seconds']}s, "
                        f"tainted node.kubernetes.io/unreachable after {elapsed}s")
                    return measured
            elif _ready(node) and not _taints(node) & {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}:
                measured["ready_seconds"] = elapsed
                measured["pods_ready_again"] = _ready_again(api, name)
                log(f"node {name}: Ready again after {elapsed}s; {measured['pods_ready_again']} of its pods "
                    "reported Ready again")
                return measured
        time.sleep(0.5)
    raise SimError(f"node {name} did not turn {'NotReady' if wanted == 'down' else 'Ready'} within {timeout:.0f}s",
                   "read .sim/logs/kube-controller-manager.log and kwok.log")


# ---- restarting a component ----------------------------------------------------------------
def _connected_to(pid: int, port: int) -> bool:
    """Whether the process holds an established TCP connection to 127.0.0.1:port (its API client)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    return True
    except OSError:
        return False
    return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _apiserver_ready(state: dict, pid: int) -> bool:
    try:
        return _api(state).request("GET", "/readyz")[0] == 200
    except (OSError, http.client.HTTPException):
        return False


@dataclass
class Restartable:
    ports: tuple  # keys of state["ports"] the process listens on
    healthy: Callable  # (state, pid) -> bool


# What `sim restart` can restart, and when each counts as back. Add a row for another process of
# state["spawn"] (simctl, an ingress controller ...).
RESTARTABLE = {
    "etcd": Restartable(("etcd", "etcd_peer"), lambda state, pid: (
        _http_ok(f"http://{HOST}:{state['ports']['etcd']}/health") and _apiserver_ready(state, pid))),
    "kube-apiserver": Restartable(("apiserver",), _apiserver_ready),
    "kube-controller-manager": Restartable((), lambda state, pid: _connected_to(pid, state["ports"]["apiserver"])),
    "kube-scheduler": Restartable((), lambda state, pid: _connected_to(pid, state["ports"]["apiserver"])),
}


def restart(component: str, log=print) -> dict:
    """Stop one process and start it again with the same argv, environment, state and ports; wait until it
    is healthy. Returns the old and new pid and how long it was down."""
    if component not in RESTARTABLE:
        raise SimError(f"unknown component '{component}'", f"use one of: {', '.join(RESTARTABLE)}")
    state = _running_state()
    spec = (state.get("spawn") or {}).get(component)
    if not spec:
        raise SimError(f"this cluster was started without a record of {component}'s command line",
                       "run make sim-down and make sim-up, then restart again")
    cluster = Cluster(log=log)
    row = RESTARTABLE[component]
    old = state["pids"][component]
    started = time.monotonic()
    if _alive(old, cluster.marker):
        os.kill(old, signal.SIGTERM)
        # Stopped serving: exited, or (kube-apiserver, etcd) closed its listeners; they then drain open
        # watches for up to a minute, which a restart in place does not wait for.
        deadline = started + STOP_TIMEOUT
        while (_alive(old, cluster.marker) and time.monotonic() < deadline
               and (not row.ports or any(_listening(state["ports"][key]) for key in row.ports))):
            time.sleep(0.05)
    stopped = time.monotonic()
    if _alive(old, cluster.marker):
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(old, cluster.marker) and time.monotonic() < deadline:
            time.sleep(0.05)
    for key in row.ports:
        port = state["ports"][key]
        deadline = time.monotonic() + 10
        while not _port_free(port):
            if time.monotonic() >= deadline:
                raise SimError(f"port {port} on {HOST} ({key}) is still in use after {component} stopped",
                               f"stop what holds it (`ss -ltnp sport = :{port}`), then run make sim-restart "
                               f"COMPONENT={component} again")
            time.sleep(0.1)
    new = cluster.popen(component, spec["argv"], spec["env"])
    with locked_state() as current:
        current["pids"][component] = new
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while not row.healthy(state, new):
        if not _alive(new, cluster.marker):
            lines = (cluster.logs / f"{component}.log").read_text(errors="replace").strip().splitlines()
            raise SimError(f"{component} exited after its restart: {(lines[-1] if lines else 'no output')[:300]}",
                           "read .sim/logs/" + component + ".log; then run make sim-down and make sim-up")
        if time.monotonic() >= deadline:
            raise SimError(f"{component} did not become healthy within {HEALTH_TIMEOUT:.0f}s of its restart",
                           "read .sim/logs/" + component + ".log; then run make sim-down and make sim-up")
        time.sleep(0.05)
    healthy = time.monotonic()
    down, stop = round(healthy - stopped, 2), round(stopped - started, 2)
    log(f"{component} restarted in place (pid {old} -> {new}, same command line, state and ports): "
        f"down for {down}s, from when it stopped serving until healthy again ({stop}s from SIGTERM to stop)")
    return {"component": component, "old_pid": old, "new_pid": new, "down_seconds": down, "stop_seconds": stop}
