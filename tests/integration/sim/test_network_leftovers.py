"""The pod network of a simulated cluster that was killed before `sim down` (its namespaces and its host route
stay behind) is reclaimed by the next start; a pod CIDR that a running cluster or another route holds is
refused with the fix. Real namespaces, links and routes; a CIDR of its own, so a cluster beside it is untouched."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))

from sim import cluster, network  # noqa: E402
from sim.errors import SimError  # noqa: E402

CIDR = "10.247.0.0/16"


def routes():
    return subprocess.run(["ip", "-4", "-o", "route", "show"], capture_output=True, text=True, check=True).stdout


def namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def state_dirs(tmp_path):
    dirs = [tmp_path / "killed", tmp_path / "next"]
    for d in dirs:
        d.mkdir()
    yield dirs
    for d in dirs:
        network.cleanup(d)


def test_a_killed_clusters_network_is_reclaimed_by_the_next_start(state_dirs):
    killed, nxt = state_dirs
    network.setup(killed, CIDR)  # then its processes die: nothing runs `sim down`
    stale_link = network.names(killed)["host_if"]
    assert f"{CIDR} dev {stale_link}" in routes()

    network.setup(nxt, CIDR, cluster._live_owner_suffixes)

    assert f"{CIDR} dev {network.names(nxt)['host_if']}" in routes()
    assert stale_link not in routes()
    assert network.node_netns(killed) not in namespaces()
    assert network.sandbox_netns(killed, "registry") not in namespaces()


def test_a_running_clusters_pod_cidr_is_refused_and_left_alone(state_dirs):
    running, nxt = state_dirs
    network.setup(running, CIDR)
    owner = subprocess.Popen(["sleep", "30"], env={cluster.OWNER_ENV: str(running.resolve()), "PATH": "/usr/bin:/bin"})
    try:
        with pytest.raises(SimError) as err:
            network.setup(nxt, CIDR, cluster._live_owner_suffixes)
    finally:
        owner.kill()
        owner.wait()
    assert f"{CIDR} dev {network.names(running)['host_if']}" in str(err.value)
    assert "another simulated cluster that is running" in str(err.value)
    assert "LLMOPS_SIM_POD_CIDR" in err.value.fix and "sim down" in err.value.fix
    assert f"{CIDR} dev {network.names(running)['host_if']}" in routes()
    assert network.node_netns(running) in namespaces()
    assert network.node_netns(nxt) not in namespaces()


def test_a_route_that_is_not_the_simulators_is_refused_and_kept(state_dirs):
    _, nxt = state_dirs
    subprocess.run(["ip", "link", "add", "lsxleft0", "type", "veth", "peer", "name", "lsxleft1"], check=True)
    try:
        subprocess.run(["ip", "link", "set", "lsxleft0", "up"], check=True)
        subprocess.run(["ip", "route", "add", "10.247.3.0/24", "dev", "lsxleft0"], check=True)
        with pytest.raises(SimError) as err:
            network.setup(nxt, CIDR, cluster._live_owner_suffixes)
        assert "10.247.3.0/24 dev lsxleft0 (not the simulator's)" in str(err.value)
        assert "10.247.3.0/24 dev lsxleft0" in routes()
    finally:
        subprocess.run(["ip", "link", "del", "lsxleft0"], check=False)
