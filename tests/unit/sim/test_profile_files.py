"""Profile files turn into the Kubernetes objects a real cluster of that kind would have."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import profiles  # noqa: E402
from sim.errors import SimError  # noqa: E402


def by_name(nodes):
    return {n["metadata"]["name"]: n for n in nodes}


def test_every_profile_loads_and_yields_nodes():
    for name in profiles.names():
        profile = profiles.load(name)
        assert profiles.nodes(profile, "v1.34.4"), name


def test_k3s_gpu_nodes_carry_feature_discovery_labels_taint_and_k3s_version():
    nodes = by_name(profiles.nodes(profiles.load("k3s"), "v1.34.4"))
    gpu = nodes["k3s-gpu-0"]
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.memory"] == "24564"
    assert gpu["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert gpu["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4+k3s1"
    assert "nvidia.com/gpu" not in nodes["k3s-server-0"]["status"]["allocatable"]


def test_eks_nodes_have_zones_and_no_feature_discovery():
    nodes = profiles.nodes(profiles.load("eks"), "v1.34.4")
    zones = sorted(n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes
                   if "nvidia.com/gpu" in n["status"]["allocatable"])
    assert zones == ["us-east-1a", "us-east-1b"]
    assert not any("nvidia.com/gpu.present" in n["metadata"]["labels"] for n in nodes)


def test_extends_overrides_only_what_it_names():
    plain, negative = profiles.load("k3s"), profiles.load("no-device-plugin")
    assert negative["device_plugin"] is False and plain["device_plugin"] is True
    assert negative["node_groups"] == plain["node_groups"]
    assert profiles.device_plugin(negative) == []


def test_scale_profile_honours_the_node_count(monkeypatch):
    monkeypatch.setenv("LLMOPS_SIM_NODES", "1000")
    nodes = profiles.nodes(profiles.load("scale"), "v1.34.4")
    assert len(nodes) == 1000
    assert sum("nvidia.com/gpu" in n["status"]["allocatable"] for n in nodes) == 250


@pytest.mark.parametrize("raw", ["0", "5001", "many"])
def test_scale_profile_rejects_a_bad_node_count(monkeypatch, raw):
    monkeypatch.setenv("LLMOPS_SIM_NODES", raw)
    with pytest.raises(SimError) as err:
        profiles.nodes(profiles.load("scale"), "v1.34.4")
    assert "LLMOPS_SIM_NODES" in err.value.cause and "5000" in err.value.fix


def test_unknown_profile_lists_known_ones():
    with pytest.raises(SimError) as err:
        profiles.load("gke")
    assert "k3s" in err.value.fix and "eks" in err.value.fix


def test_without_the_device_plugin_gpu_nodes_advertise_no_gpus():
    nodes = profiles.nodes(profiles.load("no-device-plugin"), "v1.34.4")
    gpu_labelled = [n for n in nodes if n["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"]
    assert len(gpu_labelled) == 2
    assert not any("nvidia.com/gpu" in n["status"]["allocatable"] for n in nodes)
