"""gpu/run.sh where it cannot run: one line saying why, exit 2 (the GPU lane itself runs on the GPU machine)."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RUN = REPO / "gpu" / "run.sh"


def bare_path(tmp_path, **tools):
    """A PATH with only what run.sh needs before its checks (and the given fake tools)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dirname", "grep", "head"):
        os.symlink(shutil.which(name), bin_dir / name)
    for name, script in tools.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + script)
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def run(tmp_path, path, **env):
    return subprocess.run([shutil.which("bash"), str(RUN)], capture_output=True, text=True, timeout=30,
                          env=dict({"PATH": path, "LLMOPS_GPU_PAYLOAD": str(tmp_path / "payload")}, **env))


def test_without_nvidia_smi_it_says_so_in_one_line(tmp_path):
    result = run(tmp_path, bare_path(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "gpu-check: no NVIDIA GPU here (nvidia-smi is not on PATH); run it on the GPU machine"]


def test_a_driver_that_finds_no_gpu(tmp_path):
    path = bare_path(tmp_path, **{"nvidia-smi": 'echo "No devices were found"; exit 6\n'})
    result = run(tmp_path, path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["gpu-check: nvidia-smi lists no GPU: No devices were found"]


def test_a_gpu_but_no_payload(tmp_path):
    path = bare_path(tmp_path, **{"nvidia-smi": 'echo "GPU 0: NVIDIA H200 (UUID: GPU-1)"\n'})
    result = run(tmp_path, path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "no payload at %s; run make gpu-pack" % (tmp_path / "payload") in result.stderr


def test_make_gpu_check_runs_it(tmp_path):
    path = bare_path(tmp_path)
    os.symlink(shutil.which("bash"), Path(path) / "bash")
    result = subprocess.run([shutil.which("make"), "-s", "-C", str(REPO), "gpu-check"], capture_output=True,
                            text=True, timeout=60, env={"PATH": path})
    assert result.returncode != 0
    assert "gpu-check: no NVIDIA GPU here (nvidia-smi is not on PATH)" in result.stderr
