# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's requests through kubernetes.core's client (cluster_client.py, k8s.Api), against local servers
on loopback: the real kubernetes client, kubernetes.core's get_api_client and urllib3, with kubeconfigs written
here. No mocks: a local HTTP(S) server stands in for the API server (it answers the client's discovery and records
each request), a local proxy for a proxy, small scripts for exec credential plugins. The simulated cluster's tests
(tests/integration/collection/test_credentials*.py) run the same paths through ansible-playbook."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import http.server
import ipaddress
import json
import os
import select
import socket
import ssl
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import cluster_client, inprocess, k8s

from kubernetes.config import kube_config


# Local servers


class Server(object):
    """An API server on loopback: answers /version, /api, /apis (the client's discovery) and what routes says
    (path -> (status, body) or a callable(handler) that writes the answer itself); records every request as
    (method, path, headers)."""

    def __init__(self, routes=None, tls=None):
        self.routes = dict({'/api/v1/pods': (200, PODS)}, **(routes or {}))
        self.requests = []
        self.connections = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get('Content-Length') or 0)
                self.body = self.rfile.read(length) if length else b''
                server.requests.append((self.command, self.path, self.headers))  # case-insensitive
                server.connections.add(self.client_address)
                path = urlsplit(self.path).path  # an absolute URI from a forwarding proxy too
                route = server.routes.get(path) or DISCOVERY.get(path) or NOT_FOUND
                if callable(route):
                    return route(self)
                status, body = route
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = '%s://127.0.0.1:%d' % ('https' if tls else 'http', self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def api_requests(self):
        """The requests beside the client's discovery."""
        return [r for r in self.requests if urlsplit(r[1]).path not in DISCOVERY]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


DISCOVERY = {'/version': (200, {'major': '1', 'minor': '34', 'gitVersion': 'v1.34.0'}),
             '/api': (200, {'kind': 'APIVersions', 'versions': ['v1']}),
             '/apis': (200, {'kind': 'APIGroupList', 'groups': []})}
PODS = {'kind': 'PodList', 'items': []}
NOT_FOUND = (404, {'kind': 'Status', 'code': 404, 'message': 'not found'})


class Proxy(object):
    """An HTTP proxy on loopback (TLS to the proxy where tls is given): forwards an absolute-URI request or opens
    a CONNECT tunnel; records the request lines."""

    def __init__(self, tls=None):
        self.lines = []
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.context = None
        if tls:
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(*tls)
        self.url = '%s://127.0.0.1:%d' % ('https' if tls else 'http', self.port)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _addr = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.context:
                conn = self.context.wrap_socket(conn, server_side=True)
            head = b''
            while b'\r\n\r\n' not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            line = head.split(b'\r\n', 1)[0].decode()
            self.lines.append(line)
            method, target = line.split(' ')[:2]
            if method == 'CONNECT':
                host, port = target.rsplit(':', 1)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
                rest = head.split(b'\r\n\r\n', 1)[1]
                if rest:
                    upstream.sendall(rest)
            else:  # GET http://host:port/path: forwarded as it is (the server takes an absolute URI)
                parts = urlsplit(target)
                upstream = socket.create_connection((parts.hostname, parts.port), timeout=10)
                upstream.sendall(head)
            self._pipe(conn, upstream)
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _pipe(a, b):
        for _round in range(10000):
            ready = select.select([a, b], [], [], 10)[0]
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)

    def close(self):
        self.listener.close()


def tls_files(directory, ca=None, name='server'):
    """(ca (key, cert), cert file, key file) for a server on 127.0.0.1, signed by ca (a new one when None)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, key, is_ca, sans=()):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return builder

    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'test-ca-%s' % name)])
        ca = (ca_key, build(ca_name, ca_name, ca_key, True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca[1].subject, key, False,
                 [x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]).sign(ca[0], hashes.SHA256())
    cert_file, key_file = os.path.join(str(directory), name + '.crt'), os.path.join(str(directory), name + '.key')
    with open(cert_file, 'wb') as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, 'wb') as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return ca, cert_file, key_file


def ca_pem(ca):
    from cryptography.hazmat.primitives import serialization
    return ca[1].public_bytes(serialization.Encoding.PEM)


# Kubeconfigs and modules


def write_kubeconfig(path, server, user=None, cluster_extra=None, context='test', user_name='who'):
    """A kubeconfig at path with one context; JSON is YAML."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        json.dump({'apiVersion': 'v1', 'kind': 'Config', 'current-context': context,
                   'clusters': [{'name': 'local', 'cluster': dict({'server': server}, **(cluster_extra or {}))}],
                   'users': [{'name': user_name, 'user': user if user is not None else {'token': 'tok'}}],
                   'contexts': [{'name': context, 'context': {'cluster': 'local', 'user': user_name}}]}, handle)
    return path


