"""Dynamic provisioning the way the real provisioners behave, keyed by the StorageClass's provisioner.

Each volume is a directory under the state directory; its path is kept in a PV annotation so the
pod runtime can mount it as the Ollama model store.
"""

import hashlib
import shutil
from pathlib import Path

from .kube import Kube

PATH_ANNOTATION = "sim.llmops.dev/path"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"

RWO_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}
# provisioner -> (access modes it can serve, how the PV is pinned)
PROVISIONERS = {
    "rancher.io/local-path": (RWO_MODES, "node"),
    "ebs.csi.aws.com": (RWO_MODES, "zone"),
    "efs.csi.aws.com": (RWO_MODES | {"ReadWriteMany", "ReadOnlyMany"}, None),
    "nfs.csi.k8s.io": (RWO_MODES | {"ReadWriteMany", "ReadOnlyMany"}, None),
    "cluster.local/nfs-subdir-external-provisioner": (RWO_MODES | {"ReadWriteMany", "ReadOnlyMany"}, None),
}


class Provisioner:
    def __init__(self, api: Kube, state_dir: Path, log=print):
        self.api = api
        self.volumes = state_dir / "volumes"
        self.log = log
        self.reported = set()

    def sync(self) -> None:
        classes = {sc["metadata"]["name"]: sc for sc in self.api.list_all("/apis/storage.k8s.io/v1/storageclasses")[0]}
        claims, _ = self.api.list_all("/api/v1/persistentvolumeclaims")
        volumes, _ = self.api.list_all("/api/v1/persistentvolumes")
        bound_claims = {v["spec"].get("claimRef", {}).get("uid") for v in volumes}
        for claim in claims:
            if claim["spec"].get("volumeName") or claim["metadata"]["uid"] in bound_claims:
                continue
            if claim["metadata"].get("deletionTimestamp"):
                continue
            sc = classes.get(claim["spec"].get("storageClassName") or "")
            if sc and sc["provisioner"] in PROVISIONERS:
                self._provision(claim, sc)
        for volume in volumes:
            self._reclaim(volume)

    def _fail(self, claim: dict, message: str) -> None:
        key = (claim["metadata"]["uid"], message)
        if key in self.reported:
            return
        self.reported.add(key)
        meta = claim["metadata"]
        self.api.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": meta["name"] + ".", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"], "name": meta["name"],
                               "uid": meta["uid"], "apiVersion": "v1"},
            "reason": "ProvisioningFailed", "message": message, "type": "Warning",
            "source": {"component": "llmops-sim-provisioner"},
        })
        self.log(f"{meta['namespace']}/{meta['name']}: {message}")

    def _provision(self, claim: dict, sc: dict) -> None:
        provisioner = sc["provisioner"]
        modes_ok, pinning = PROVISIONERS[provisioner]
        meta = claim["metadata"]
        modes = claim["spec"].get("accessModes") or ["ReadWriteOnce"]
        unsupported = [m for m in modes if m not in modes_ok]
        if unsupported:
            self._fail(claim, f"failed to provision volume with StorageClass \"{sc['metadata']['name']}\": "
                              f"{provisioner} does not support access mode(s) {', '.join(unsupported)}")
            return
        node_name = (meta.get("annotations") or {}).get(SELECTED_NODE)
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not node_name:
            return  # the scheduler picks the node first
        name = "pvc-" + meta["uid"]
        path = self.volumes / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        spec = {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": claim["spec"].get("volumeMode", "Filesystem"),
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                         "name": meta["name"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
        }
        handle = hashlib.sha256(name.encode()).hexdigest()[:17]
        if provisioner == "rancher.io/local-path":
            spec["hostPath"] = {"path": str(path), "type": "DirectoryOrCreate"}
        elif provisioner == "ebs.csi.aws.com":
            spec["csi"] = {"driver": provisioner, "volumeHandle": f"vol-{handle}", "fsType": "ext4"}
        elif provisioner == "efs.csi.aws.com":
            fs_id = (sc.get("parameters") or {}).get("fileSystemId", "fs-0")
            spec["csi"] = {"driver": provisioner, "volumeHandle": f"{fs_id}::fsap-{handle}"}
        else:
            spec["csi"] = {"driver": provisioner, "volumeHandle": f"nfs#{handle}"}
        if pinning and node_name:
            node = self.api.get(f"/api/v1/nodes/{node_name}")
            labels = node["metadata"].get("labels", {})
            key, value = ("kubernetes.io/hostname", node_name) if pinning == "node" else (
                "topology.kubernetes.io/zone", labels.get("topology.kubernetes.io/zone"))
            if value:
                spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}]}}
        self.api.create({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: provisioner, PATH_ANNOTATION: str(path)}},
            "spec": spec,
        })
        self.log(f"provisioned {name} for {meta['namespace']}/{meta['name']} ({provisioner}"
                 + (f", node {node_name}" if node_name else "") + ")")

    def _reclaim(self, volume: dict) -> None:
        annotations = volume["metadata"].get("annotations") or {}
        if annotations.get(PROVISIONED_BY) not in PROVISIONERS:
            return
        if volume.get("status", {}).get("phase") != "Released" or volume["spec"].get(
                "persistentVolumeReclaimPolicy") != "Delete":
            return
        path = Path(annotations.get(PATH_ANNOTATION, ""))
        if path.parent == self.volumes:
            shutil.rmtree(path, ignore_errors=True)
        self.api.request("DELETE", f"/api/v1/persistentvolumes/{volume['metadata']['name']}")
        self.log(f"deleted {volume['metadata']['name']} (reclaim policy Delete)")
