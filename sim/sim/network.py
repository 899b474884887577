"""The simulated cluster's pod network, laid out as a k3s node lays out its own.

- The node namespace `llmsim-<sfx>` stands for the nodes: the host (where kube-apiserver, the tests and
  Ansible run, as on a k3s server) links to it with a veth pair and routes the pod CIDR into it. Its host side
  carries NODE_IP, every simulated node's InternalIP, so traffic from the host reaches pods from the node
  address. The policy engine and the service proxy keep their rules here, and probes start here (the
  kubelet's place), so every path into a pod crosses them.
- Every pod the simulator runs for real, the model registry and the SSH hosts get a namespace of their own
  (a sandbox), routed from the node namespace over a veth pair: eth0 with the address /32, a default route
  through the link-local gateway that the node side answers by proxy ARP (as Calico does).
"""

import ctypes
import hashlib
import ipaddress
import os
import re
import socket
import subprocess
import threading
from pathlib import Path

from .errors import SimError

NODE_IP = "10.250.0.1"
GATEWAY_IP = "169.254.1.1"
NETNS_DIR = Path("/run/netns")
_SIM_HOST_LINK = re.compile(r"lsh[0-9a-f]{6}")
_CLONE_NEWNET = 0x40000000
_setns_lock = threading.Lock()


def suffix(state_dir: Path) -> str:
    return hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:6]


def names(state_dir: Path) -> dict:
    sfx = suffix(state_dir)
    return {"netns": f"llmsim-{sfx}", "host_if": f"lsh{sfx}", "node_if": f"lsn{sfx}",
            "registry_netns": sandbox_netns(state_dir, "registry")}


def node_netns(state_dir: Path) -> str:
    return names(state_dir)["netns"]


def sandbox_netns(state_dir: Path, key: str) -> str:
    return f"llmsim-{suffix(state_dir)}-{_short(key)}"


def pod_netns(state_dir: Path, uid: str) -> str:
    return sandbox_netns(state_dir, "pod-" + uid)


def node_address(pod_cidr: str) -> str:
    """The node namespace's own address: the pod CIDR's second-last (KWOK hands out pod IPs from the start)."""
    return str(ipaddress.ip_network(pod_cidr).broadcast_address - 1)


def registry_ip(pod_cidr: str) -> str:
    """The fifth-last address of the pod CIDR: KWOK hands out pod IPs from the start."""
    return str(ipaddress.ip_network(pod_cidr).broadcast_address - 5)


def _short(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SimError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}",
                       "run as root with iproute2 installed (make deps); network namespaces need CAP_NET_ADMIN")
    return result


def _sysctl(netns: str, key: str, value: str) -> None:
    ip("netns", "exec", netns, "sysctl", "-qw", f"{key}={value}")


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


# ---- the node namespace ------------------------------------------------------------------------
def setup(state_dir: Path, pod_cidr: str, live_suffixes=frozenset) -> dict:
    """`live_suffixes()`: the suffixes of the simulated clusters running now (their owner marks' state dirs)."""
    n = names(state_dir)
    node, host_if, node_if = n["netns"], n["host_if"], n["node_if"]
    cleanup(state_dir)
    claim_pod_cidr(pod_cidr, host_if, live_suffixes)
    ip("netns", "add", node)
    ip("link", "add", host_if, "type", "veth", "peer", "name", node_if, "netns", node)
    ip("addr", "add", f"{NODE_IP}/32", "dev", host_if)
    ip("link", "set", host_if, "up")
    ip("route", "add", pod_cidr, "dev", host_if)
    ip("-n", node, "link", "set", "lo", "up")
    # The sandboxes' gateway, and the node's own address in the pod CIDR (as k3s's cni0 has one): the source
    # of the node's own connections (probes, kube-router's API calls), which the host routes back.
    ip("-n", node, "addr", "add", f"{GATEWAY_IP}/32", "scope", "link", "dev", "lo")
    ip("-n", node, "addr", "add", f"{node_address(pod_cidr)}/32", "dev", "lo")
    ip("-n", node, "link", "set", node_if, "up")
    ip("-n", node, "route", "add", NODE_IP, "dev", node_if)
    ip("-n", node, "route", "add", "default", "via", NODE_IP, "dev", node_if)
    _sysctl(node, "net.ipv4.ip_forward", "1")
    # The host asks for pod addresses on the link; the node answers for the sandboxes it routes to.
    _sysctl(node, f"net.ipv4.conf.{node_if}.proxy_arp", "1")
    reg_ip = registry_ip(pod_cidr)
    create_sandbox(state_dir, "registry", reg_ip)
    return dict(n, registry_ip=reg_ip, node_ip=NODE_IP, node_address=node_address(pod_cidr))


def cleanup(state_dir: Path) -> None:
    """Remove every namespace and link of this cluster (the sandboxes' veths go with their namespaces)."""
    _remove_network(suffix(state_dir))


