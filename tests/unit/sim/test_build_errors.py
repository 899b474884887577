"""A build that cannot work ends with one line naming the cause and one naming the fix."""

import os
import subprocess
import sys
from pathlib import Path

SIM = Path(__file__).resolve().parents[3] / "sim"


def sim_build(tmp_path, versions_text, path_env=None):
    versions = tmp_path / "versions.env"
    versions.write_text(versions_text)
    env = dict(os.environ, LLMOPS_SIM_VERSIONS=str(versions), LLMOPS_SIM_CACHE=str(tmp_path / "cache"))
    if path_env is not None:
        env["PATH"] = path_env
    return subprocess.run([sys.executable, "-m", "sim", "build", "--only", "kwok"], cwd=SIM, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


PINS = "KUBERNETES_VERSION=v1.34.4\nETCD_VERSION=v3.5.21\nOLLAMA_VERSION=v0.11.4\n"


def test_missing_go_command_names_the_fix(tmp_path):
    result = sim_build(tmp_path, PINS + "KWOK_VERSION=v0.7.0\n", path_env=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "sim: the go command is not on PATH"
    assert "fix: install Go 1.26 or newer" in result.stderr


def test_a_version_the_module_proxy_does_not_have_fails_with_its_log(tmp_path):
    result = sim_build(tmp_path, PINS + "KWOK_VERSION=v0.0.0-no-such-version\n")
    assert result.returncode == 2
    first, fix = result.stderr.splitlines()[:2]
    assert first.startswith("sim: building kwok v0.0.0-no-such-version failed:")
    assert "sim/versions.env" in fix and "build-kwok-v0.0.0-no-such-version.log" in fix
    assert not (tmp_path / "cache" / "bin" / "kwok-v0.0.0-no-such-version").exists()
