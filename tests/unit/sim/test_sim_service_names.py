"""The simulator's stand-ins for cluster DNS and the kubelet's termination message (pure, no cluster): Service names in
each pod's /etc/hosts, and a failed container's log tail as its message under FallbackToLogsOnError."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import images, runtime, services  # noqa: E402


def svc(ns, name, ip):
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip}}


def test_services_resolve_by_the_names_cluster_dns_answers():
    names = services.service_names([svc("ollama", "ollama-model-cache", "10.43.0.9"), svc("kube-system", "dns", "None"),
                                    svc("default", "kubernetes", "10.43.0.1")])
    assert names == [("10.43.0.1", "default", "kubernetes"), ("10.43.0.9", "ollama", "ollama-model-cache")]
    lines = services.hosts_lines(names, "ollama").splitlines()
    assert lines == ["10.43.0.1\tkubernetes.default.svc.cluster.local kubernetes.default.svc kubernetes.default",
                     "10.43.0.9\tollama-model-cache.ollama.svc.cluster.local ollama-model-cache.ollama.svc "
                     "ollama-model-cache.ollama ollama-model-cache"]


def test_the_log_tail_is_the_message_of_a_failed_container(tmp_path):
    log = tmp_path / "0.log"
    log.write_text("".join("line %d\n" % i for i in range(200)) + "cannot fetch x. Fix: y\n")
    tail = runtime._log_tail(log)
    assert tail.endswith("cannot fetch x. Fix: y") and len(tail.encode()) <= 2048
    assert len(tail.splitlines()) <= 80
    assert runtime._log_tail(tmp_path / "missing.log") == ""


def test_the_registry_image_runs_distribution():
    img = images.lookup("docker.io/library/registry:3.0.0")
    assert img.program == "build:registry" and img.paths == ("/bin/registry",)
    assert images.argv(img, {}) == ["registry", "serve", "/etc/distribution/config.yml"]
