"""The collection as users get it: the tarball `ansible-galaxy collection build` makes leaves out local state,
installs into an empty collections path beside kubernetes.core (the pinned `ansible` package's copy: Galaxy is
not reachable here), and its playbooks run from that installed copy against the simulated cluster."""

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

BIN = REPO / ".venv" / "bin"

# What a checkout holds that no tarball may: environments, simulator state, caches, build output, links to the
# checkout itself. Each is planted in the copy that is built, so a build_ignore entry that stops matching fails.
PLANTED = [
    ".venv/bin/python",
    ".venv-sanity/pyvenv.cfg",
    ".sim/state.json",
    ".sim-test/kubeconfig",
    ".pytest_cache/v/cache/lastfailed",
    "tests/unit/.pytest_cache/README.md",
    "plugins/modules/__pycache__/plan.cpython-311.pyc",
    "tests/unit/plugins/__pycache__/conftest.cpython-311-pytest-9.2.0.pyc",
    ".gpu-carry/wheels/numpy.whl",
    ".ansible/tmp/x",
    ".cache/sanity/x",
    ".mypy_cache/x",
    "bin/kubectl",
    "bench/results/noop.json",
    "tests/output/junit.xml",
    "models/tiny.gguf",
    "llmops-ollama-0.0.9.tar.gz",
]
# Path parts that mark a forbidden member wherever they appear.
FORBIDDEN_PARTS = {".venv", ".venv-sanity", ".sim", ".sim-test", ".pytest_cache", "__pycache__", ".gpu-carry",
                   ".ansible", ".cache", ".collections", "ansible_collections", ".mypy_cache", ".git"}
FORBIDDEN_TOP = {"bin", "sim", "bench", ".ci"}
FORBIDDEN_SUFFIXES = (".pyc", ".gguf", ".tar.gz", ".deb")


def forbidden(member):
    parts = Path(member).parts
    return (bool(FORBIDDEN_PARTS.intersection(parts)) or (parts and parts[0] in FORBIDDEN_TOP)
            or member.endswith(FORBIDDEN_SUFFIXES) or member.startswith("tests/output"))


def ansible_env(config):
    return dict(os.environ, ANSIBLE_CONFIG=str(config), ANSIBLE_NOCOLOR="1")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The built tarball, its member names, and an ansible.cfg whose collections path holds the installed copy
    first and the pinned ansible package's collections (kubernetes.core) second."""
    base = tmp_path_factory.mktemp("package")
    src = base / "src"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        origin, copy = REPO / name, src / name
        if not os.path.lexists(origin):
            continue  # deleted in the work tree, not yet in the index
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            copy.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, copy)
    for name in PLANTED:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("planted by test_package.py\n")
    (src / "ansible_collections").symlink_to(".")
    (src / ".collections" / "ansible_collections" / "llmops").mkdir(parents=True)
    (src / ".collections" / "ansible_collections" / "llmops" / "ollama").symlink_to("../../..")

    bundled = Path(subprocess.run(
        [str(BIN / "python"), "-c", "import ansible_collections.kubernetes.core as c; print(list(c.__path__)[0])"],
        capture_output=True, text=True, check=True).stdout.strip()).parents[2]
    collections = base / "collections"
    collections.mkdir()
    config = base / "ansible.cfg"
    # The checkout's ansible.cfg without its collections path (the checkout) and inventory.
    lines = [line for line in (REPO / "ansible.cfg").read_text().splitlines()
             if not line.startswith(("collections_path", "inventory"))]
    lines.insert(lines.index("[defaults]") + 1, f"collections_path = {collections}:{bundled}")
    config.write_text("\n".join(lines) + "\n")

    dist = base / "dist"
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(src)],
                           capture_output=True, text=True, env=ansible_env(config), timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = next(dist.glob("llmops-ollama-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        members = tar.getnames()
    return {"base": base, "tarball": tarball, "members": members, "config": config, "collections": collections}


def test_tarball_holds_the_collection_and_no_local_state(package):
    members = package["members"]
    assert not [m for m in members if forbidden(m)], [m for m in members if forbidden(m)]
    for wanted in ("MANIFEST.json", "FILES.json", "plugins/modules/plan.py", "plugins/action/plan.py",
                   "playbooks/site.yml", "playbooks/preflight.yml", "playbooks/vars/cluster_auth.yml",
                   "roles/gpu_preflight/meta/argument_specs.yml", "meta/runtime.yml", "meta/execution-environment.yml",
                   "meta/ee-requirements.txt", "meta/bindep.txt", "ee-requirements.txt", "bindep.txt",
                   "inventories/sim/hosts.yml"):
        assert wanted in members, wanted


@pytest.fixture(scope="module")
def installed(package):
    """The tarball installed (offline) into the empty collections path; kubernetes.core, its dependency, comes
    from the second collections path entry."""
    run = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(package["tarball"]),
                          "-p", str(package["collections"])],
                         capture_output=True, text=True, env=ansible_env(package["config"]), timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kubernetes.core" in run.stdout and "already installed" in run.stdout, run.stdout
    root = package["collections"] / "ansible_collections" / "llmops" / "ollama"
    assert json.loads((root / "MANIFEST.json").read_text())["collection_info"]["dependencies"] == {
        "kubernetes.core": ">=6.2.0"}
    return root


def test_execution_environment_introspection_finds_the_collection_requirements(package, installed):
    # What ansible-builder reads of the installed collection when an execution environment includes it.
    run = subprocess.run([str(BIN / "ansible-builder"), "introspect", str(package["collections"])],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kubernetes>=24.2.0  # from collection llmops.ollama" in run.stdout, run.stdout
    assert "openssh-clients [platform:rpm]  # from collection llmops.ollama" in run.stdout, run.stdout


def task_paths(run):
    return {task["task"].get("path", "") for play in run.report.get("plays", []) for task in play.get("tasks", [])}


@pytest.mark.profile("k3s")
def test_installed_collection_runs_preflight_and_site_against_the_cluster(package, installed, playbook, namespace):
    where = dict(config=package["config"], cwd=package["base"])
    names = {"ollama_namespace": namespace}
    listing = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "llmops.ollama", "--format", "json"],
                             capture_output=True, text=True, env=ansible_env(package["config"]),
                             cwd=package["base"], check=False)
    assert list(json.loads(listing.stdout)) == [str(package["collections"] / "ansible_collections")], listing.stdout

    preflight = playbook("llmops.ollama.preflight", names, **where)
    assert preflight.rc == 0, preflight
    assert preflight.changed == 0, preflight
    site = playbook("llmops.ollama.site", names, **where)
    assert site.rc == 0, site
    # Every task ran from the installed copy, none from the checkout.
    paths = task_paths(preflight) | task_paths(site)
    assert paths and all(p.startswith(str(installed)) for p in paths if p), sorted(paths)[:5]
    again = playbook("llmops.ollama.site", names, **where)
    assert again.rc == 0 and again.changed == 0, again
