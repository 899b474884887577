"""A container's environment and user, resolved as the kubelet resolves them (pure, no cluster)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import podenv  # noqa: E402

POD = {"metadata": {"name": "web-0", "namespace": "llm", "uid": "u-1", "labels": {"app": "web", "tier": "a"}},
       "spec": {"nodeName": "gpu-0", "serviceAccountName": "ollama"},
       "status": {"podIP": "10.244.0.7", "hostIP": "10.250.0.1"}}
DATA = {("ConfigMap", "llm", "settings"): {"mode": "fast", "threads": "4"},
        ("Secret", "llm", "keys"): {"token": "s3cret"}}


def lookup(kind, namespace, name):
    return DATA.get((kind, namespace, name))


@pytest.mark.parametrize("text, expected", [
    ("$(A)-$(B)", "1-$(B)"),
    ("$$(A)", "$(A)"),
    ("$$", "$"),
    ("cost $5", "cost $5"),
    ("$(A", "$(A"),
    ("$(A)$(A)", "11"),
])
def test_expansion_follows_kubernetes(text, expected):
    assert podenv.expand(text, {"A": "1"}) == expected


def test_env_from_then_env_with_references_and_sources():
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "no", "optional": True}}},
            {"name": "URL", "value": "http://$(IP):$(PORT)/$(NAME)"},
            {"name": "CFG_mode", "value": "overridden"},
        ]}
    env = podenv.resolve(POD, container, {"PORT": "11434"}, lookup)
    assert env["CFG_threads"] == "4" and env["CFG_mode"] == "overridden"
    assert env["NAME"] == "web-0" and env["IP"] == "10.244.0.7" and env["NODE"] == "gpu-0" and env["APP"] == "web"
    assert env["TOKEN"] == "s3cret" and env["MODE"] == "fast" and "MISSING" not in env
    assert env["URL"] == "http://10.244.0.7:11434/web-0"


@pytest.mark.parametrize("entry, message", [
    ({"configMapKeyRef": {"name": "nope", "key": "a"}}, 'configmap "nope" not found'),
    ({"configMapKeyRef": {"name": "settings", "key": "nope"}}, "couldn't find key nope in ConfigMap llm/settings"),
    ({"secretKeyRef": {"name": "nope", "key": "a"}}, 'secret "nope" not found'),
])
def test_a_missing_source_is_a_config_error(entry, message):
    with pytest.raises(podenv.ConfigError, match=message):
        podenv.resolve(POD, {"env": [{"name": "X", "valueFrom": entry}]}, {}, lookup)


def test_resource_field_refs_with_divisors():
    container = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}
    assert podenv.resource_field(POD, container, {"resource": "requests.cpu"}) == "1"
    assert podenv.resource_field(POD, container, {"resource": "requests.cpu", "divisor": "1m"}) == "500"
    assert podenv.resource_field(POD, container, {"resource": "limits.memory", "divisor": "1Mi"}) == "2048"
    assert podenv.resource_field(POD, container, {"resource": "limits.cpu", "divisor": "1m"}) == "500"


def test_labels_as_a_downward_api_file():
    assert podenv.field_value(POD, "metadata.labels") == 'app="web"\ntier="a"'


def test_user_group_and_groups():
    pod = {"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                                        "supplementalGroups": [3000]}}}
    assert podenv.security(pod, {}, 0, 0) == {"uid": 1000, "gid": 1000, "groups": [2000, 3000], "no_new_privs": False}
    container = {"securityContext": {"runAsUser": 1234, "allowPrivilegeEscalation": False}}
    ids = podenv.security(pod, container, 0, 0)
    assert ids["uid"] == 1234 and ids["gid"] == 1000 and ids["no_new_privs"] is True
    # the image's user when nothing says otherwise (nginx-unprivileged runs as 101)
    assert podenv.security({"spec": {}}, {}, 101, 101)["uid"] == 101
    with pytest.raises(podenv.ConfigError, match="runAsNonRoot"):
        podenv.security({"spec": {"securityContext": {"runAsNonRoot": True}}}, {}, 0, 0)


def test_the_kubernetes_service_variables():
    env = podenv.service_env("10.250.0.1", 27541)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.250.0.1" and env["KUBERNETES_SERVICE_PORT"] == "27541"
    assert env["KUBERNETES_PORT"] == "tcp://10.250.0.1:27541"
