"""A pod's volumes, set up on the host as the kubelet sets them up, for the launcher to bind-mount.

Every volume is a directory under the pod's scratch directory (the state dir's pods/<uid>/volumes), except
a claim, which is its PersistentVolume's directory. ConfigMap, Secret, downwardAPI and projected volumes
are written in the kubelet's layout (files behind a `..data` symlink swapped at once on a change), so a
change of the object reaches the container's files and a subPath mount keeps what it first saw.
"""

import base64
import calendar
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import podenv
from .provisioner import PATH_ANNOTATION

DEFAULT_MODE = 0o644
# Where the kubelet refreshes a projected token: at 80% of its life, and at least once a day.
TOKEN_REFRESH_FRACTION = 0.8


class VolumeError(Exception):
    """The volume cannot be set up yet (a FailedMount event; the kubelet retries)."""


class VolumeRefused(VolumeError):
    """The simulator will not set this volume up at all."""


@dataclass
class Volume:
    name: str
    kind: str
    path: Path
    read_only: bool = False
    # for payload volumes: the source they are rendered from, and when a token must be renewed
    source: dict = field(default_factory=dict)
    renew_at: float = 0.0


def api_get(api, path: str):
    status, body = api.request("GET", path)
    if status == 404:
        return None
    if status != 200:
        raise VolumeError(f"GET {path} answered {status}: {body.get('message', body)}")
    return body


def object_data(api, kind: str, namespace: str, name: str):
    """A ConfigMap's or Secret's data as {key: bytes}, or None when it does not exist."""
    plural = "configmaps" if kind == "ConfigMap" else "secrets"
    obj = api_get(api, f"/api/v1/namespaces/{namespace}/{plural}/{name}")
    if obj is None:
        return None
    out = {}
    if kind == "ConfigMap":
        for key, value in (obj.get("data") or {}).items():
            out[key] = value.encode()
        for key, value in (obj.get("binaryData") or {}).items():
            out[key] = base64.b64decode(value)
    else:
        for key, value in (obj.get("data") or {}).items():
            out[key] = base64.b64decode(value)
        for key, value in (obj.get("stringData") or {}).items():
            out[key] = value.encode()
    return out


def env_lookup(api):
    """podenv's lookup over the API: str values."""
    def lookup(kind, namespace, name):
        data = object_data(api, kind, namespace, name)
        return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}
    return lookup


# ---- the kubelet's atomic writer -----------------------------------------------------------------
def write_payload(target: Path, files: dict, gid=None) -> bool:
    """Write {relative path: (bytes, mode)} into target behind `..data`; True when anything changed."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink():
        current = target / os.readlink(data_link)
        if _same_payload(current, files, gid):
            return False
    else:
        current = None
    stamp = target / (time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.monotonic_ns() % 10**9:09d}")
    stamp.mkdir()
    for rel, (content, mode) in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if gid is not None:
            os.chown(path, -1, gid)
            mode |= 0o440
        os.chmod(path, mode)
    tmp = target / "..data_tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    tmp.replace(data_link)
    tops = {Path(rel).parts[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.name.startswith("..") and entry.name not in ("..data", stamp.name) and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink() if entry.is_symlink() else shutil.rmtree(entry, ignore_errors=True)
    return True


def _same_payload(current: Path, files: dict, gid) -> bool:
    if current is None or not current.is_dir():
        return False
    existing = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
    if existing != set(files):
        return False
    for rel, (content, mode) in files.items():
        path = current / rel
        if path.read_bytes() != content:
            return False
        want = mode | (0o440 if gid is not None else 0)
        if stat.S_IMODE(path.stat().st_mode) != want:
            return False
    return True


# ---- fsGroup ---------------------------------------------------------------------------------------
def apply_fs_group(root: Path, gid: int, policy: str = "Always") -> None:
    """chgrp to the fsGroup, group rw (dirs setgid and x), as the kubelet's SetVolumeOwnership does."""
    info = root.stat()
    if policy == "OnRootMismatch" and info.st_gid == gid and stat.S_IMODE(info.st_mode) & 0o2070 == 0o2070:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [None] + filenames:
            path = Path(dirpath) if name is None else Path(dirpath) / name
            try:
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    continue
                os.chown(path, -1, gid)
                mode = stat.S_IMODE(st.st_mode) | 0o660
                if stat.S_ISDIR(st.st_mode):
                    mode |= 0o2000 | 0o110
                os.chmod(path, mode)
            except FileNotFoundError:
                continue


