"""The gate_keys module against a real API server: the gate's Secrets generated once and kept, given keys written
exactly, a hand edit read back, check and diff mode that tell the truth, and never a key in the output."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.llmops.ollama.plugins.module_utils import gate  # noqa: E402

NAME = "ollama"
KEY_A, KEY_B = "team-a-" + "a" * 36, "team-b-" + "b" * 36


def keys_module(cluster, check=False, diff=False, **args):
    """(rc, result, stdout) of gate_keys run ad hoc on localhost."""
    cmd = [str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-m", "llmops.ollama.gate_keys",
           "-a", json.dumps(dict({"name": NAME}, **args))]
    cmd += ["--check"] if check else []
    cmd += ["--diff"] if diff else []
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), K8S_AUTH_KUBECONFIG=str(cluster.kubeconfig),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    report = json.loads(done.stdout[done.stdout.index("{"):])
    return done.returncode, report["plays"][0]["tasks"][0]["hosts"]["localhost"], done.stdout + done.stderr


def secret(cluster, namespace, name):
    obj = cluster.get("secret", name, "-n", namespace)
    return dict((k, base64.b64decode(v).decode()) for k, v in obj["data"].items()), obj["metadata"]


def versions(cluster, namespace):
    return dict((s["metadata"]["name"], s["metadata"]["resourceVersion"])
                for s in cluster.get("secrets", "-n", namespace)["items"])


@pytest.mark.profile("k3s")
def test_keys_are_generated_once_kept_and_never_shown(cluster, namespace):
    rc, first, out = keys_module(cluster, namespace=namespace, labels={"app.kubernetes.io/name": "ollama"})
    assert rc == 0 and first["changed"], first
    assert first["generated"] == ["admin", "api_keys"] and first["key_count"] == 1
    assert first["keys_source"] == "generated"
    assert first["secrets"] == {"api_keys": f"{NAME}-api-keys", "admin": f"{NAME}-gate-admin"}
    admin, admin_meta = secret(cluster, namespace, f"{NAME}-gate-admin")
    client, client_meta = secret(cluster, namespace, f"{NAME}-api-keys")
    (key,) = gate.parse_keys_text(client["keys"])
    assert gate.key_problem(key) is None and gate.key_problem(admin["key"]) is None
    assert client["keys.map"] == gate.client_map([key]) and admin["admin.map"] == gate.admin_map(admin["key"])
    assert client_meta["annotations"]["llmops.ollama/keys-source"] == "generated"
    assert admin_meta["labels"] == client_meta["labels"] == {"app.kubernetes.io/name": "ollama"}
    assert first["fingerprint"] == gate.fingerprint(admin["key"], client["keys.map"])
    assert key not in out and admin["key"] not in out

    written = versions(cluster, namespace)
    for check in (False, True):
        rc, again, out = keys_module(cluster, check=check, diff=True, namespace=namespace,
                                     labels={"app.kubernetes.io/name": "ollama"})
        assert rc == 0 and not again["changed"] and again["generated"] == [], again
        assert again["fingerprint"] == first["fingerprint"] and again.get("diff") in (None, [], {})
    assert versions(cluster, namespace) == written  # nothing was written


@pytest.mark.profile("k3s")
def test_given_keys_replace_the_generated_one_and_their_removal_generates_a_new_one(cluster, namespace):
    rc, first, _out = keys_module(cluster, namespace=namespace)
    assert rc == 0, first
    admin_before = secret(cluster, namespace, f"{NAME}-gate-admin")[0]["key"]

    rc, dry, out = keys_module(cluster, check=True, diff=True, namespace=namespace, api_keys=[KEY_A, KEY_B])
    assert rc == 0 and dry["changed"] and dry["key_count"] == 2, dry
    (change,) = dry["diff"]
    assert change["after"]["name"] == f"{NAME}-api-keys" and change["before"]["data"] != change["after"]["data"]
    assert all(v.startswith("hmac-sha256:") for v in change["after"]["data"].values())
    assert KEY_A not in out and KEY_B not in out
    assert gate.parse_keys_text(secret(cluster, namespace, f"{NAME}-api-keys")[0]["keys"]) != [KEY_A, KEY_B]

    rc, given, out = keys_module(cluster, namespace=namespace, api_keys=[KEY_A, KEY_B])
    assert rc == 0 and given["changed"] and given["keys_source"] == "given", given
    client, meta = secret(cluster, namespace, f"{NAME}-api-keys")
    assert client["keys"] == KEY_A + "\n" + KEY_B + "\n" and meta["annotations"]["llmops.ollama/keys-source"] == "given"
    assert given["fingerprint"] != first["fingerprint"]
    assert secret(cluster, namespace, f"{NAME}-gate-admin")[0]["key"] == admin_before  # the admin key stays
    assert KEY_A not in out and KEY_B not in out

    rc, gone, out = keys_module(cluster, namespace=namespace)
    assert rc == 0 and gone["changed"] and gone["generated"] == ["api_keys"], gone
    assert any("no longer pass the gate" in w for w in gone["warnings"])
    (new,) = gate.parse_keys_text(secret(cluster, namespace, f"{NAME}-api-keys")[0]["keys"])
    assert new not in (KEY_A, KEY_B) and new not in out


@pytest.mark.profile("k3s")
def test_a_hand_edit_of_the_keys_is_kept_and_the_map_follows(cluster, namespace):
    assert keys_module(cluster, namespace=namespace)[0] == 0
    client = secret(cluster, namespace, f"{NAME}-api-keys")[0]
    edited = client["keys"] + KEY_B + "\n"
    cluster.kubectl("-n", namespace, "patch", "secret", f"{NAME}-api-keys", "--type=merge", "-p",
                    json.dumps({"data": {"keys": base64.b64encode(edited.encode()).decode()}}))
    rc, result, _out = keys_module(cluster, namespace=namespace)
    assert rc == 0 and result["changed"] and result["key_count"] == 2 and result["generated"] == [], result
    client = secret(cluster, namespace, f"{NAME}-api-keys")[0]
    assert client["keys"] == edited and client["keys.map"] == gate.client_map(gate.parse_keys_text(edited))

    cluster.kubectl("-n", namespace, "patch", "secret", f"{NAME}-api-keys", "--type=merge", "-p",
                    json.dumps({"data": {"keys": base64.b64encode(b"too short\n").decode()}}))
    written = versions(cluster, namespace)
    rc, bad, out = keys_module(cluster, namespace=namespace)
    assert rc != 0 and 'line 1 of the "keys"' in bad["msg"] and "Fix:" in bad["msg"], bad
    assert "too short" not in out and versions(cluster, namespace) == written


@pytest.mark.profile("k3s")
def test_without_client_keys_the_client_secret_is_left_alone(cluster, namespace):
    assert keys_module(cluster, namespace=namespace, api_keys=[KEY_A])[0] == 0
    written = versions(cluster, namespace)
    rc, result, _out = keys_module(cluster, namespace=namespace, client_keys=False)
    assert rc == 0 and not result["changed"] and result["key_count"] == 0 and result["keys_source"] == "none"
    assert versions(cluster, namespace) == written
    assert secret(cluster, namespace, f"{NAME}-api-keys")[0]["keys"] == KEY_A + "\n"


@pytest.mark.profile("k3s")
def test_a_missing_namespace_is_a_create_in_check_mode_and_an_error_with_the_fix_otherwise(cluster):
    rc, dry, _out = keys_module(cluster, check=True, namespace="t-not-there")
    assert rc == 0 and dry["changed"] and dry["fingerprint"] == "pending", dry
    rc, real, _out = keys_module(cluster, namespace="t-not-there")
    assert rc != 0 and "create the namespace t-not-there first" in real["msg"], real
    assert cluster.kubectl("get", "namespace", "t-not-there", check=False).returncode != 0
