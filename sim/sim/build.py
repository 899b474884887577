"""Build the simulator's external programs from Go modules into a cache outside git.

Each program is pinned in sim/versions.env. A binary that already sits in the cache
for its pinned version is not rebuilt.
"""

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SimError
from .paths import cache_dir, read_versions


@dataclass
class Program:
    name: str
    module: str
    version_key: str
    packages: dict  # binary name -> Go package path
    ldflags: list = field(default_factory=list)
    cgo: bool = False
    needs_staging_replaces: bool = False
    # Repeat the module's own replace directives: a wrapper go.mod ignores those of its dependencies.
    needs_module_replaces: bool = False
    # Module that must resolve to this version in the build (pinned separately in versions.env).
    pinned_requires: dict = field(default_factory=dict)  # module path -> version key
    # Files the module zip lacks, path in the module -> content: the build then uses a copy of the
    # module in its work directory (go build may not overlay files in the module cache).
    added_files: dict = field(default_factory=dict)


@dataclass
class Manifest:
    """YAML files shipped inside a Go module, cached beside the binaries under a versioned name."""
    name: str
    program: str  # built (and rebuilt) with this program
    module: str
    version_key: str
    paths: list  # files or directories (every *.yaml in it, sorted) relative to the module root


DASHBOARD_STAND_IN = (
    '<!doctype html><meta charset="utf-8"><title>Traefik</title>\n'
    "<p>This Traefik build has no web UI (Traefik's release builds it with Node.js); "
    'its API answers at <a href="{{ .APIUrl }}overview">{{ .APIUrl }}overview</a>.</p>\n'
)


