"""Every playbook reaches only the inventory's cluster.

Each playbook of playbooks/ runs with the K8S_AUTH_* variables and KUBECONFIG unset and HOME pointing at a temporary
directory whose ~/.kube/config has a decoy current context. The decoy's server is a loopback port where a listener
records every connection. A task whose module fell back to ~/.kube/config (a module outside the module_defaults of
playbooks/vars/cluster_auth.yml) would connect there; none may. The playbooks run in the order a user would:
preflight, preflight + storage, site, models, verify (with the restart check), upgrade, drain and uncordon, lost
node, uninstall.
"""

import json
import os
import socket
import threading

import pytest

NAME = "ollama"


class Decoy:
    """A TCP listener on 127.0.0.1 that records each connection and closes it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.close()

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def decoy_home(tmp_path, monkeypatch):
    """HOME with a ~/.kube/config whose current context is the decoy; no K8S_AUTH_* and no KUBECONFIG."""
    decoy = Decoy()
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "decoy",
        "clusters": [{"name": "decoy", "cluster": {"server": f"https://127.0.0.1:{decoy.port}",
                                                   "insecure-skip-tls-verify": True}}],
        "users": [{"name": "decoy", "user": {"token": "decoy-token"}}],
        "contexts": [{"name": "decoy", "context": {"cluster": "decoy", "user": "decoy"}}]}))
    for key in list(os.environ):
        if key.startswith("K8S_AUTH_") or key == "KUBECONFIG":
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    # async_status resolves ~ from the password database, the async wrapper from HOME: name one directory.
    monkeypatch.setenv("ANSIBLE_ASYNC_DIR", str(home / ".ansible_async"))
    try:
        yield decoy
    finally:
        decoy.close()


@pytest.mark.profile("k3s")
def test_every_playbook_talks_to_the_inventorys_cluster_and_never_to_the_current_context(
        playbook, cluster, namespace, decoy_home):
    model = {"name": cluster.model("tiny-a"), "size": 330043}
    base = {"ollama_namespace": namespace, "ollama_namespace_manage_labels": True, "ollama_models": [model]}
    server = next(n["metadata"]["name"] for n in cluster.get("nodes")["items"]
                  if "node-role.kubernetes.io/control-plane" in n["metadata"].get("labels", {}))
    runs = [
        ("preflight.yml", {}),
        ("../tests/integration/collection/chain-preflight-storage.yml", {}),
        ("site.yml", {}),
        ("models.yml", {}),
        ("verify.yml", {"ollama_verify_restart": True}),
        ("upgrade.yml", {}),
        ("drain.yml", {"ollama_drain_node": server}),
        ("drain.yml", {"ollama_drain_node": server, "ollama_drain_uncordon": True}),
        # A node no claim is pinned to: the runbook reads the node, the workload, its claims and volumes, moves nothing.
        ("lost_node.yml", {"ollama_lost_node": "node-that-is-gone", "ollama_lost_node_confirm": True}),
        ("uninstall.yml", {"ollama_purge": True}),
    ]
    for name, variables in runs:
        run = playbook(name, dict(base, **variables))
        assert run.rc == 0, (name, run)
        assert decoy_home.connections == [], f"{name} connected to the decoy context {decoy_home.connections}"
    assert cluster.get("deployments,statefulsets,pvc", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_a_module_outside_the_group_would_have_reached_the_decoy(playbook, cluster, tmp_path, decoy_home):
    """The decoy works: a task without the collection's module_defaults falls back to ~/.kube/config."""
    path = tmp_path / "bare.yml"
    path.write_text(json.dumps([{"name": "No module_defaults", "hosts": "localhost", "connection": "local",
                                 "gather_facts": False,
                                 "tasks": [{"name": "Read nodes", "kubernetes.core.k8s_info": {"kind": "Node"},
                                            "ignore_errors": True}]}]))
    run = playbook(str(path))
    assert run.rc == 0, run
    assert decoy_home.connections, "the decoy saw nothing: the test would prove nothing"
