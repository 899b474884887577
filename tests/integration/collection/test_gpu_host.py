"""gpu_host_info end to end on this host, with nvidia-smi replaced by a script that prints output recorded
on a real H100 (tests/unit/fixtures/nvidia-smi): the simulator has no GPU hosts to reach over SSH."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "nvidia-smi"


def run_module(args, name="llmops.ollama.gpu_host_info"):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    result = subprocess.run([str(REPO / ".venv/bin/ansible"), "localhost", "-m", name,
                             "-a", json.dumps(args)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    report = json.loads(result.stdout[result.stdout.index("{"):])
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"]


def fake_nvidia_smi(tmp_path, name="h100-driver580-real"):
    script = tmp_path / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --query-gpu=*) cat {FIXTURES / (name + '.query.csv')} ;;
  *) cat {FIXTURES / (name + '.txt')} ;;
esac
""")
    script.chmod(0o755)
    return script


def test_reads_a_recorded_h100_and_a_k3s_containerd_with_the_nvidia_runtime(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"]\n'
                      '  runtime_type = "io.containerd.runc.v2"\n')
    result = run_module({"nvidia_smi": str(fake_nvidia_smi(tmp_path)), "containerd_config": str(config)})
    gpu = result["gpu"]
    assert gpu["gpu_count"] == 1 and gpu["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["gpus"][0]["memory_total_mib"] == 81559
    assert gpu["driver_version"] == "580.159.04" and gpu["cuda_version"] == "13.0"
    assert gpu["containerd_nvidia_runtime"] is True and result["changed"] is False


def test_containerd_without_the_nvidia_runtime_is_reported(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."runc"]\n')
    result = run_module({"nvidia_smi": str(fake_nvidia_smi(tmp_path)), "containerd_config": str(config)})
    assert result["gpu"]["containerd_config_found"] is True and result["gpu"]["containerd_nvidia_runtime"] is False


def test_missing_nvidia_smi_fails_with_the_fix(tmp_path):
    result = run_module({"nvidia_smi": str(tmp_path / "absent" / "nvidia-smi")})
    assert result["failed"] and "nvidia-smi was not found" in result["msg"] and "install the NVIDIA driver" in result["msg"]


def test_a_driver_that_does_not_answer_fails_with_the_fix(tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n")
    script.chmod(0o755)
    result = run_module({"nvidia_smi": str(script)})
    assert result["failed"] and "couldn't communicate with the NVIDIA driver" in result["msg"]
    assert "load the NVIDIA kernel driver" in result["msg"]


def test_the_old_facts_name_redirects_with_a_deprecation(tmp_path):
    # gpu_host_facts returned no ansible_facts; it is gpu_host_info now, and the old name still runs it.
    config = tmp_path / "config.toml"
    config.write_text('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"]\n')
    args = {"nvidia_smi": str(fake_nvidia_smi(tmp_path)), "containerd_config": str(config)}
    old = run_module(args, name="llmops.ollama.gpu_host_facts")
    assert old["gpu"] == run_module(args)["gpu"]
    assert [d["msg"] for d in old["deprecations"]] == [
        "llmops.ollama.gpu_host_facts has been deprecated. Use llmops.ollama.gpu_host_info instead (the same "
        "module, renamed)."], old
