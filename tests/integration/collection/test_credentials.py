# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster credentials as a real pod_info task resolves them against the simulated cluster's API server: the
admin kubeconfig by option and by K8S_AUTH_KUBECONFIG, a ServiceAccount's bearer token inline and from an exec
credential plugin, a refused token, certificates at paths relative to the kubeconfig, and an auth-provider user,
all through kubernetes.core's client (plugins/module_utils/cluster_client.py). The bad input of the issue is
here too: an exec plugin that fails, an expired token, an unreadable kubeconfig (and an https proxy-url in
test_credentials_proxy.py), each a clear error naming the file and the fix, within the request timeout. Where the ServiceAccount is used, a read outside its namespace must be
refused, which shows its token (and not some admin credential) went out."""

import base64
import json
import os
import sys
import time

import pytest

APP = "cred"
READER = "reader"


def pod_info_playbook(tmp_path, namespace, kubeconfig=None, environment=None, name="task.yml", timeout=20):
    """A play with one pod_info task in namespace (registered as `out`), and the same read in kube-system
    (`elsewhere`, failures ignored)."""
    def task(task_name, target, ignore):
        args = {"namespace": target, "label_selector": {"app": APP}, "request_timeout": timeout}
        if kubeconfig is not None:
            args["kubeconfig"] = str(kubeconfig)
        entry = {"name": task_name, "llmops.ollama.pod_info": args, "register": "out" if not ignore else "elsewhere"}
        if environment:
            entry["environment"] = environment
        if ignore:
            entry["ignore_errors"] = True
        return entry
    path = tmp_path / name
    path.write_text(json.dumps([{
        "name": "Read pods with the given credentials", "hosts": "localhost", "connection": "local",
        "gather_facts": False,
        "tasks": [task("Run the task", namespace, False), task("Read another namespace", "kube-system", True)]}]))
    return str(path)


def result_of(run, name="Run the task"):
    return run.task_results(name)[0]


@pytest.fixture
def pod(cluster, namespace):
    """A pod to find, labelled app=cred."""
    cluster.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "cred-pod", "namespace": namespace, "labels": {"app": APP}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})
    return "cred-pod"


@pytest.fixture
def admin(cluster):
    """The admin kubeconfig's cluster and user, with their certificates inline."""
    view = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
    return view["clusters"][0]["cluster"], view["users"][0]["user"]


@pytest.fixture
def reader_token(cluster, namespace):
    """A bearer token of a ServiceAccount that may read pods in namespace only."""
    cluster.kubectl("create", "serviceaccount", READER, "-n", namespace)
    cluster.kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "pod-reader", "--role=pod-reader",
                    f"--serviceaccount={namespace}:{READER}", "-n", namespace)
    token = cluster.kubectl("create", "token", READER, "-n", namespace, "--duration=20m").stdout.strip()
    assert token.count(".") == 2, token  # a JWT
    return token


def write_kubeconfig(path, cluster_entry, user_entry):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "sim", "cluster": cluster_entry}], "users": [{"name": "who", "user": user_entry}],
        "contexts": [{"name": "test", "context": {"cluster": "sim", "user": "who"}}]}))
    return path


def assert_lists_the_pod(run, pod):
    assert run.rc == 0, run
    result = result_of(run)
    assert not result.get("failed") and [p["name"] for p in result["pods"]] == [pod], result


def assert_read_as_the_reader(run, namespace):
    """The read in kube-system was refused to the ServiceAccount: its token was the credential sent."""
    elsewhere = result_of(run, "Read another namespace")
    assert elsewhere.get("failed"), elsewhere
    assert "answered 403" in elsewhere["msg"] and f"system:serviceaccount:{namespace}:{READER}" in elsewhere["msg"]
    assert "grant this user the permissions listed in docs/rbac.md" in elsewhere["msg"]