def _remove_network(sfx: str, prefixes: tuple = ()) -> None:
    if NETNS_DIR.exists():
        for entry in NETNS_DIR.iterdir():
            if entry.name.startswith((f"llmsim-{sfx}-", *prefixes)):
                ip("netns", "del", entry.name, check=False)
    ip("netns", "del", f"llmsim-{sfx}", check=False)
    ip("link", "del", f"lsh{sfx}", check=False)


def _routes_inside(pod_cidr: str) -> list:
    """(destination, device) of the main table's routes that lie inside the pod CIDR (it or narrower)."""
    cidr = ipaddress.ip_network(pod_cidr)
    shown = ip("-4", "-o", "route", "show", "table", "main", check=False).stdout
    found = []
    for line in shown.splitlines():
        words = line.split()
        if not words or "dev" not in words:
            continue
        try:
            dst = ipaddress.ip_network(words[0], strict=False)
        except ValueError:  # default, unreachable, blackhole ...
            continue
        if dst.subnet_of(cidr):
            found.append((str(dst), words[words.index("dev") + 1]))
    return found


def _has_processes(netns: str) -> bool:
    return bool(ip("netns", "pids", netns, check=False).stdout.strip())


def claim_pod_cidr(pod_cidr: str, host_if: str, live_suffixes) -> None:
    """Take the pod CIDR for this cluster. A route inside it from a simulated cluster whose processes are all
    gone (a run killed before `sim down`) is that cluster's leftover network: remove it. Any other route
    would send part of the pod network elsewhere: refuse it, naming the route."""
    foreign = [(dst, dev) for dst, dev in _routes_inside(pod_cidr) if dev != host_if]
    live = live_suffixes() if foreign else set()
    for dst, dev in foreign:
        sfx = dev[len("lsh"):] if _SIM_HOST_LINK.fullmatch(dev) else None
        if sfx and sfx not in live and not _has_processes(f"llmsim-{sfx}"):
            _remove_network(sfx, prefixes=(f"llmhost-{sfx}-",))  # its GPU hosts' namespaces too
            continue
        owner = "another simulated cluster that is running" if sfx else "not the simulator's"
        raise SimError(f"the pod CIDR {pod_cidr} is already routed on this machine: {dst} dev {dev} ({owner})",
                       "set LLMOPS_SIM_POD_CIDR (LLMOPS_TEST_SIM_POD_CIDR for the tests) to a range no route "
                       "uses (`ip route` lists them), or stop that cluster with its `sim down`")


# ---- sandboxes ---------------------------------------------------------------------------------
def node_side_link(key: str) -> str:
    """The sandbox's veth in the node namespace."""
    return "lv" + _short(key)


def create_sandbox(state_dir: Path, key: str, address: str, netns: str = None) -> str:
    """A network namespace with `address` on eth0, routed from the node namespace. Idempotent."""
    node = node_netns(state_dir)
    netns = netns or sandbox_netns(state_dir, key)
    node_side = node_side_link(key)
    if _netns_exists(netns):
        current = ip("-n", netns, "-4", "-o", "addr", "show", "dev", "eth0", check=False).stdout
        if f" {address}/32 " in current:
            ip("-n", node, "route", "replace", f"{address}/32", "dev", node_side)
            return netns
        delete_sandbox(state_dir, key, netns)
    ip("netns", "add", netns)
    try:
        ip("-n", node, "link", "add", node_side, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", f"{address}/32", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "route", "add", GATEWAY_IP, "dev", "eth0")
        ip("-n", netns, "route", "add", "default", "via", GATEWAY_IP, "dev", "eth0")
        ip("-n", node, "link", "set", node_side, "up")
        _sysctl(node, f"net.ipv4.conf.{node_side}.proxy_arp", "1")
        # KWOK hands a freed address to the next pod at once: the newest sandbox owns the route.
        ip("-n", node, "route", "replace", f"{address}/32", "dev", node_side)
    except SimError:
        ip("netns", "del", netns, check=False)
        raise
    return netns


def delete_sandbox(state_dir: Path, key: str, netns: str = None) -> None:
    ip("-n", node_netns(state_dir), "link", "del", node_side_link(key), check=False)
    ip("netns", "del", netns or sandbox_netns(state_dir, key), check=False)


def create_pod_sandbox(state_dir: Path, uid: str, address: str) -> str:
    return create_sandbox(state_dir, "pod-" + uid, address)


def delete_pod_sandbox(state_dir: Path, uid: str) -> None:
    delete_sandbox(state_dir, "pod-" + uid)


# ---- reaching into a namespace from this process ------------------------------------------------
def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in_netns(netns: str, family=socket.AF_INET, kind=socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in `netns` (sockets keep the namespace they were made in); this thread returns home."""
    with _setns_lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(str(NETNS_DIR / netns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(family, kind)
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)


def connect_in_netns(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    sock = socket_in_netns(netns)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def api_endpoint(state: dict) -> tuple:
    """Where a process in a pod reaches kube-apiserver: the relay on the node address."""
    return NODE_IP, state["ports"]["apiserver"]
