"""Service ClusterIPs as kube-proxy's iptables mode serves them: DNAT to a ready endpoint, at random.

The rules live in the node namespace's nat table, so a pod's connection to a ClusterIP is translated before
kube-router's filter rules see it, and those judge the real source and destination pods.
"""

import subprocess
import time

from . import network

CHAIN = "LLMSIM-SERVICES"


def render(services: list, slices: list) -> str:
    """iptables-restore input for every TCP port of every ClusterIP Service with ready endpoints."""
    by_service = {}
    for eps in slices:
        meta = eps["metadata"]
        owner = (meta["namespace"], (meta.get("labels") or {}).get("kubernetes.io/service-name"))
        by_service.setdefault(owner, []).append(eps)
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        cluster_ip = svc["spec"].get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            continue
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        for port in svc["spec"].get("ports", []):
            if port.get("protocol", "TCP") != "TCP":
                continue
            targets = sorted(_ready_targets(by_service.get(key, []), port.get("name", "")))
            for index, (address, target_port) in enumerate(targets):
                remaining = len(targets) - index
                pick = [] if remaining == 1 else ["-m", "statistic", "--mode", "random",
                                                  "--probability", f"{1 / remaining:.5f}"]
                lines.append(" ".join([f"-A {CHAIN} -d {cluster_ip}/32 -p tcp --dport {port['port']}", *pick,
                                       f"-j DNAT --to-destination {address}:{target_port}"]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _ready_targets(slices: list, port_name: str) -> set:
    targets = set()
    for eps in slices:
        number = next((p.get("port") for p in eps.get("ports") or [] if p.get("name", "") == port_name), None)
        if number is None:
            continue
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                targets.update((address, number) for address in endpoint.get("addresses", []))
    return targets


def service_names(services: list) -> list:
    """[(ClusterIP, namespace, name)] of every Service with a ClusterIP: the names cluster DNS would answer."""
    result = []
    for svc in services:
        ip = (svc.get("spec") or {}).get("clusterIP")
        if ip and ip != "None":
            result.append((ip, svc["metadata"]["namespace"], svc["metadata"]["name"]))
    return sorted(result)


def hosts_lines(names: list, namespace: str) -> str:
    """/etc/hosts lines that resolve Service names as cluster DNS does for a pod in namespace: NAME.NS.svc.cluster.local,
    NAME.NS.svc, NAME.NS, and NAME alone for the pod's own namespace (the search path's first entries)."""
    lines = []
    for ip, ns, name in names:
        aliases = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == namespace:
            aliases.append(name)
        lines.append(f"{ip}\t{' '.join(aliases)}\n")
    return "".join(lines)


class ServiceProxy:
    """A loop of the simulator's controller: keeps the node namespace's nat rules on the Services."""

    def __init__(self, api, state_dir, log=print):
        self.api = api
        self.netns = network.node_netns(state_dir)
        self.log = log
        self.applied = None
        self.next_sync = 0.0
        self.names = None  # [(ClusterIP, namespace, name)], read every pass; None until the first

    def _iptables(self, *args, stdin=None, check=False):
        return subprocess.run(["ip", "netns", "exec", self.netns, *args], input=stdin, capture_output=True,
                              text=True, check=check)

    def sync(self) -> None:
        # Two list calls a round: once a second is as fast as EndpointSlices follow readiness anyway.
        if time.monotonic() < self.next_sync:
            return
        self.next_sync = time.monotonic() + 1.0
        services, _ = self.api.list_all("/api/v1/services")
        self.names = service_names(services)
        slices, _ = self.api.list_all("/apis/discovery.k8s.io/v1/endpointslices")
        rules = render(services, slices)
        if rules == self.applied:
            return
        result = self._iptables("iptables-restore", "--noflush", stdin=rules)
        if result.returncode != 0:
            self.log(f"service proxy: iptables-restore failed: {result.stderr.strip()}")
            return
        for hook in ("PREROUTING", "OUTPUT"):
            if self._iptables("iptables", "-t", "nat", "-C", hook, "-j", CHAIN).returncode != 0:
                self._iptables("iptables", "-t", "nat", "-A", hook, "-j", CHAIN)
        self.applied = rules
