"""Where the simulator keeps its versions file, build cache and state."""

import hashlib
import os
from pathlib import Path

SIM_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = SIM_ROOT.parent
VERSIONS_FILE = SIM_ROOT / "versions.env"
PROFILES_DIR = SIM_ROOT / "profiles"


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmops-ollama-sim"
    return Path(os.environ.get("LLMOPS_SIM_CACHE", default))


def state_dir() -> Path:
    return Path(os.environ.get("LLMOPS_SIM_STATE", REPO_ROOT / ".sim"))


def state_suffix(state: Path) -> str:
    """Six hex digits that tell clusters apart by their state directory (names of links, namespaces, logs)."""
    return hashlib.sha1(str(Path(state).resolve()).encode()).hexdigest()[:6]


def failed_start_logs(state: Path = None) -> Path:
    """Where a failed start keeps its logs: one directory per state directory, so clusters side by side keep theirs."""
    state = Path(state or state_dir())
    return cache_dir() / "failed-start-logs" / f"{state.name.lstrip('.') or 'sim'}-{state_suffix(state)}"


def read_versions(path: Path = None) -> dict:
    path = Path(path or os.environ.get("LLMOPS_SIM_VERSIONS", VERSIONS_FILE))
    versions = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions
