"""Each simulator profile looks like the cluster it stands for."""

import pytest

from test_faithful import gpu_pod


def storage_classes(cluster):
    return {sc["metadata"]["name"]: sc for sc in cluster.get("storageclasses")["items"]}


def device_plugin_pods_ready(cluster):
    found = cluster.get("daemonsets", "-n", "kube-system")["items"]
    plugin = [d for d in found if "nvidia-device-plugin" in d["metadata"]["name"]]
    return plugin and plugin[0]["status"].get("numberReady", 0)


@pytest.mark.profile("k3s")
def test_k3s_profile_has_bundled_local_path_nvidia_runtime_class_and_device_plugin(cluster):
    classes = storage_classes(cluster)
    assert list(classes) == ["local-path"]
    sc = classes["local-path"]
    assert sc["provisioner"] == "rancher.io/local-path" and sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert [rc["handler"] for rc in cluster.get("runtimeclasses")["items"]] == ["nvidia"]
    assert cluster.wait_for(lambda: device_plugin_pods_ready(cluster) == 2, what="device plugin on both GPU nodes")
    nodes = cluster.get("nodes")["items"]
    gpu = [n for n in nodes if n["status"]["allocatable"].get("nvidia.com/gpu") == "1"]
    assert len(gpu) == 2 and len(nodes) == 3
    for node in gpu:
        assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "k3s"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert node["status"]["nodeInfo"]["kubeletVersion"].endswith("+k3s1")


@pytest.mark.profile("baremetal")
def test_baremetal_profile_has_no_storage_class_so_claims_stay_pending(cluster, namespace):
    assert storage_classes(cluster) == {}
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "m", "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    cluster.create(gpu_pod("user", namespace, claim="m"))
    import time
    time.sleep(3)
    assert cluster.get("pvc", "m", "-n", namespace)["status"]["phase"] == "Pending"
    assert cluster.get("pod", "user", "-n", namespace)["status"]["phase"] == "Pending"


@pytest.mark.profile("eks")
def test_eks_profile_spreads_gpu_nodes_over_zones_and_pins_gp3_volumes_to_a_zone(cluster, namespace):
    nodes = cluster.get("nodes")["items"]
    gpu = [n for n in nodes if n["status"]["allocatable"].get("nvidia.com/gpu")]
    assert sorted(n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in gpu) == ["us-east-1a", "us-east-1b"]
    assert all("nvidia.com/gpu.present" not in n["metadata"]["labels"] for n in nodes)
    assert all(n["metadata"]["labels"]["eks.amazonaws.com/nodegroup"] for n in nodes)
    assert storage_classes(cluster)["gp3"]["provisioner"] == "ebs.csi.aws.com"
    assert cluster.wait_for(lambda: device_plugin_pods_ready(cluster) == 2, what="device plugin on the GPU node group")
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "m", "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}})
    cluster.create(gpu_pod("user", namespace, claim="m"))
    cluster.wait_for(lambda: cluster.get("pvc", "m", "-n", namespace)["status"]["phase"] == "Bound", what="Bound")
    node = cluster.wait_for(lambda: cluster.get("pod", "user", "-n", namespace)["spec"].get("nodeName"), what="bound pod")
    zone = cluster.get("node", node)["metadata"]["labels"]["topology.kubernetes.io/zone"]
    pv = cluster.get("pv", cluster.get("pvc", "m", "-n", namespace)["spec"]["volumeName"])
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}
    assert pv["spec"]["csi"]["driver"] == "ebs.csi.aws.com"


@pytest.mark.profile("eks-efs")
def test_rwx_claim_binds_immediately_and_serves_pods_on_two_nodes(cluster, namespace):
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "s", "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "efs-sc",
                            "resources": {"requests": {"storage": "5Gi"}}}})
    cluster.wait_for(lambda: cluster.get("pvc", "s", "-n", namespace)["status"]["phase"] == "Bound", what="Bound")
    for name in ("a", "b"):
        cluster.create(gpu_pod(name, namespace, claim="s"))
    placed = cluster.wait_for(lambda: [p["spec"].get("nodeName") for p in cluster.get("pods", "-n", namespace)["items"]
                                       if p["status"].get("phase") == "Running"] or None, what="pods")
    cluster.wait_for(lambda: len({p["spec"].get("nodeName") for p in cluster.get("pods", "-n", namespace)["items"]
                                  if p["status"].get("phase") == "Running"}) == 2, what="both pods on two nodes")
    assert placed


@pytest.mark.profile("no-gpu")
def test_no_gpu_profile_has_no_gpu_nodes_and_no_device_plugin(cluster):
    assert cluster.gpu_nodes() == []
    assert not device_plugin_pods_ready(cluster)


@pytest.mark.profile("no-device-plugin")
def test_no_device_plugin_profile_has_gpu_nodes_without_the_plugin(cluster):
    # GPU hardware (feature-discovery labels) but no nvidia.com/gpu: nothing advertises it.
    labelled = [n for n in cluster.get("nodes")["items"]
                if n["metadata"]["labels"].get("nvidia.com/gpu.present") == "true"]
    assert len(labelled) == 2 and cluster.gpu_nodes() == []
    names = [d["metadata"]["name"] for d in cluster.get("daemonsets", "-A")["items"]]
    assert not [n for n in names if "nvidia" in n]
