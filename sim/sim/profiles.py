"""Profiles: which nodes, StorageClasses, RuntimeClasses and add-ons a simulated cluster has."""

import os
from pathlib import Path

import yaml

from .errors import SimError
from .paths import PROFILES_DIR

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
MAX_SCALE_NODES = 5000


def names() -> list:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load(name: str, profiles_dir: Path = PROFILES_DIR) -> dict:
    path = profiles_dir / f"{name}.yaml"
    if not path.exists():
        raise SimError(f"unknown profile '{name}'", f"use one of: {', '.join(names())}")
    profile = yaml.safe_load(path.read_text()) or {}
    if "extends" in profile:
        base = load(profile.pop("extends"), profiles_dir)
        base.update(profile)
        profile = base
    profile["name"] = name
    return profile


def scale_node_count() -> int:
    raw = os.environ.get("LLMOPS_SIM_NODES", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SCALE_NODES:
        raise SimError(f"LLMOPS_SIM_NODES={raw!r} is not a node count", f"set it to a whole number from 1 to {MAX_SCALE_NODES}")
    return int(raw)


def _group_counts(profile: dict) -> list:
    groups = profile.get("node_groups", [])
    if not profile.get("scale"):
        return [(g, int(g.get("count", 1))) for g in groups]
    total = scale_node_count()
    counts = [max(1, int(total * g["fraction"])) for g in groups]
    counts[-1] = max(0, total - sum(counts[:-1]))
    return list(zip(groups, counts))


def node_count(profile: dict) -> int:
    return sum(count for _, count in _group_counts(profile))


def nodes(profile: dict, kube_version: str) -> list:
    """Node objects for the profile, status included (a Node keeps its status on create)."""
    suffix = profile.get("kubelet_version_suffix", "")
    out = []
    for group, count in _group_counts(profile):
        zones = group.get("zones") or []
        for index in range(count):
            name = f"{group['name']}-{index}"
            zone = zones[index % len(zones)] if zones else None
            out.append(_node(profile, group, name, zone, kube_version + suffix))
    return out


def _node(profile, group, name, zone, kubelet_version):
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    if group.get("k3s_labels"):
        labels.update({"node.kubernetes.io/instance-type": "k3s", "beta.kubernetes.io/instance-type": "k3s",
                       "k3s.io/hostname": name})
    if group.get("eks_labels"):
        labels.update({"eks.amazonaws.com/nodegroup": group["name"], "eks.amazonaws.com/capacityType": "ON_DEMAND",
                       "eks.amazonaws.com/nodegroup-image": "ami-0123456789abcdef0",
                       "k8s.io/cloud-provider-aws": "a1b2c3"})
    if group.get("instance_type"):
        labels["node.kubernetes.io/instance-type"] = group["instance_type"]
        labels["beta.kubernetes.io/instance-type"] = group["instance_type"]
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
        labels["failure-domain.beta.kubernetes.io/zone"] = zone
        if profile.get("region"):
            labels["topology.kubernetes.io/region"] = profile["region"]
            labels["topology.ebs.csi.aws.com/zone"] = zone
    gpus = int(group.get("gpus", 0))
    if gpus and group.get("feature_discovery"):
        labels.update({
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.product": group.get("gpu_product", "NVIDIA-GPU"),
            "nvidia.com/gpu.memory": str(group.get("gpu_memory_mib", 0)),
            "nvidia.com/cuda.driver.major": "550",
            "feature.node.kubernetes.io/pci-10de.present": "true",
        })
    labels.update(group.get("labels") or {})
    taints = list(group.get("taints") or [])
    if gpus and group.get("gpu_taint"):
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    resources = {"cpu": str(group.get("cpu", "16")), "memory": str(group.get("memory", "64Gi")),
                 "pods": "110", "ephemeral-storage": "200Gi"}
    # The kubelet advertises nvidia.com/gpu only while the device plugin runs on the node.
    if gpus and profile.get("device_plugin"):
        resources["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {FAKE_NODE_ANNOTATION: "fake",
                                                                     "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {"kubeletVersion": kubelet_version, "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "containerd://1.7.27", "osImage": "simulated"},
        },
    }


def storage_classes(profile: dict) -> list:
    out = []
    for sc in profile.get("storage_classes", []):
        obj = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": sc["name"], "annotations": {}},
            "provisioner": sc["provisioner"],
            "volumeBindingMode": sc.get("binding_mode", "Immediate"),
            "reclaimPolicy": sc.get("reclaim_policy", "Delete"),
            "allowVolumeExpansion": bool(sc.get("allow_expansion", False)),
        }
        if sc.get("default"):
            obj["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] = "true"
        if sc.get("parameters"):
            obj["parameters"] = {k: str(v) for k, v in sc["parameters"].items()}
        out.append(obj)
    return out


def runtime_classes(profile: dict) -> list:
    return [{"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": name}
            for name in profile.get("runtime_classes", [])]


def csi_drivers(profile: dict) -> list:
    return [{"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": name},
             "spec": {"attachRequired": name == "ebs.csi.aws.com", "podInfoOnMount": False}}
            for name in profile.get("csi_drivers", [])]


def _gpu_node_terms(profile: dict) -> list:
    """Where the device plugin runs: feature-discovery labels, or GPU instance types (as on EKS)."""
    terms = [{"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]
    gpu_types = sorted({g["instance_type"] for g in profile.get("node_groups", [])
                        if g.get("gpus") and g.get("instance_type")})
    if gpu_types:
        terms.append({"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                            "values": gpu_types}]})
    return terms


def device_plugin(profile: dict) -> list:
    """Stand-in for the NVIDIA device plugin DaemonSet: KWOK runs its pods on the GPU nodes."""
    if not profile.get("device_plugin"):
        return []
    return [{
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "nvidia-device-plugin-daemonset", "namespace": "kube-system",
                     "labels": {"app.kubernetes.io/name": "nvidia-device-plugin"}},
        "spec": {
            "selector": {"matchLabels": {"name": "nvidia-device-plugin-ds"}},
            "template": {
                "metadata": {"labels": {"name": "nvidia-device-plugin-ds"}},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": _gpu_node_terms(profile)}}},
                    "containers": [{"name": "nvidia-device-plugin-ctr",
                                    "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.1"}],
                },
            },
        },
    }]


def objects(profile: dict) -> list:
    return storage_classes(profile) + runtime_classes(profile) + csi_drivers(profile) + device_plugin(profile)
