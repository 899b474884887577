"""A container's environment and the downward API, resolved the way the kubelet resolves them.

Pure functions: the caller passes `lookup(kind, namespace, name) -> dict | None` that returns a ConfigMap's
data or a Secret's decoded data (str values), so the rules can be tested without a cluster.
"""

import math
import re

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ConfigError(Exception):
    """The container cannot be created (the kubelet's CreateContainerConfigError)."""


def expand(text: str, mapping: dict) -> str:
    """$(VAR) -> its value when VAR is defined, else kept as written; $$ -> $ (k8s.io/kubernetes expansion)."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end == -1:
                    out.append(text[i:])
                    break
                name = text[i + 2:end]
                out.append(mapping[name] if name in mapping else text[i:end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _quantity(value) -> float:
    """A resource quantity as a number (1500m -> 1.5, 1Gi -> 1073741824)."""
    text = str(value).strip()
    suffixes = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
                "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * suffixes[suffix]
    return float(text)


def resource_field(pod: dict, container: dict, ref: dict) -> str:
    resource = ref["resource"]
    section, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(section) or {}).get(name)
    if raw is None and section == "limits":
        # Without a limit the kubelet reports the node's allocatable; the simulator reports the request.
        raw = (resources.get("requests") or {}).get(name)
    if raw is None:
        raw = "0"
    divisor = _quantity(ref.get("divisor") or "1")
    value = _quantity(raw) / divisor
    return str(int(math.ceil(value - 1e-9)))


def field_value(pod: dict, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": status.get("hostIP", ""), "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []) or status.get("hostIP", ""),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []) or status.get("podIP", ""),
    }
    if path in simple:
        return simple[path]
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{_escape(v)}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _source(lookup, kind: str, namespace: str, name: str, optional: bool):
    data = lookup(kind, namespace, name)
    if data is None and not optional:
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    return data


def resolve(pod: dict, container: dict, base: dict, lookup) -> dict:
    """The variables the kubelet gives the container: base (the `kubernetes` Service's), then envFrom in
    order, then env in order; $(VAR) in a value expands against what is defined before it. The image's own
    environment lies under these (the runtime merges it), and is not seen by $(VAR)."""
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = _source(lookup, kind, ns, ref["name"], ref.get("optional", False)) or {}
            for name, value in data.items():
                env[prefix + name] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                every = (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or [])
                target = next((c for c in every if c["name"] == ref["containerName"]), container)
            env[name] = resource_field(pod, target, ref)
        else:
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = source.get(key)
                if ref is None:
                    continue
                optional = ref.get("optional", False)
                data = _source(lookup, kind, ns, ref["name"], optional)
                if data is None:
                    break
                if ref["key"] not in data:
                    if optional:
                        break
                    raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
                env[name] = data[ref["key"]]
                break
    return env


def service_env(host: str, port: int) -> dict:
    """The variables the kubelet gives every container for the `kubernetes` Service."""
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}", f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": str(port), f"KUBERNETES_PORT_{port}_TCP_ADDR": host}


def expand_argv(argv: list, env: dict) -> list:
    return [expand(a, env) for a in argv]


def security(pod: dict, container: dict, image_uid: int, image_gid: int) -> dict:
    """uid, gid, supplementary groups and no_new_privs; ConfigError where the kubelet refuses to start."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key):
        return sc.get(key, pod_sc.get(key))
    uid = pick("runAsUser")
    gid = pick("runAsGroup")
    uid = image_uid if uid is None else int(uid)
    gid = (image_gid if pick("runAsUser") is None else 0) if gid is None else int(gid)
    if pick("runAsNonRoot") and uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    groups = sorted(set(groups))
    return {"uid": uid, "gid": gid, "groups": groups,
            "no_new_privs": sc.get("allowPrivilegeEscalation") is False}