def module(**params):
    """The module object the collection's modules get in the controller (inprocess.ControllerK8SModule, the
    in-process AnsibleK8SModule), with the auth options of kubernetes.core."""
    return inprocess.ControllerK8SModule(k8s.auth_argument_spec(), params, False, False)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No K8S_AUTH_*, KUBECONFIG or proxy variable of this machine; the client's discovery cache in tmp_path (a
    first connection each test); no client cached from another test."""
    for name in list(os.environ):
        if name.startswith('K8S_AUTH_') or name in ('KUBECONFIG', 'HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy',
                                                    'http_proxy', 'NO_PROXY', 'no_proxy'):
            monkeypatch.delenv(name)
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s import client as core_client
    core_client._pool.clear()


@pytest.fixture
def server():
    started = Server()
    yield started
    started.close()


def plugin(path, body):
    """An exec credential plugin: a Python script at path running body (with json, os, sys imported)."""
    with open(str(path), 'w') as handle:
        handle.write('#!%s\nimport json, os, sys, time\n%s\n' % (sys.executable, body))
    os.chmod(str(path), 0o755)
    return str(path)


def credential(token, expires=None):
    status = {'token': token}
    if expires is not None:
        status['expirationTimestamp'] = expires.strftime('%Y-%m-%dT%H:%M:%SZ')
    return json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', 'status': status})


EXEC = {'apiVersion': 'client.authentication.k8s.io/v1', 'interactiveMode': 'Never'}


# Where the credentials come from


def test_the_option_beats_k8s_auth_kubeconfig_and_the_token_is_sent(server, tmp_path, monkeypatch):
    mine = write_kubeconfig(tmp_path / 'mine', server.url, {'token': 'mine-token'})
    monkeypatch.setenv('K8S_AUTH_KUBECONFIG', write_kubeconfig(tmp_path / 'theirs', 'http://127.0.0.1:1'))
    api = k8s.Api(module(kubeconfig=mine), request_timeout=5)
    assert api.get_or_none('/api/v1/namespaces/x/pods', labelSelector='app=y') is None  # the server's 404
    method, path, headers = server.api_requests()[-1]
    assert (method, path) == ('GET', '/api/v1/namespaces/x/pods?labelSelector=app%3Dy')
    assert headers['Authorization'] == 'Bearer mine-token'


def test_k8s_auth_kubeconfig_as_a_list_with_a_missing_file(server, tmp_path, monkeypatch):
    path = write_kubeconfig(tmp_path / 'kc', server.url)
    monkeypatch.setenv('K8S_AUTH_KUBECONFIG', os.pathsep.join([str(tmp_path / 'missing'), path]))
    assert k8s.Api(module(), request_timeout=5).version()['gitVersion'] == 'v1.34.0'
    monkeypatch.setenv('K8S_AUTH_KUBECONFIG', os.pathsep.join([str(tmp_path / 'a'), str(tmp_path / 'b')]))
    with pytest.raises(k8s.ClusterError, match='the kubeconfig .*a:.*b does not exist'):
        k8s.Api(module(), request_timeout=5)


def test_no_kubeconfig_anywhere_names_the_default_file_of_this_home(tmp_path, monkeypatch):
    # A become task runs as another user: the message names that user's file, not the controller's.
    with pytest.raises(k8s.ClusterError) as raised:
        k8s.Api(module(), request_timeout=5)
    assert 'no kubeconfig at %s' % (tmp_path / 'home' / '.kube' / 'config') in str(raised.value)
    assert 'Fix: set ollama_kubeconfig' in str(raised.value)
    monkeypatch.setenv('KUBECONFIG', str(tmp_path / 'gone'))
    with pytest.raises(k8s.ClusterError, match='the kubeconfig .*gone \\(from KUBECONFIG\\) does not exist'):
        k8s.Api(module(), request_timeout=5)


def test_kubeconfig_from_the_task_environment_in_the_controller(server, tmp_path, monkeypatch):
    # The kubernetes client reads KUBECONFIG once, when it is imported; in the controller each task's
    # environment sets it after that, as it would for a module process.
    monkeypatch.setenv('KUBECONFIG', write_kubeconfig(tmp_path / 'env', server.url, {'token': 'env-token'}))
    k8s.Api(module(), request_timeout=5).version()
    assert server.requests[-1][2]['Authorization'] == 'Bearer env-token'


def test_impersonation_options_become_repeated_headers(server, tmp_path, monkeypatch):
    monkeypatch.setenv('K8S_AUTH_IMPERSONATE_GROUPS', 'a,b')
    path = write_kubeconfig(tmp_path / 'kc', server.url)
    k8s.Api(module(kubeconfig=path, impersonate_user='alice'), request_timeout=5).get('/api/v1/pods')
    _method, _path, headers = server.api_requests()[-1]
    assert headers['Impersonate-User'] == 'alice'
    assert headers.get_all('Impersonate-Group') == ['a', 'b']  # one header per group


def test_an_inline_kubeconfig(server):
    inline = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'c',
              'clusters': [{'name': 'c', 'cluster': {'server': server.url}}],
              'users': [{'name': 'u', 'user': {'token': 'inline-token'}}],
              'contexts': [{'name': 'c', 'context': {'cluster': 'c', 'user': 'u'}}]}
    k8s.Api(module(kubeconfig=inline), request_timeout=5).version()
    assert server.requests[-1][2]['Authorization'] == 'Bearer inline-token'


# Exec credential plugins


def test_an_exec_plugin_runs_without_a_terminal_relative_to_the_kubeconfig(server, tmp_path):
    calls = tmp_path / 'calls'
    (tmp_path / 'kube' / 'bin').mkdir(parents=True)
    plugin(tmp_path / 'kube' / 'bin' / 'get-token',
           'info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])\n'
           'open(%r, "a").write(json.dumps([info["spec"]["interactive"], sys.stdin.read(), sys.argv[1:]]) + "\\n")\n'
           'print(%r)' % (str(calls), credential('exec-token')))
    path = write_kubeconfig(tmp_path / 'kube' / 'config', server.url,
                            {'exec': dict(EXEC, command='./bin/get-token', args=['--x'])})
    api = k8s.Api(module(kubeconfig=path), request_timeout=5)
    api.get('/api/v1/pods')
    api.get('/api/v1/pods')
    assert server.api_requests()[-1][2]['Authorization'] == 'Bearer exec-token'
    # No expiry: run once; no terminal (interactive false, stdin empty), the args as given.
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [[False, '', ['--x']]]


def test_an_exec_token_is_renewed_when_its_expiration_passes(server, tmp_path):
    # The client renews a token within five minutes of its expirationTimestamp before each request.
    count = tmp_path / 'count'
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    command = plugin(tmp_path / 'plugin', (
        'n = len(open(%r).read()) + 1 if os.path.exists(%r) else 1\n'
        'open(%r, "a").write("x")\n'
        'status = json.loads(%r)\n'
        'status["status"]["token"] = "token-%%d" %% n\n'
        'print(json.dumps(status))') % (str(count), str(count), str(count), credential('t', soon)))
    path = write_kubeconfig(tmp_path / 'kc', server.url, {'exec': dict(EXEC, command=command)})
    api = k8s.Api(module(kubeconfig=path), request_timeout=5)
    api.get('/api/v1/pods')
    api.get('/api/v1/pods')
    tokens = [r[2]['Authorization'] for r in server.api_requests()]
    assert len(tokens) == 2 and tokens[0] != tokens[1] and tokens[1] == 'Bearer token-%d' % len(count.read_text())


def test_a_failing_exec_plugin_names_the_plugin_the_file_and_the_fix(server, tmp_path):
    command = plugin(tmp_path / 'sso', 'sys.exit("the SSO session expired: run sso login")')
    user = {'exec': dict(EXEC, command=command, installHint='see docs/eks.md')}
    path = write_kubeconfig(tmp_path / 'kc', server.url, user)
    with pytest.raises(k8s.ClusterError) as caught:
        k8s.Api(module(kubeconfig=path), request_timeout=5)
    text = str(caught.value)
    assert 'the exec credential plugin %s of the kubeconfig %s (context test, user who) failed' % (command, path) \
        in text
    assert 'the SSO session expired: run sso login' in text and 'Fix: run the command by hand' in text
    assert '(see docs/eks.md)' in text
    assert not server.api_requests()  # nothing went out anonymously


def test_a_missing_plugin_and_a_plugin_without_a_token_are_errors(server, tmp_path):
    path = write_kubeconfig(tmp_path / 'kc', server.url, {'exec': dict(EXEC, command='no-such-plugin-here')})
    with pytest.raises(k8s.ClusterError, match='plugin no-such-plugin-here of .* failed: .*No such file'):
        k8s.Api(module(kubeconfig=path), request_timeout=5)
    empty = plugin(tmp_path / 'empty', 'print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", '
                                       '"kind": "ExecCredential", "status": {}}))')
    path = write_kubeconfig(tmp_path / 'kc2', server.url, {'exec': dict(EXEC, command=empty)})
    with pytest.raises(k8s.ClusterError, match='missing token or clientCertificateData'):
        k8s.Api(module(kubeconfig=path), request_timeout=5)


def test_a_plugin_that_hangs_is_stopped_at_the_request_timeout(server, tmp_path):
    pid_file = tmp_path / 'pid'
    command = plugin(tmp_path / 'hang', 'open(%r, "w").write(str(os.getpid()))\ntime.sleep(60)' % str(pid_file))
    path = write_kubeconfig(tmp_path / 'kc', server.url, {'exec': dict(EXEC, command=command)})
    started = time.monotonic()
    with pytest.raises(k8s.ClusterError, match='did not answer within 1 seconds'):
        k8s.Api(module(kubeconfig=path), request_timeout=1)
    assert time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    with pytest.raises(OSError):  # killed and reaped
        os.kill(pid, 0)


# Refusals and unreadable files


def test_a_refused_token_names_the_kubeconfig_context_and_user(tmp_path):
    refusing = Server({'/api/v1/pods': (401, {'kind': 'Status', 'code': 401, 'message': 'Unauthorized'})})
    try:
        path = write_kubeconfig(tmp_path / 'kc', refusing.url, {'token': 'expired'}, context='prod',
                                user_name='ci')
        with pytest.raises(k8s.ClusterError) as caught:
            k8s.Api(module(kubeconfig=path), request_timeout=5).get('/api/v1/pods')
    finally:
        refusing.close()
    assert caught.value.status == 401
    assert str(caught.value) == (
        'GET /api/v1/pods answered 401: Unauthorized. Fix: the credentials of the kubeconfig %s (context prod, '
        'user ci) were refused (expired or revoked): renew them (a new token, certificate or login) or choose '
        'another ollama_context' % path)


def test_a_refusal_of_the_first_discovery_request_is_an_api_error(tmp_path):
    refusing = Server({'/version': (401, {'kind': 'Status', 'code': 401, 'message': 'Unauthorized'})})
    try:
        path = write_kubeconfig(tmp_path / 'kc', refusing.url)
        with pytest.raises(k8s.ClusterError, match=r'GET /version answered 401: .*were refused') as caught:
            k8s.Api(module(kubeconfig=path), request_timeout=5)
    finally:
        refusing.close()
    assert caught.value.status == 401


@pytest.mark.parametrize('content, message', [
    (None, 'cannot read the kubeconfig {path}: Is a directory. Fix: make it readable'),
    ('clusters: [', 'the kubeconfig {path} is not valid YAML'),
    ('', 'cannot load the cluster credentials from the kubeconfig {path}: Invalid kube-config'),
    ('{"apiVersion": "v1", "kind": "Config", "contexts": []}', 'cannot load the cluster credentials from the '
     'kubeconfig {path}: Invalid kube-config file. Expected key current-context'),
], ids=['a-directory', 'broken-yaml', 'empty', 'no-context'])
def test_an_unreadable_kubeconfig_names_the_file(tmp_path, content, message):
    path = str(tmp_path / 'kc')
    if content is None:
        os.mkdir(path)  # unreadable as a file even by root, as a file without read permission is to its user
    else:
        with open(path, 'w') as handle:
            handle.write(content)
    with pytest.raises(k8s.ClusterError) as caught:
        k8s.Api(module(kubeconfig=path), request_timeout=5)
    assert message.format(path=path) in str(caught.value)
    assert 'Fix: ' in str(caught.value)


def test_a_missing_context_and_a_missing_ca_file(server, tmp_path):
    path = write_kubeconfig(tmp_path / 'kc', server.url)
    with pytest.raises(k8s.ClusterError, match="context nope|Expected object with name nope"):
        k8s.Api(module(kubeconfig=path, context='nope'), request_timeout=5)
    broken = write_kubeconfig(tmp_path / 'broken' / 'config', 'https://127.0.0.1:1',
                              cluster_extra={'certificate-authority': 'nope.crt'})
    with pytest.raises(k8s.ClusterError) as caught:
        k8s.Api(module(kubeconfig=broken), request_timeout=5)
    assert 'cannot load the TLS files of the kubeconfig (%s)' % (tmp_path / 'broken' / 'nope.crt') in str(caught.value)


# Connections: bounds, retries, threads, streams


def test_an_unreachable_server_is_named_with_the_fix(tmp_path):
    dead = socket.socket()
    dead.bind(('127.0.0.1', 0))
    port = dead.getsockname()[1]
    dead.close()
    path = write_kubeconfig(tmp_path / 'kc', 'http://127.0.0.1:%d' % port)
    with pytest.raises(k8s.ClusterError, match='cannot reach the Kubernetes API server: .*refused.*Fix: check '
                                               'that the server in the kubeconfig'):
        k8s.Api(module(kubeconfig=path), request_timeout=5)


def test_a_silent_server_is_given_up_within_the_request_timeout_and_not_asked_twice(tmp_path):
    silent = Server({'/api/v1/slow': lambda handler: time.sleep(4)})
    try:
        path = write_kubeconfig(tmp_path / 'kc', silent.url)
        api = k8s.Api(module(kubeconfig=path), request_timeout=1)
        started = time.monotonic()
        with pytest.raises(k8s.ClusterError, match='timed out'):
            api.request('POST', '/api/v1/slow', body={'a': 1})
        with pytest.raises(k8s.ClusterError, match='timed out'):
            api.get('/api/v1/slow')
        assert time.monotonic() - started < 4
        assert [r[:2] for r in silent.api_requests()] == [('POST', '/api/v1/slow'), ('GET', '/api/v1/slow')]
    finally:
        silent.close()


def test_a_server_that_never_answers_the_first_discovery_is_bounded(tmp_path):
    listener = socket.socket()  # accepts (the backlog does) and never answers
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    try:
        path = write_kubeconfig(tmp_path / 'kc', 'http://127.0.0.1:%d' % listener.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(k8s.ClusterError, match=r'no answer from the Kubernetes API server http://127.0.0.1:\d+ '
                                                   'within 1 seconds, for the kubeconfig .*Fix: check that the server'):
            k8s.Api(module(kubeconfig=path), request_timeout=1)
        assert time.monotonic() - started < 1 + cluster_client.LOAD_MARGIN + 1
    finally:
        listener.close()


def test_one_api_serves_several_threads_over_one_pool(tmp_path):
    gate = threading.Barrier(4, timeout=10)

    def slow(handler):
        gate.wait()  # four requests at once, or the barrier breaks
        data = b'{"ok": true}'
        handler.send_response(200)
        handler.send_header('Content-Length', str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    busy = Server({'/api/v1/together': slow})
    try:
        api = k8s.Api(module(kubeconfig=write_kubeconfig(tmp_path / 'kc', busy.url)), request_timeout=10)
        results = []
        threads = [threading.Thread(target=lambda: results.append(api.get('/api/v1/together'))) for _thread in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert results == [{'ok': True}] * 4
        pool = api.transport.api_client.rest_client.pool_manager
        assert len(pool.pools) == 1
    finally:
        busy.close()


def test_a_stream_is_read_line_by_line(tmp_path):
    def stream(handler):
        handler.send_response(200)
        handler.send_header('Transfer-Encoding', 'chunked')
        handler.end_headers()
        for line in (b'{"status": "pulling"}\n', b'\n', b'{"status": "success"}\n'):
            handler.wfile.write(b'%x\r\n%s\r\n' % (len(line), line))
        handler.wfile.write(b'0\r\n\r\n')
    streaming = Server({'/api/pull': stream})
    try:
        api = k8s.Api(module(kubeconfig=write_kubeconfig(tmp_path / 'kc', streaming.url)), request_timeout=5)
        assert list(api.stream_lines('POST', '/api/pull', body={})) == [{'status': 'pulling'}, {'status': 'success'}]
        assert api.version()['gitVersion'] == 'v1.34.0'
    finally:
        streaming.close()


# Proxies


def test_the_kubeconfig_proxy_url_is_used_and_no_proxy_bypasses_it(server, tmp_path, monkeypatch):
    proxy = Proxy()
    try:
        path = write_kubeconfig(tmp_path / 'kc', server.url, cluster_extra={'proxy-url': proxy.url})
        k8s.Api(module(kubeconfig=path), request_timeout=5).get('/api/v1/pods')
        assert 'GET %s/version HTTP/1.1' % server.url in proxy.lines  # the client's first discovery request
        assert server.api_requests()[-1][1] == server.url + '/api/v1/pods'
        proxy.lines[:] = []
        monkeypatch.setenv('K8S_AUTH_NO_PROXY', '127.0.0.1')
        k8s.Api(module(kubeconfig=path), request_timeout=5).get('/api/v1/pods')
        assert proxy.lines == []
    finally:
        proxy.close()


def test_an_https_proxy_signed_by_the_cluster_ca_carries_the_tls_requests(tmp_path):
    ca, cert, key = tls_files(tmp_path, name='api')
    _ca, proxy_cert, proxy_key = tls_files(tmp_path, ca=ca, name='proxy')
    secure = Server(tls=(cert, key))
    proxy = Proxy(tls=(proxy_cert, proxy_key))
    try:
        path = write_kubeconfig(tmp_path / 'kc', secure.url, cluster_extra={
            'proxy-url': proxy.url, 'certificate-authority-data': base64.b64encode(ca_pem(ca)).decode()})
        assert k8s.Api(module(kubeconfig=path), request_timeout=5).version()['gitVersion'] == 'v1.34.0'
        assert proxy.lines and all(line.startswith('CONNECT 127.0.0.1:%d ' % secure.port) for line in proxy.lines)
    finally:
        proxy.close()
        secure.close()


def test_an_https_proxy_with_another_ca_is_a_clear_error_within_the_timeout(tmp_path):
    ca, cert, key = tls_files(tmp_path, name='api')
    _other, proxy_cert, proxy_key = tls_files(tmp_path, name='proxy')  # its own CA
    secure = Server(tls=(cert, key))
    proxy = Proxy(tls=(proxy_cert, proxy_key))
    try:
        path = write_kubeconfig(tmp_path / 'kc', secure.url, cluster_extra={
            'proxy-url': proxy.url, 'certificate-authority-data': base64.b64encode(ca_pem(ca)).decode()})
        started = time.monotonic()
        with pytest.raises(k8s.ClusterError) as caught:
            k8s.Api(module(kubeconfig=path), request_timeout=3).version()
        assert time.monotonic() - started < 6
    finally:
        proxy.close()
        secure.close()
    text = str(caught.value)
    assert 'through the proxy %s' % proxy.url in text and 'CERTIFICATE_VERIFY_FAILED' in text
    assert "Fix: the https proxy's certificate is checked against the cluster's CA" in text


# In the controller: temporary files


def test_the_clients_certificate_files_go_when_the_task_ends(tmp_path):
    ca, cert, key = tls_files(tmp_path, name='api')
    secure = Server(tls=(cert, key))
    with open(cert, 'rb') as handle:
        cert_data = base64.b64encode(handle.read()).decode()
    with open(key, 'rb') as handle:
        key_data = base64.b64encode(handle.read()).decode()
    path = write_kubeconfig(tmp_path / 'kc', secure.url, {'client-certificate-data': cert_data,
                                                          'client-key-data': key_data},
                            cluster_extra={'certificate-authority-data': base64.b64encode(ca_pem(ca)).decode()})
    seen = {}

    def main():
        mod = k8s.new_module({})
        before = set(kube_config._temp_files.values())
        api = k8s.Api(mod, request_timeout=5)
        seen['version'] = api.version()['gitVersion']
        seen['files'] = set(kube_config._temp_files.values()) - before
        mod.exit_json()
    try:
        for _run in (1, 2):  # the second run gets fresh files, not a cached client naming removed ones
            assert not inprocess.run_in_controller(main, {'kubeconfig': path}, False, False).get('failed')
            assert seen['version'] == 'v1.34.0'
            assert len(seen['files']) == 3 and not any(os.path.exists(f) for f in seen['files'])
    finally:
        secure.close()