@pytest.mark.profile("k3s")
def test_the_admin_kubeconfig_given_as_the_module_option(playbook, cluster, namespace, pod, tmp_path):
    # The option beats K8S_AUTH_KUBECONFIG, which here names no file at all.
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=cluster.kubeconfig,
                                     environment={"K8S_AUTH_KUBECONFIG": "/nonexistent/kubeconfig"}), timeout=180)
    assert_lists_the_pod(run, pod)
    assert not result_of(run, "Read another namespace").get("failed")  # the admin may read kube-system


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("listed", [False, True], ids=["one-file", "list-with-a-missing-file"])
def test_the_admin_kubeconfig_from_k8s_auth_kubeconfig(playbook, cluster, namespace, pod, tmp_path, monkeypatch,
                                                       listed):
    # In ansible-playbook's own environment, with no kubeconfig option; KUBECONFIG must not be read instead.
    value = str(cluster.kubeconfig)
    if listed:  # merged as KUBECONFIG is: a missing file in the list is skipped
        value = os.pathsep.join([str(tmp_path / "missing"), value])
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", value)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    run = playbook(pod_info_playbook(tmp_path, namespace), timeout=180)
    assert_lists_the_pod(run, pod)


@pytest.mark.profile("k3s")
def test_a_service_account_token_in_the_kubeconfig(playbook, cluster, namespace, pod, admin, reader_token, tmp_path):
    server, _user = admin
    path = write_kubeconfig(tmp_path / "kube" / "config", server, {"token": reader_token})
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert_lists_the_pod(run, pod)
    assert_read_as_the_reader(run, namespace)


PLUGIN = """#!{python}
import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
if info.get("apiVersion") != "client.authentication.k8s.io/v1" or info["spec"].get("interactive") is not False:
    sys.exit("unexpected KUBERNETES_EXEC_INFO: %r" % info)
if os.environ.get("TOKEN_AUDIENCE") != "sim" or sys.argv[1:] != ["token", "--cluster", "sim"]:
    sys.exit("the env entry or the args did not arrive")
with open({calls!r}, "a") as calls:
    calls.write("called\\n")
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "token")) as handle:
    token = handle.read().strip()
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": token}}}}))
"""


@pytest.mark.profile("k3s")
def test_the_token_from_an_exec_credential_plugin(playbook, cluster, namespace, pod, admin, reader_token, tmp_path):
    server, _user = admin
    bin_dir = tmp_path / "kube" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "token").write_text(reader_token)
    calls = tmp_path / "calls"
    script = bin_dir / "get-token"
    script.write_text(PLUGIN.format(python=sys.executable, calls=str(calls)))
    script.chmod(0o755)
    # A relative command: relative to the kubeconfig's directory, not to ansible-playbook's cwd.
    path = write_kubeconfig(tmp_path / "kube" / "config", server, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/get-token",
        "args": ["token", "--cluster", "sim"], "env": [{"name": "TOKEN_AUDIENCE", "value": "sim"}],
        "interactiveMode": "Never"}})
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert_lists_the_pod(run, pod)
    assert_read_as_the_reader(run, namespace)
    assert calls.read_text().splitlines() == ["called", "called"]  # once for each task


@pytest.mark.profile("k3s")
def test_a_failing_exec_plugin_is_reported_with_its_message(playbook, cluster, namespace, admin, tmp_path):
    server, _user = admin
    script = tmp_path / "expired"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('the SSO session expired: run sso login')\n")
    script.chmod(0o755)
    path = write_kubeconfig(tmp_path / "kube" / "config", server, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(script), "interactiveMode": "Never"}})
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert run.rc != 0
    assert (f"the exec credential plugin {script} of the kubeconfig {path} (context test, user who) failed: "
            "exec: process returned 1. the SSO session expired: run sso login") in run.failure, run
    assert "Fix: run the command by hand to see what it needs (e.g. a fresh login)" in run.failure


@pytest.mark.profile("k3s")
def test_a_hanging_exec_plugin_is_stopped_within_the_request_timeout(playbook, cluster, namespace, admin, tmp_path):
    server, _user = admin
    script = tmp_path / "hang"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(120)\n")
    script.chmod(0o755)
    path = write_kubeconfig(tmp_path / "kube" / "config", server, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(script), "interactiveMode": "Never"}})
    started = time.monotonic()
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path, timeout=3), timeout=180)
    took = time.monotonic() - started
    assert run.rc != 0
    assert f"exec: {script} did not answer within 3 seconds" in run.failure, run
    assert took < 60, took  # the two tasks, each stopped at 3 s, and ansible-playbook around them


