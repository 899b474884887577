"""NetworkPolicy enforced by kube-router's network policy controller, the engine k3s embeds.

It runs inside the node namespace (network.py) with its iptables and ipsets there, so traffic from the host
(the API server's pod proxy), from Traefik and between pods crosses its rules as it would on a k3s node.
Every simulated node carries network.NODE_IP, so one controller with the pods' HostIP sees every pod as local.
"""

import subprocess
import time

from . import network
from .errors import SimError

CLUSTER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "llmsim:kube-router"},
    "rules": [
        {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services", "endpoints"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch"]},
    ],
}
CLUSTER_ROLE_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
    "metadata": {"name": "llmsim:kube-router"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "llmsim:kube-router"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-router"}],
}


def enabled(profile: dict) -> bool:
    """Enforced unless the profile says otherwise: EKS's VPC CNI enforces no NetworkPolicy until its policy agent
    is turned on, and the scale profile runs no pods for real (thousands of nodes gain nothing from an engine)."""
    default = not profile.get("scale") and profile.get("distribution") != "eks"
    return bool(profile.get("network_policy", default))


def argv(binary, state_dir, kubeconfig, node_name: str, service_cidr: str) -> list:
    return ["ip", "netns", "exec", network.node_netns(state_dir), str(binary),
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            f"--kubeconfig={kubeconfig}", f"--hostname-override={node_name}",
            f"--service-cluster-ip-range={service_cidr}",
            # Rules follow policy and pod changes within a second; the full resync is the safety net.
            "--iptables-sync-period=30s", "--health-port=0", "--metrics-port=0", "--v=1"]


def rules_installed(state_dir) -> bool:
    """kube-router has synced once: its top-level chains hook FORWARD in the node namespace."""
    result = subprocess.run(["ip", "netns", "exec", network.node_netns(state_dir), "iptables", "-S", "FORWARD"],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0 and "KUBE-ROUTER-FORWARD" in result.stdout


def check_tools() -> None:
    for tool, package in (("iptables", "iptables"), ("ipset", "ipset")):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, check=False).returncode != 0:
            raise SimError(f"{tool} is not installed; kube-router enforces NetworkPolicy with it",
                           f"apt-get install -y {package} (make deps does this), then make sim-up again")


def wait_synced(state_dir, alive, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rules_installed(state_dir):
            return
        alive()
        time.sleep(0.5)
    raise SimError(f"kube-router installed no rules in {network.node_netns(state_dir)} within {timeout:.0f}s",
                   "read .sim/logs/kube-router.log; check iptables and ipset work (make deps), then make sim-up")