def programs(versions: dict) -> list:
    kube = versions["KUBERNETES_VERSION"]
    major, minor = kube.lstrip("v").split(".")[:2]
    kube_ldflags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        kube_ldflags += [
            f"-X {pkg}.gitVersion={kube}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    ollama = versions["OLLAMA_VERSION"]
    traefik = versions.get("TRAEFIK_VERSION", "")
    return [
        Program("etcd", "go.etcd.io/etcd/server/v3", "ETCD_VERSION", {"etcd": "go.etcd.io/etcd/server/v3"}),
        Program(
            "kwok",
            "sigs.k8s.io/kwok",
            "KWOK_VERSION",
            {"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
            ldflags=[f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.get('KWOK_VERSION', '')}"],
        ),
        Program(
            "kubernetes",
            "k8s.io/kubernetes",
            "KUBERNETES_VERSION",
            {
                "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
                "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
                "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            },
            ldflags=kube_ldflags,
            needs_staging_replaces=True,
        ),
        # Only its network policy controller runs (the engine k3s embeds), inside the node namespace.
        Program(
            "kube-router",
            "github.com/cloudnativelabs/kube-router/v2",
            "KUBE_ROUTER_VERSION",
            {"kube-router": "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"},
            ldflags=["-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version="
                     + versions.get("KUBE_ROUTER_VERSION", "")],
        ),
        Program(
            "ollama",
            "github.com/ollama/ollama",
            "OLLAMA_VERSION",
            {"ollama": "github.com/ollama/ollama"},
            ldflags=[
                f"-X github.com/ollama/ollama/version.Version={ollama.lstrip('v')}",
                "-X github.com/ollama/ollama/server.mode=release",
            ],
            cgo=True,
        ),
        Program(
            "traefik",
            "github.com/traefik/traefik/v3",
            "TRAEFIK_VERSION",
            {"traefik": "github.com/traefik/traefik/v3/cmd/traefik"},
            # As Traefik's Makefile sets them.
            ldflags=[f"-X github.com/traefik/traefik/v3/pkg/version.Version={traefik.lstrip('v')}",
                     "-X github.com/traefik/traefik/v3/pkg/version.Codename=llmops-sim"],
            needs_module_replaces=True,
            pinned_requires={"sigs.k8s.io/gateway-api": "GATEWAY_API_VERSION"},
            # The dashboard is embedded from webui/static, which in the module holds only a placeholder (Traefik's
            # release builds the web UI with Node.js). Without an index.html Traefik logs an error at every start;
            # this page stands in for the web UI, the API behind it is Traefik's own.
            added_files={"webui/static/index.html": DASHBOARD_STAND_IN},
        ),
        # CNCF Distribution, the program of the `registry` image the model cache runs (the image pins the same
        # release); Debian's docker-registry is 2.8, whose proxy fetches a blob it lacks twice from the upstream.
        Program(
            "registry",
            "github.com/distribution/distribution/v3",
            "REGISTRY_VERSION",
            {"registry": "github.com/distribution/distribution/v3/cmd/registry"},
            ldflags=[f"-X github.com/distribution/distribution/v3/version.version={versions.get('REGISTRY_VERSION', '')}"],
        ),
        # The external judge of the objects a converge renders (make judges), not part of the cluster.
        Program(
            "kube-score",
            "github.com/zegl/kube-score",
            "KUBE_SCORE_VERSION",
            {"kube-score": "github.com/zegl/kube-score/cmd/kube-score"},
            ldflags=[f"-X main.version={versions.get('KUBE_SCORE_VERSION', '')}"],
        ),
    ]


def manifests(versions: dict) -> list:
    return [
        Manifest("traefik-crds", "traefik", "github.com/traefik/traefik/v3", "TRAEFIK_VERSION",
                 ["docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"]),
        Manifest("gateway-api-standard", "traefik", "sigs.k8s.io/gateway-api", "GATEWAY_API_VERSION",
                 ["config/crd/standard"]),
    ]


def manifest_path(name: str, versions: dict = None) -> Path:
    versions = versions or read_versions()
    for manifest in manifests(versions):
        if manifest.name == name:
            return cache_dir() / "manifests" / f"{name}-{versions[manifest.version_key]}.yaml"
    raise KeyError(name)


def bin_dir() -> Path:
    return cache_dir() / "bin"


def binary_path(name: str, versions: dict = None) -> Path:
    versions = versions or read_versions()
    for program in programs(versions):
        if name in program.packages:
            return bin_dir() / f"{name}-{versions[program.version_key]}"
    raise KeyError(name)


def _go_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    return env


def _download(module: str, version: str) -> dict:
    """`go mod download -json`: the module's Dir and GoMod in the module cache (no network once cached)."""
    if shutil.which("go") is None:
        raise SimError("the go command is not on PATH", "install Go 1.26 or newer (e.g. apt-get install golang-go) and retry")
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, env=_go_env(), check=False,
    )
    try:
        info = json.loads(out.stdout)
    except ValueError:
        info = {}
    if out.returncode != 0 or not info.get("Dir") or not info.get("GoMod"):
        message = info.get("Error") or out.stdout.strip() or out.stderr.strip()
        raise SimError(f"cannot download {module}@{version}: {message}",
                       "check the Go module proxy is reachable (GOPROXY) and the version in sim/versions.env exists")
    return info


def _staging_replaces(module: str, version: str) -> list:
    """k8s.io/kubernetes requires its staging modules at v0.0.0; map them to the published tags."""
    info = _download(module, version)
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    replaces = []
    for line in Path(info["GoMod"]).read_text().splitlines():
        m = re.match(r"\s*(k8s\.io/[\w.-]+) => \./staging/", line)
        if m:
            replaces.append(f"\t{m.group(1)} => {m.group(1)} {staging_version}")
    return replaces


def _replace_directives(gomod_text: str) -> list:
    """(old, new) pairs of a go.mod's replace directives, single-line and block form."""
    pairs, in_block = [], False
    for raw in gomod_text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
            elif "=>" in line:
                pairs.append(tuple(part.strip() for part in line.split("=>", 1)))
        elif line.startswith("replace"):
            rest = line[len("replace"):].strip()
            if rest == "(":
                in_block = True
            elif "=>" in rest:
                pairs.append(tuple(part.strip() for part in rest.split("=>", 1)))
    return pairs


def _stand_in_module(module_dir: Path, module_path: str, target: Path) -> Path:
    """A nested module that the module zip leaves out (Go never ships nested modules in a zip).

    Traefik's ./pkg/config/dynamic/ext is such a module: extension points, empty structs that
    Traefik's dynamic configuration embeds. The stand-in declares each identifier the module's code
    uses from it as an empty struct, as upstream does; a field used anywhere would fail the build.
    """
    package = module_path.rstrip("/").rsplit("/", 1)[-1]
    used = set()
    quoted = f'"{module_path}"'
    for source in module_dir.rglob("*.go"):
        text = source.read_text(errors="replace")
        if quoted not in text:
            continue
        alias = re.search(r"^[ \t]*(?:import[ \t]+)?(\w+)[ \t]+" + re.escape(quoted), text, re.M)
        name = alias.group(1) if alias and alias.group(1) != "import" else package
        used.update(re.findall(r"\b" + re.escape(name) + r"\.([A-Z]\w*)", text))
    target.mkdir(parents=True, exist_ok=True)
    (target / "go.mod").write_text(f"module {module_path}\n\ngo 1.24.0\n")
    body = "".join(f"\n// {name} is an extension point; empty upstream.\ntype {name} struct{{}}\n" for name in sorted(used))
    (target / f"{package}.go").write_text(f"// Stand-in generated by the simulator's build for a module the module zip lacks.\n"
                                          f"package {package}\n{body}")
    return target


def _module_replaces(module_dir: Path, gomod: Path, workdir: Path) -> list:
    """The module's own replace directives, local paths resolved against the module's directory."""
    replaces = []
    for old, new in _replace_directives(gomod.read_text()):
        if new.startswith("./") or new.startswith("../"):
            local = (module_dir / new).resolve()
            if not (local / "go.mod").exists():
                # In the module's copy where there is one; the module cache is read-only.
                target = local if workdir in local.parents else workdir / "local" / new.lstrip("./")
                local = _stand_in_module(module_dir, old.split()[0], target)
            new = str(local)
        replaces.append(f"\t{old} => {new}")
    return replaces


def _source_copy(program: Program, module_dir: Path, workdir: Path) -> Path:
    """A writable copy of the module with the program's added files."""
    src = workdir / "src"
    if not (src / "go.mod").exists():
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(module_dir, src, copy_function=shutil.copyfile)
    for rel, content in program.added_files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(content)
    return src


def _selected_version(workdir: Path, module: str, env: dict) -> str:
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Version}}", module], cwd=workdir, env=env,
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def _default_binary_name(package: str) -> str:
    """go build names a binary after the package path, skipping a major-version suffix."""
    parts = package.rstrip("/").split("/")
    return parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]