# ---- the volumes of one pod ----------------------------------------------------------------------
class PodVolumes:
    def __init__(self, api, pod: dict, scratch: Path, log=print):
        self.api = api
        self.pod = pod
        self.dir = Path(scratch) / "volumes"
        self.log = log
        self.volumes = {}

    @property
    def fs_group(self):
        value = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        return None if value is None else int(value)

    def setup(self) -> dict:
        """Every volume of the pod, as {name: Volume}; VolumeError while one cannot be set up."""
        policy = (self.pod["spec"].get("securityContext") or {}).get("fsGroupChangePolicy", "Always")
        for spec in self.pod["spec"].get("volumes") or []:
            name = spec["name"]
            if name in self.volumes:
                continue
            volume = self._setup_one(spec)
            if self.fs_group is not None and volume.kind in ("emptyDir", "persistentVolumeClaim"):
                apply_fs_group(volume.path, self.fs_group, policy)
            self.volumes[name] = volume
        return self.volumes

    def _setup_one(self, spec: dict) -> Volume:
        name = spec["name"]
        path = self.dir / name
        if "emptyDir" in spec:
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o777)  # as the kubelet makes them
            return Volume(name, "emptyDir", path)
        if "persistentVolumeClaim" in spec or "ephemeral" in spec:
            if "ephemeral" in spec:
                claim, read_only = f"{self.pod['metadata']['name']}-{name}", False
            else:
                claim = spec["persistentVolumeClaim"]["claimName"]
                read_only = spec["persistentVolumeClaim"].get("readOnly", False)
            return Volume(name, "persistentVolumeClaim", self._claim_dir(claim, path), read_only)
        for kind in ("configMap", "secret", "downwardAPI", "projected"):
            if kind in spec:
                volume = Volume(name, kind, path, read_only=True, source=spec[kind])
                self._render(volume)
                return volume
        if "hostPath" in spec:
            raise VolumeRefused(f"hostPath volume {name!r} ({spec['hostPath'].get('path')}): the simulator mounts "
                                "no host directories into pods; use an emptyDir or a claim")
        kind = next((k for k in spec if k != "name"), "unknown")
        raise VolumeRefused(f"volume {name!r} of type {kind} is not supported by the simulator")

    def _claim_dir(self, claim: str, fallback: Path) -> Path:
        ns = self.pod["metadata"]["namespace"]
        pvc = api_get(self.api, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        pv_name = pvc["spec"].get("volumeName")
        if not pv_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = api_get(self.api, f"/api/v1/persistentvolumes/{pv_name}")
        if pv is None:
            raise VolumeError(f'persistentvolume "{pv_name}" not found')
        base = ((pv["metadata"].get("annotations") or {}).get(PATH_ANNOTATION)
                or (pv["spec"].get("hostPath") or {}).get("path") or (pv["spec"].get("local") or {}).get("path"))
        if not base:
            self.log(f"{ns}/{self.pod['metadata']['name']}: volume {pv_name} has no directory on this host; "
                     "using a scratch directory")
            base = fallback
        Path(base).mkdir(parents=True, exist_ok=True)
        return Path(base)

    # ---- payload volumes --------------------------------------------------------------------------
    def refresh(self) -> list:
        """Re-render payload volumes whose objects changed or whose token is due; the names changed."""
        changed = []
        for volume in self.volumes.values():
            if volume.kind in ("configMap", "secret", "downwardAPI", "projected"):
                try:
                    if self._render(volume, renew=time.time() >= volume.renew_at > 0):
                        changed.append(volume.name)
                except VolumeError as exc:
                    self.log(f"refreshing volume {volume.name}: {exc}")
        return changed

    def _render(self, volume: Volume, renew: bool = True) -> bool:
        source = volume.source
        default = source.get("defaultMode", DEFAULT_MODE)
        files = {}
        if volume.kind == "projected":
            for item in source.get("sources") or []:
                files.update(self._projection(volume, item, default, renew))
        elif volume.kind == "downwardAPI":
            files = self._downward(source.get("items") or [], default)
        else:
            kind = "ConfigMap" if volume.kind == "configMap" else "Secret"
            name = source.get("name") if kind == "ConfigMap" else source.get("secretName")
            files = self._keys(kind, name, source.get("items"), source.get("optional", False), default)
        if files is None:
            return False
        return write_payload(volume.path, files, self.fs_group)

    def _keys(self, kind, name, items, optional, default):
        ns = self.pod["metadata"]["namespace"]
        data = object_data(self.api, kind, ns, name)
        if data is None:
            if optional:
                return {}
            raise VolumeError(f'{kind.lower()} "{name}" not found')
        if not items:
            return {key: (value, default) for key, value in data.items()}
        files = {}
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise VolumeError(f"{kind.lower()} {ns}/{name} has no key {item['key']!r}")
            files[item["path"]] = (data[item["key"]], item.get("mode", default))
        return files

    def _downward(self, items, default):
        files = {}
        for item in items:
            if "fieldRef" in item:
                value = podenv.field_value(self.pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                container = next((c for c in self.pod["spec"]["containers"] if c["name"] == ref.get("containerName")),
                                 self.pod["spec"]["containers"][0])
                value = podenv.resource_field(self.pod, container, ref)
            files[item["path"]] = (value.encode(), item.get("mode", default))
        return files

    def _projection(self, volume: Volume, item: dict, default, renew: bool) -> dict:
        if "serviceAccountToken" in item:
            token_source = item["serviceAccountToken"]
            current = volume.path / token_source["path"]
            if not renew and current.exists():
                return {token_source["path"]: (current.read_bytes(), default)}
            token, renew_at = self._token(token_source)
            volume.renew_at = renew_at
            return {token_source["path"]: (token.encode(), default)}
        if "configMap" in item or "secret" in item:
            kind = "ConfigMap" if "configMap" in item else "Secret"
            ref = item["configMap" if kind == "ConfigMap" else "secret"]
            return self._keys(kind, ref["name"], ref.get("items"), ref.get("optional", False), default)
        if "downwardAPI" in item:
            return self._downward(item["downwardAPI"].get("items") or [], default)
        kind = next(iter(item), "unknown")
        raise VolumeRefused(f"projected source {kind} in volume {volume.name!r} is not supported by the simulator")

    def _token(self, source: dict):
        """A token from the TokenRequest API for the pod's ServiceAccount, bound to the pod."""
        meta = self.pod["metadata"]
        account = self.pod["spec"].get("serviceAccountName") or "default"
        spec = {"expirationSeconds": int(source.get("expirationSeconds", 3600)),
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        status, body = self.api.request(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        if status not in (200, 201):
            raise VolumeError(f"requesting a token for serviceaccount {meta['namespace']}/{account} answered "
                              f"{status}: {body.get('message', body)}")
        now = time.time()
        expiry = _expiry(body["status"].get("expirationTimestamp"), now + spec["expirationSeconds"])
        return body["status"]["token"], now + min((expiry - now) * TOKEN_REFRESH_FRACTION, 86400)


def _expiry(timestamp, default: float) -> float:
    if not timestamp:
        return default
    try:
        return calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return default


def mount_source(volume: Volume, mount: dict, env: dict) -> tuple:
    """The host path a volumeMount binds and whether it is read-only (subPath, subPathExpr honoured)."""
    sub = mount.get("subPath") or ""
    if mount.get("subPathExpr"):
        sub = podenv.expand(mount["subPathExpr"], env)
    if sub.startswith("/") or ".." in Path(sub).parts:
        raise VolumeError(f"subPath {sub!r} of volume {volume.name!r} must be a relative path without '..'")
    source = volume.path / sub if sub else volume.path
    if sub and not source.exists() and not source.is_symlink():
        if volume.kind in ("emptyDir", "persistentVolumeClaim"):
            source.mkdir(parents=True, exist_ok=True)
            root = volume.path.stat()
            os.chown(source, root.st_uid, root.st_gid)
            os.chmod(source, stat.S_IMODE(root.st_mode))
        else:
            raise VolumeError(f"subPath {sub!r} does not exist in volume {volume.name!r}")
    return source, bool(mount.get("readOnly")) or volume.read_only
