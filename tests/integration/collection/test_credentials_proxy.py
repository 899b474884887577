# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A kubeconfig's proxy-url, http:// and https://, as real pod_info tasks use it against the simulated cluster's
API server: the requests go through a CONNECT proxy on loopback (which records each tunnel), the TLS to the API
server inside it. An https proxy's certificate is checked against the cluster's CA: one the cluster's CA signed
carries the requests, one of another CA is a clear error naming the proxy and the fix, within the request
timeout."""

import datetime
import ipaddress
import json
import select
import socket
import ssl
import threading
import time

import pytest

from test_credentials import assert_lists_the_pod, pod_info_playbook, write_kubeconfig

APP = "cred"


class ConnectProxy:
    """A CONNECT proxy on 127.0.0.1 (TLS to it where a certificate is given); records each CONNECT line."""

    def __init__(self, cert=None):
        self.lines = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.context = None
        if cert:
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(*cert)
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        upstream = None
        try:
            conn.settimeout(10)
            if self.context:
                conn = self.context.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            self.lines.append(line)
            host, port = line.split(" ")[1].rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=10)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for _round in range(100000):
                ready = select.select([conn, upstream], [], [], 10)[0]
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is conn else conn).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()

    def close(self):
        self.stopping.set()
        self.listener.close()


def proxy_certificate(directory, ca_key=None, ca_cert=None):
    """(cert file, key file) for 127.0.0.1, signed by ca_key/ca_cert, or by a CA of its own when None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def builder(subject, issuer, key, is_ca):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if ca_key is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another-ca")])
        ca_cert = builder(name, name, ca_key, True).sign(ca_key, hashes.SHA256())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")]), ca_cert.subject, key, False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "proxy.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "proxy.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    return str(directory / "proxy.crt"), str(directory / "proxy.key")


def cluster_ca(cluster):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    pki = cluster.kubeconfig.parent / "pki"
    return (serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None),
            x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes()))


@pytest.fixture
def pod(cluster, namespace):
    cluster.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "cred-pod", "namespace": namespace, "labels": {"app": APP}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})
    return "cred-pod"


@pytest.fixture
def admin(cluster):
    view = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
    return view["clusters"][0]["cluster"], view["users"][0]["user"]


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_requests_go_through_the_kubeconfig_proxy_url(playbook, cluster, namespace, pod, admin, tmp_path,
                                                          scheme):
    server, user = admin
    proxy = ConnectProxy(proxy_certificate(tmp_path / "proxy", *cluster_ca(cluster)) if scheme == "https" else None)
    try:
        path = write_kubeconfig(tmp_path / "kube" / "config", dict(server, **{"proxy-url": proxy.url}), user)
        run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path), timeout=180)
    finally:
        proxy.close()
    assert_lists_the_pod(run, pod)
    api = server["server"].split("://", 1)[1]
    assert proxy.lines and all(line.startswith(f"CONNECT {api} ") for line in proxy.lines), proxy.lines


@pytest.mark.profile("k3s")
def test_an_https_proxy_of_another_ca_is_a_clear_error_within_the_timeout(playbook, cluster, namespace, admin,
                                                                          tmp_path):
    server, user = admin
    proxy = ConnectProxy(proxy_certificate(tmp_path / "proxy"))
    try:
        path = write_kubeconfig(tmp_path / "kube" / "config", dict(server, **{"proxy-url": proxy.url}), user)
        started = time.monotonic()
        run = playbook(pod_info_playbook(tmp_path, namespace, kubeconfig=path, timeout=5), timeout=180)
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert run.rc != 0
    assert f"through the proxy {proxy.url}" in run.failure and "CERTIFICATE_VERIFY_FAILED" in run.failure, run
    assert "Fix: the https proxy's certificate is checked against the cluster's CA" in run.failure
    assert took < 60, took