def build_program(program: Program, versions: dict, log) -> None:
    version = versions.get(program.version_key)
    if not version:
        raise SimError(f"sim/versions.env pins no {program.version_key} for {program.name}",
                       f"add a line {program.version_key}=<version> to sim/versions.env")
    targets = {name: bin_dir() / f"{name}-{version}" for name in program.packages}
    if all(path.exists() for path in targets.values()):
        return
    if shutil.which("go") is None:
        raise SimError("the go command is not on PATH", "install Go 1.26 or newer (e.g. apt-get install golang-go) and retry")
    workdir = cache_dir() / "gomod" / f"{program.name}-{version}"
    workdir.mkdir(parents=True, exist_ok=True)
    gomod = f"module llmops.invalid/simbuild/{program.name}\n\ngo 1.24.0\n"
    if program.needs_staging_replaces:
        gomod += "\nreplace (\n" + "\n".join(_staging_replaces(program.module, version)) + "\n)\n"
    if program.needs_module_replaces or program.added_files:
        info = _download(program.module, version)
        module_dir = Path(info["Dir"])
        replaces = []
        if program.added_files:
            module_dir = _source_copy(program, module_dir, workdir)
            replaces.append(f"\t{program.module} => {module_dir}")
        if program.needs_module_replaces:
            replaces += _module_replaces(module_dir, Path(info["GoMod"]), workdir)
        gomod += "\nreplace (\n" + "\n".join(replaces) + "\n)\n"
        # The module's own go.sum checks every dependency (the checksum database may not know them all).
        if (module_dir / "go.sum").exists():
            shutil.copyfile(module_dir / "go.sum", workdir / "go.sum")
    (workdir / "go.mod").write_text(gomod)
    outdir = workdir / "out"
    outdir.mkdir(exist_ok=True)
    env = _go_env()
    env["CGO_ENABLED"] = "1" if program.cgo else "0"
    steps = [
        ["go", "get", f"{program.module}@{version}"],
        ["go", "build", "-trimpath", "-ldflags", " ".join(["-s", "-w"] + program.ldflags),
         "-o", str(outdir) + "/", *program.packages.values()],
    ]
    logfile = cache_dir() / "logs" / f"build-{program.name}-{version}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as fh:
        for cmd in steps:
            log(f"building {program.name} {version}: {' '.join(cmd[:2])} ...")
            result = subprocess.run(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
            if result.returncode != 0:
                # Go indents a failure's detail ("server response: ..."): the line before it names the module.
                lines = [line for line in logfile.read_text().splitlines() if line.strip() and not line[0].isspace()]
                tail = lines[-1:] or ["no output"]
                raise SimError(f"building {program.name} {version} failed: {tail[0]}",
                               f"see {logfile}; fix the pin in sim/versions.env or the Go toolchain, then rerun make sim-build")
            if cmd[1] == "get":
                _check_pinned_requires(program, versions, workdir, env)
    bin_dir().mkdir(parents=True, exist_ok=True)
    for name, pkg in program.packages.items():
        built = outdir / _default_binary_name(pkg)
        if not built.exists():
            raise SimError(f"go build produced no binary for {name} at {built}", "see the build log in the cache's logs/")
        tmp = targets[name].with_name(targets[name].name + ".tmp")
        shutil.move(str(built), tmp)
        tmp.rename(targets[name])


def _check_pinned_requires(program: Program, versions: dict, workdir: Path, env: dict) -> None:
    for module, key in program.pinned_requires.items():
        selected = _selected_version(workdir, module, env)
        if selected != versions.get(key):
            raise SimError(f"{program.name} {versions[program.version_key]} builds with {module} {selected or '(none)'}, "
                           f"but sim/versions.env pins {key}={versions.get(key)}",
                           f"set {key}={selected} in sim/versions.env (the CRDs must match the version the program uses)")


def build_manifest(manifest: Manifest, versions: dict) -> Path:
    target = manifest_path(manifest.name, versions)
    if target.exists():
        return target
    module_dir = Path(_download(manifest.module, versions[manifest.version_key])["Dir"])
    documents = []
    for rel in manifest.paths:
        path = module_dir / rel
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise SimError(f"{manifest.module}@{versions[manifest.version_key]} has no {rel}",
                           f"check {manifest.version_key} in sim/versions.env; the file moved in that version")
        documents += [f.read_text() for f in files]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("\n---\n".join(doc.strip().removeprefix("---").strip() for doc in documents) + "\n")
    tmp.rename(target)
    return target


def build_all(log=print, only=None) -> dict:
    versions = read_versions()
    for program in programs(versions):
        if only and program.name not in only:
            continue
        build_program(program, versions, log)
    for manifest in manifests(versions):
        if not only or manifest.program in only:
            build_manifest(manifest, versions)
    return {name: binary_path(name, versions) for p in programs(versions) for name in p.packages
            if not only or p.name in only}
