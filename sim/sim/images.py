"""The images the simulator runs for real, and how.

A container image maps to a host program by its repository's last path segment (any registry, any tag or
digest). A pod with at least one container whose image is in IMAGES is run by the simulator's kubelet
(runtime.py); every other pod stays with KWOK, which marks it Running and Ready at once.

Each entry says what the image itself would say: its default entrypoint and cmd, its environment, its user,
where its program lives inside the container, and the few files it ships that a pod relies on.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SimError

# A pod with this annotation is left to KWOK even when an image of it is in the table (stand-ins).
KWOK_ANNOTATION = "sim.llmops.dev/kubelet"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The nginx images' own configuration, written over Debian's (the image replaces /etc/nginx entirely).
_NGINX_CONF = """\
{user}worker_processes auto;
error_log /var/log/nginx/error.log notice;
pid {pid};
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    sendfile on;
    keepalive_timeout 65;
{temp}    include /etc/nginx/conf.d/*.conf;
}}
"""
_NGINX_DEFAULT_SITE = """\
server {{
    listen {port};
    server_name localhost;
    location / {{ root /usr/share/nginx/html; index index.html; }}
}}
"""
_UNPRIVILEGED_TEMP = "".join(f"    {name}_temp_path /tmp/{name}_temp;\n"
                             for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


@dataclass(frozen=True)
class Image:
    repository: str
    # "build:<name>": the pinned build (build.binary_path); an absolute path: the host's own program there.
    program: str
    # Where the image keeps its program; the host program is bound onto each path that is not the same file.
    paths: tuple
    entrypoint: tuple = ()
    cmd: tuple = ()
    env: dict = field(default_factory=dict)
    uid: int = 0
    gid: int = 0
    # path -> text: files the image ships that differ from the host's
    files: dict = field(default_factory=dict)
    # directories the image makes writable for its user (chowned inside the container only)
    owned_dirs: tuple = ()
    fix: str = ""


_OLLAMA = Image(
    repository="ollama",
    program="build:ollama",
    paths=("/usr/bin/ollama", "/bin/ollama"),
    entrypoint=("/bin/ollama",),
    cmd=("serve",),
    # As the ollama/ollama Dockerfile sets them.
    env={"PATH": DEFAULT_PATH, "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
         "NVIDIA_DRIVER_CAPABILITIES": "compute,utility", "NVIDIA_VISIBLE_DEVICES": "all",
         "OLLAMA_HOST": "0.0.0.0:11434"},
    fix="run make sim-build (it builds the pinned Ollama)",
)
_NGINX = Image(
    repository="nginx",
    program="/usr/sbin/nginx",
    paths=("/usr/sbin/nginx",),
    # The image's /docker-entrypoint.sh only execs its arguments once its templates ran.
    cmd=("nginx", "-g", "daemon off;"),
    env={"PATH": DEFAULT_PATH},
    files={"/etc/nginx/nginx.conf": _NGINX_CONF.format(user="user www-data;\n", pid="/run/nginx.pid", temp=""),
           "/etc/nginx/conf.d/default.conf": _NGINX_DEFAULT_SITE.format(port=80)},
    fix="install Debian's nginx-light (make deps)",
)
_NGINX_UNPRIVILEGED = Image(
    repository="nginx-unprivileged",
    program="/usr/sbin/nginx",
    paths=("/usr/sbin/nginx",),
    cmd=("nginx", "-g", "daemon off;"),
    env={"PATH": DEFAULT_PATH},
    uid=101, gid=101,
    files={"/etc/nginx/nginx.conf": _NGINX_CONF.format(user="", pid="/tmp/nginx.pid", temp=_UNPRIVILEGED_TEMP),
           "/etc/nginx/conf.d/default.conf": _NGINX_DEFAULT_SITE.format(port=8080)},
    # The image chowns its cache and log directories to 101; Debian's nginx keeps them here.
    owned_dirs=("/var/lib/nginx", "/var/log/nginx"),
    fix="install Debian's nginx-light (make deps)",
)
_TRAEFIK = Image(
    repository="traefik",
    program="build:traefik",
    paths=("/usr/local/bin/traefik",),
    # The image's entrypoint.sh runs `traefik "$@"` for flag arguments, which is how charts call it.
    entrypoint=("traefik",),
    env={"PATH": DEFAULT_PATH},
    fix="run make sim-build (it builds the pinned Traefik)",
)

_REGISTRY = Image(
    repository="registry",
    program="build:registry",
    # The library image (docker/distribution-library-image): Alpine, /bin/registry, busybox sh and wget; the
    # simulator's containers have the host's sh and wget instead.
    paths=("/bin/registry",),
    entrypoint=("registry",),
    cmd=("serve", "/etc/distribution/config.yml"),
    env={"PATH": DEFAULT_PATH},
    fix="run make sim-build (it builds the pinned CNCF Distribution)",
)

IMAGES = {
    "ollama": _OLLAMA,
    "nginx": _NGINX,
    "nginx-unprivileged": _NGINX_UNPRIVILEGED,
    "traefik": _TRAEFIK,
    "mirrored-library-traefik": _TRAEFIK,  # k3s's mirror of the Docker Hub image
    "registry": _REGISTRY,
}


def repository(image: str) -> str:
    """docker.io/ollama/ollama:0.11.4@sha256:... -> ollama; registry:5000/nginx -> nginx."""
    name = (image or "").split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def lookup(image: str):
    return IMAGES.get(repository(image))


def runs_for_real(pod: dict) -> bool:
    """The same rule as the KWOK stages' RUNS_EXPRESSION below."""
    if (pod.get("metadata", {}).get("annotations") or {}).get(KWOK_ANNOTATION) == "kwok":
        return False
    spec = pod.get("spec", {})
    return any(lookup(c.get("image", "")) for c in (spec.get("initContainers") or []) + (spec.get("containers") or []))


def host_program(img: Image) -> Path:
    """The host file that runs as the image's program; SimError when this machine lacks it."""
    if img.program.startswith("build:"):
        from .build import binary_path
        name = img.program.split(":", 1)[1]
        try:
            path = binary_path(name)
        except KeyError:
            raise SimError(f"the simulator has no build of {name} for image repository '{img.repository}'",
                           f"pin {name} in sim/versions.env and add it to sim/sim/build.py") from None
    else:
        path = Path(img.program)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SimError(f"{path} (the program of image repository '{img.repository}') is not on this machine", img.fix)
    return path


def argv(img: Image, container: dict) -> list:
    """What runs, as a kubelet decides it: command replaces the entrypoint, args replace the cmd."""
    command, args = container.get("command"), container.get("args")
    if command:
        return list(command) + list(args or [])
    return list(img.entrypoint) + (list(args) if args else list(img.cmd))


# ---- KWOK ------------------------------------------------------------------------------------------
def _jq_string(value: str) -> str:
    return json.dumps(value)


def runs_expression() -> str:
    """A jq expression (KWOK's stage selectors are gojq) that is true for the pods the simulator runs."""
    names = " or ".join(f". == {_jq_string(name)}" for name in sorted(IMAGES))
    return (f'((.metadata.annotations // {{}})[{_jq_string(KWOK_ANNOTATION)}] // "") != "kwok" and '
            '([(.spec.initContainers // [])[], (.spec.containers // [])[] | (.image // "") | sub("@.*$"; "") '
            f'| sub(":[^/]*$"; "") | split("/") | last | select({names})] | length > 0)')


_KWOK_POD_READY = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ .conditionType | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""

_KWOK_POD_COMPLETE = """\
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
"""

# For the pods the simulator runs, KWOK only hands out the address (its IP pool stays the one source of pod
# IPs); the simulator's kubelet owns conditions, container statuses, phase and the final delete.
_KWOK_SANDBOX = """\
{{ $now := Now }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Pending
startTime: {{ $now | Quote }}
"""


def _stage(name, expressions, next_):
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name},
            "spec": {"resourceRef": {"apiGroup": "v1", "kind": "Pod"},
                     "selector": {"matchExpressions": expressions}, "next": next_}}


def kwok_pod_stages() -> list:
    """KWOK's own `fast` pod stages (v0.7.0) for the pods KWOK runs, and one address-only stage for ours."""
    runs = runs_expression()
    kwok_runs = {"key": runs, "operator": "NotIn", "values": ["true"]}
    we_run = {"key": runs, "operator": "In", "values": ["true"]}
    alive = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
    no_ip = {"key": ".status.podIP", "operator": "DoesNotExist"}
    return [
        _stage("pod-ready", [alive, no_ip, kwok_runs], {"statusTemplate": _KWOK_POD_READY}),
        _stage("pod-complete", [alive, {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
                                kwok_runs], {"statusTemplate": _KWOK_POD_COMPLETE}),
        _stage("pod-delete", [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}, kwok_runs],
               {"finalizers": {"empty": True}, "delete": True}),
        _stage("llmops-sim-pod-address", [alive, no_ip, we_run], {"statusTemplate": _KWOK_SANDBOX}),
    ]


def write_kwok_config(path: Path, extra_documents=()) -> Path:
    """KWOK's --config: Stage documents (JSON is YAML); node stages stay KWOK's defaults unless given."""
    docs = kwok_pod_stages() + list(extra_documents)
    Path(path).write_text("".join("---\n" + json.dumps(doc, indent=1) + "\n" for doc in docs))
    return Path(path)
