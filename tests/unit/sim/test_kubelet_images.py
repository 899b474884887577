"""The image table: which pods the simulator runs and what runs in them (pure, no cluster)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import images  # noqa: E402


@pytest.mark.parametrize("image, repository", [
    ("ollama/ollama", "ollama"),
    ("docker.io/ollama/ollama:0.11.4", "ollama"),
    ("registry.local:5000/mirror/ollama/ollama:0.11.4@sha256:" + "a" * 64, "ollama"),
    ("registry.local:5000/nginx", "nginx"),
    ("nginxinc/nginx-unprivileged:1.27-alpine", "nginx-unprivileged"),
    ("rancher/mirrored-library-traefik:3.3.6", "mirrored-library-traefik"),
    ("", ""),
])
def test_repository_is_the_last_path_segment_without_tag_or_digest(image, repository):
    assert images.repository(image) == repository


def test_command_replaces_the_entrypoint_and_args_replace_the_cmd():
    img = images.lookup("ollama/ollama")
    assert images.argv(img, {}) == ["/bin/ollama", "serve"]
    assert images.argv(img, {"args": ["list"]}) == ["/bin/ollama", "list"]
    assert images.argv(img, {"command": ["sh", "-c", "ollama list"]}) == ["sh", "-c", "ollama list"]
    assert images.argv(img, {"command": ["sh"], "args": ["-c", "true"]}) == ["sh", "-c", "true"]
    nginx = images.lookup("nginxinc/nginx-unprivileged:1.27")
    assert images.argv(nginx, {}) == ["nginx", "-g", "daemon off;"]
    assert images.argv(nginx, {"args": ["nginx", "-c", "/etc/gate/nginx.conf"]}) == ["nginx", "-c", "/etc/gate/nginx.conf"]
    assert images.argv(images.lookup("traefik:v3"), {"args": ["--entryPoints.web.address=:8000"]}) == \
        ["traefik", "--entryPoints.web.address=:8000"]


def test_the_images_own_defaults():
    assert images.lookup("ollama/ollama").env["OLLAMA_HOST"] == "0.0.0.0:11434"
    unprivileged = images.lookup("nginxinc/nginx-unprivileged")
    assert (unprivileged.uid, unprivileged.gid) == (101, 101)
    assert "listen 8080;" in unprivileged.files["/etc/nginx/conf.d/default.conf"]
    assert images.lookup("nginx").uid == 0


def pod(*images_, init=(), annotations=None):
    return {"metadata": {"annotations": annotations or {}},
            "spec": {"containers": [{"name": f"c{i}", "image": i_} for i, i_ in enumerate(images_)],
                     "initContainers": [{"name": f"i{i}", "image": i_} for i, i_ in enumerate(init)]}}


def test_a_pod_is_run_for_real_when_any_image_is_in_the_table():
    assert images.runs_for_real(pod("ollama/ollama:0.11.4"))
    assert images.runs_for_real(pod("redis:7", "nginx:1.27"))
    assert images.runs_for_real(pod("redis:7", init=["ollama/ollama"]))
    assert not images.runs_for_real(pod("nvcr.io/nvidia/k8s-device-plugin:v0.17.0"))
    assert not images.runs_for_real(pod("ollama/ollama", annotations={images.KWOK_ANNOTATION: "kwok"}))


def test_kwok_stages_split_the_pods_by_the_same_rule():
    stages = {s["metadata"]["name"]: s for s in images.kwok_pod_stages()}
    assert set(stages) == {"pod-ready", "pod-complete", "pod-delete", "llmops-sim-pod-address"}
    expression = images.runs_expression()
    for name in ("pod-ready", "pod-complete", "pod-delete"):
        assert {"key": expression, "operator": "NotIn", "values": ["true"]} in \
            stages[name]["spec"]["selector"]["matchExpressions"]
    ours = stages["llmops-sim-pod-address"]
    assert {"key": expression, "operator": "In", "values": ["true"]} in ours["spec"]["selector"]["matchExpressions"]
    template = ours["spec"]["next"]["statusTemplate"]
    assert "podIP:" in template and "phase: Pending" in template and "Ready" not in template
    for name in images.IMAGES:
        assert f'. == "{name}"' in expression


def test_the_kwok_config_is_one_document_per_stage(tmp_path):
    path = images.write_kwok_config(tmp_path / "kwok.yaml")
    docs = [json.loads(d) for d in path.read_text().split("---\n") if d.strip()]
    assert [d["kind"] for d in docs] == ["Stage"] * 4