def expired_token(cluster, namespace):
    """A ServiceAccount token the cluster itself would have issued (signed with its key, its issuer and audience)
    that expired an hour ago."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    key = serialization.load_pem_private_key((cluster.kubeconfig.parent / "pki" / "sa.key").read_bytes(), None)
    now = int(time.time())
    issuer = "https://kubernetes.default.svc.cluster.local"
    claims = {"iss": issuer, "aud": [issuer], "sub": f"system:serviceaccount:{namespace}:{READER}",
              "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600,
              "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": READER, "uid": "0"}}}

    def part(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    signed = part({"alg": "RS256", "typ": "JWT"}) + "." + part(claims)
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signed + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("kind", ["invalid", "expired"])
def test_a_refused_token_is_a_401_that_names_the_file_and_the_fix(playbook, cluster, namespace, admin, tmp_path,
                                                                  kind):
    server, _user = admin
    token = "not-a-valid-token" if kind == "invalid" else expired_token(cluster, namespace)
    path = write_kubeconfig(tmp_path / "kube" / "config", server, {"token": token})
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert run.rc != 0
    assert "answered 401" in run.failure, run
    assert (f"Fix: the credentials of the kubeconfig {path} (context test, user who) were refused (expired or "
            "revoked): renew them (a new token, certificate or login) or choose another ollama_context") in run.failure


@pytest.mark.profile("k3s")
def test_an_unreadable_kubeconfig_is_named(playbook, cluster, namespace, tmp_path):
    # A directory: unreadable as a file even to root (the tests may run as root, whom chmod does not stop).
    path = tmp_path / "kube" / "config"
    path.mkdir(parents=True)
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert run.rc != 0
    assert f"cannot read the kubeconfig {path}: Is a directory. Fix: make it readable" in run.failure, run
    broken = tmp_path / "broken"
    broken.write_text("clusters: [\n")
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=broken, name="broken.yml"), timeout=180)
    assert run.rc != 0
    assert f"the kubeconfig {broken} is not valid YAML" in run.failure, run


@pytest.mark.profile("k3s")
def test_certificates_at_paths_relative_to_the_kubeconfig(playbook, cluster, namespace, pod, admin, tmp_path):
    server, user = admin
    pki = tmp_path / "pki"
    pki.mkdir()
    for name, data in (("ca.crt", server["certificate-authority-data"]),
                       ("admin.crt", user["client-certificate-data"]), ("admin.key", user["client-key-data"])):
        (pki / name).write_bytes(base64.b64decode(data))
    relative = {"server": server["server"], "certificate-authority": "../pki/ca.crt"}
    path = write_kubeconfig(tmp_path / "kube" / "config", relative,
                            {"client-certificate": "../pki/admin.crt", "client-key": "../pki/admin.key"})
    # ansible-playbook runs in the repository: these paths resolve only against the kubeconfig's directory.
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert_lists_the_pod(run, pod)
    # A CA that is not there is named in the error.
    broken = write_kubeconfig(tmp_path / "broken" / "config", dict(relative, **{"certificate-authority": "nope.crt"}),
                              {"client-certificate": "../pki/admin.crt", "client-key": "../pki/admin.key"})
    failed = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=broken, name="broken.yml"), timeout=180)
    assert failed.rc != 0
    assert f"cannot load the TLS files of the kubeconfig ({tmp_path / 'broken' / 'nope.crt'}" in failed.failure, failed


@pytest.mark.profile("k3s")
def test_an_auth_provider_user_goes_through_the_kubernetes_client(playbook, cluster, namespace, pod, admin,
                                                                   reader_token, tmp_path):
    # The kubernetes client's oidc support sends this id-token (a valid JWT, unexpired, so the client needs no
    # issuer to refresh it).
    server, _user = admin
    path = write_kubeconfig(tmp_path / "kube" / "config", server, {"auth-provider": {"name": "oidc", "config": {
        "id-token": reader_token, "idp-issuer-url": "https://issuer.invalid", "client-id": "x"}}})
    run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    assert_lists_the_pod(run, pod)
    assert_read_as_the_reader(run, namespace)
