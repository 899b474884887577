"""Build the simulator's external programs from Go modules into a cache outside git.

Each program is pinned in sim/versions.env. A binary that already sits in the cache
for its pinned version is not rebuilt.
"""

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
        # The external judge of the objects a converge renders (make judges), not part of the cluster.
        Program(
            "kube-score",
            "github.com/zegl/kube-score",
            "KUBE_SCORE_VERSION",
            {"kube-score": "github.com/zegl/kube-score/cmd/kube-score"},
            ldflags=[f"-X main.version={versions.get('KUBE_SCORE_VERSION', '')}"],
        ),
    ]


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


def _staging_replaces(module: str, version: str) -> list:
    """k8s.io/kubernetes requires its staging modules at v0.0.0; map them to the published tags."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, env=_go_env(), check=False,
    )
    match = re.search(r'"GoMod": "([^"]+)"', out.stdout)
    if out.returncode != 0 or not match:
        raise SimError(f"cannot download {module}@{version}: {out.stdout.strip() or out.stderr.strip()}",
                       "check the Go module proxy is reachable (GOPROXY) and the version in sim/versions.env exists")
    staging_version = "v0." + version.lstrip("v").split(".", 1)[1]
    replaces = []
    for line in Path(match.group(1)).read_text().splitlines():
        m = re.match(r"\s*(k8s\.io/[\w.-]+) => \./staging/", line)
        if m:
            replaces.append(f"\t{m.group(1)} => {m.group(1)} {staging_version}")
    return replaces


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
        raise SimError("the go command is not on PATH", "install Go 1.24 or newer (e.g. apt-get install golang-go) and retry")
    workdir = cache_dir() / "gomod" / f"{program.name}-{version}"
    workdir.mkdir(parents=True, exist_ok=True)
    gomod = f"module llmops.invalid/simbuild/{program.name}\n\ngo 1.24.0\n"
    if program.needs_staging_replaces:
        gomod += "\nreplace (\n" + "\n".join(_staging_replaces(program.module, version)) + "\n)\n"
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
                tail = logfile.read_text().strip().splitlines()[-1:] or ["no output"]
                raise SimError(f"building {program.name} {version} failed: {tail[0]}",
                               f"see {logfile}; fix the pin in sim/versions.env or the Go toolchain, then rerun make sim-build")
    bin_dir().mkdir(parents=True, exist_ok=True)
    for name, pkg in program.packages.items():
        built = outdir / _default_binary_name(pkg)
        if not built.exists():
            raise SimError(f"go build produced no binary for {name} at {built}", "see the build log in the cache's logs/")
        tmp = targets[name].with_name(targets[name].name + ".tmp")
        shutil.move(str(built), tmp)
        tmp.rename(targets[name])


def build_all(log=print, only=None) -> dict:
    versions = read_versions()
    for program in programs(versions):
        if only and program.name not in only:
            continue
        build_program(program, versions, log)
    return {name: binary_path(name, versions) for p in programs(versions) for name in p.packages
            if not only or p.name in only}
