# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster credentials resolved without the kubernetes client (kubeconfig.py): module options before K8S_AUTH_*,
KUBECONFIG's files merged as kubectl merges them, paths relative to their own file, every kind of user, the exec
credential plugin, in-cluster, NO_PROXY; and the transport's keep-alive reuse, retry and proxy tunnel against a
scripted local server. Every environment is a plain dict, so nothing here reads the machine's own settings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import http.client as http_client
import json
import os
import socket
import ssl
import sys
import tempfile
import threading
import time

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import k8s, kubeconfig

PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'


def b64(text):
    return base64.b64encode(text.encode('utf-8')).decode('ascii')


def write_config(path, clusters=(), users=(), contexts=(), current=None):
    """A kubeconfig at path; clusters/users/contexts are (name, body) pairs. JSON is YAML."""
    config = {'apiVersion': 'v1', 'kind': 'Config',
              'clusters': [{'name': n, 'cluster': b} for n, b in clusters],
              'users': [{'name': n, 'user': b} for n, b in users],
              'contexts': [{'name': n, 'context': b} for n, b in contexts]}
    if current is not None:
        config['current-context'] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return str(path)


def simple_config(path, user=None, server='https://api.example:6443', cluster_extra=None):
    cluster = dict({'server': server}, **(cluster_extra or {}))
    return write_config(path, clusters=[('c', cluster)], users=[('u', user or {'token': 'tok'})],
                        contexts=[('ctx', {'cluster': 'c', 'user': 'u'})], current='ctx')


# Options before K8S_AUTH_* variables


def test_a_module_option_beats_its_environment_variable(tmp_path):
    mine = simple_config(tmp_path / 'mine', server='https://mine:6443')
    theirs = simple_config(tmp_path / 'theirs', server='https://theirs:6443')
    environ = {'K8S_AUTH_KUBECONFIG': theirs}
    assert kubeconfig.load_endpoint({'kubeconfig': mine}, environ).server == 'https://mine:6443'
    assert kubeconfig.load_endpoint({'kubeconfig': None}, environ).server == 'https://theirs:6443'
    assert kubeconfig.auth_options({'validate_certs': False}, {'K8S_AUTH_VALIDATE_CERTS': 'true'}) == {
        'validate_certs': False}


def test_k8s_auth_variables_and_their_aliases():
    assert kubeconfig.auth_options({}, {'K8S_AUTH_VERIFY_SSL': 'no'}) == {'validate_certs': False}
    # The option's own name comes before its alias, as in kubernetes.core.
    assert kubeconfig.auth_options({}, {'K8S_AUTH_VALIDATE_CERTS': 'yes', 'K8S_AUTH_VERIFY_SSL': 'no'}) == {
        'validate_certs': True}
    assert kubeconfig.auth_options({}, {'K8S_AUTH_SSL_CA_CERT': '/ca', 'K8S_AUTH_CERT_FILE': '/c',
                                        'K8S_AUTH_KEY_FILE': '/k'}) == {
        'ca_cert': '/ca', 'client_cert': '/c', 'client_key': '/k'}
    # An empty variable is not set.
    assert kubeconfig.auth_options({}, {'K8S_AUTH_HOST': '', 'K8S_AUTH_CONTEXT': 'x'}) == {'context': 'x'}


@pytest.mark.parametrize('text, expected', [
    ('false', False), ('False', False), ('0', False), ('no', False), (' NO ', False), ('off', False),
    ('true', True), ('1', True), ('yes', True), ('anything', True),
])
def test_boolean_variables(text, expected):
    assert kubeconfig.auth_options({}, {'K8S_AUTH_VALIDATE_CERTS': text})['validate_certs'] is expected


def test_impersonation_groups_split_on_commas_and_become_repeated_headers(tmp_path):
    environ = {'K8S_AUTH_KUBECONFIG': simple_config(tmp_path / 'k'), 'K8S_AUTH_IMPERSONATE_USER': 'alice',
               'K8S_AUTH_IMPERSONATE_GROUPS': 'dev,,ops,'}
    assert kubeconfig.auth_options({}, environ)['impersonate_groups'] == ['dev', 'ops']
    endpoint = kubeconfig.load_endpoint({}, environ)
    assert endpoint.headers['Impersonate-User'] == 'alice'
    assert endpoint.headers['Impersonate-Group'] == ['dev', 'ops']
    # A module option replaces the variable entirely.
    endpoint = kubeconfig.load_endpoint({'impersonate_groups': ['admins']}, environ)
    assert endpoint.headers['Impersonate-Group'] == ['admins']


def test_host_with_a_token_needs_no_kubeconfig_at_all():
    environ = {'KUBECONFIG': '/nonexistent/kubeconfig', 'K8S_AUTH_HOST': 'https://h:6443/',
               'K8S_AUTH_API_KEY': 'secret\n', 'K8S_AUTH_VERIFY_SSL': 'false'}
    endpoint = kubeconfig.load_endpoint({}, environ)
    assert endpoint.server == 'https://h:6443' and endpoint.headers == {'Authorization': 'Bearer secret'}
    assert endpoint.verify is False
    basic = kubeconfig.load_endpoint({'host': 'https://h', 'username': 'u', 'password': 'p'}, {})
    assert basic.headers['Authorization'] == 'Basic ' + b64('u:p')


def test_options_override_what_the_kubeconfig_says(tmp_path):
    path = simple_config(tmp_path / 'k', user={'token': 'from-file'},
                         cluster_extra={'certificate-authority-data': b64(PEM)})
    endpoint = kubeconfig.load_endpoint({'kubeconfig': path, 'host': 'https://other:1', 'api_key': 'opt',
                                         'ca_cert': '/etc/ca.pem', 'proxy': 'http://p:3128',
                                         'no_proxy': 'x', 'proxy_headers': {'proxy_basic_auth': 'a:b'}}, {})
    assert endpoint.server == 'https://other:1' and endpoint.headers['Authorization'] == 'Bearer opt'
    assert endpoint.ca_file == '/etc/ca.pem' and endpoint.ca_data is None
    assert endpoint.proxy == 'http://p:3128' and endpoint.no_proxy == 'x'
    assert endpoint.proxy_headers == {'Proxy-Authorization': 'Basic ' + b64('a:b')}


def test_the_context_option_and_variable_choose_the_context(tmp_path):
    path = write_config(tmp_path / 'k', clusters=[('a', {'server': 'https://a'}), ('b', {'server': 'https://b'})],
                        contexts=[('ca', {'cluster': 'a'}), ('cb', {'cluster': 'b'})], current='ca')
    assert kubeconfig.load_endpoint({}, {'KUBECONFIG': path}).server == 'https://a'
    assert kubeconfig.load_endpoint({}, {'KUBECONFIG': path, 'K8S_AUTH_CONTEXT': 'cb'}).server == 'https://b'
    assert kubeconfig.load_endpoint({'context': 'ca'}, {'KUBECONFIG': path, 'K8S_AUTH_CONTEXT': 'cb'}).server \
        == 'https://a'


# KUBECONFIG: several files merged as kubectl merges them


def test_the_first_file_naming_an_entry_wins_and_paths_are_relative_to_their_own_file(tmp_path, monkeypatch):
    first = write_config(tmp_path / 'one' / 'config',
                         clusters=[('shared', {'server': 'https://first', 'certificate-authority': 'ca.crt'})],
                         users=[('u', {'token': 'first-token'})],
                         contexts=[('a', {'cluster': 'shared', 'user': 'u'})])  # no current-context here
    second = write_config(tmp_path / 'two' / 'config',
                          clusters=[('shared', {'server': 'https://second'})],
                          users=[('u', {'token': 'second-token'}),
                                 ('v', {'client-certificate': 'certs/v.crt', 'client-key': '/abs/v.key'})],
                          contexts=[('a', {'cluster': 'other'}), ('b', {'cluster': 'shared', 'user': 'v'})],
                          current='b')
    third = write_config(tmp_path / 'three' / 'config', contexts=[('c', {'cluster': 'shared'})], current='c')
    monkeypatch.chdir(tmp_path)
    environ = {'KUBECONFIG': os.pathsep.join([str(tmp_path / 'missing'), first, second, third])}
    config, _origin = kubeconfig.merged_kubeconfig(None, environ)
    assert config['current-context'] == 'b'  # the first file that sets one
    assert [c['name'] for c in config['contexts']] == ['a', 'b', 'c']
    endpoint = kubeconfig.load_endpoint({}, environ)
    assert endpoint.server == 'https://first'  # cluster "shared" of the first file
    assert endpoint.ca_file == str(tmp_path / 'one' / 'ca.crt')
    assert endpoint.cert_file == str(tmp_path / 'two' / 'certs' / 'v.crt') and endpoint.key_file == '/abs/v.key'
    # Context "a" of the first file, not of the second; user "u" of the first file.
    assert kubeconfig.load_endpoint({'context': 'a'}, environ).headers['Authorization'] == 'Bearer first-token'


def test_the_kubeconfig_option_may_also_be_a_list_of_files(tmp_path):
    one = simple_config(tmp_path / 'one', server='https://one')
    two = write_config(tmp_path / 'two', clusters=[('x', {'server': 'https://two'})],
                       contexts=[('two', {'cluster': 'x'})])
    endpoint = kubeconfig.load_endpoint({'kubeconfig': os.pathsep.join([one, two]), 'context': 'two'},
                                        {'KUBECONFIG': '/nonexistent'})
    assert endpoint.server == 'https://two'


def test_a_kubeconfig_given_as_a_mapping(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {'clusters': [{'name': 'c', 'cluster': {'server': 'https://d', 'certificate-authority': 'ca'}}],
              'contexts': [{'name': 'x', 'context': {'cluster': 'c'}}], 'current-context': 'x'}
    endpoint = kubeconfig.load_endpoint({'kubeconfig': config}, {})
    assert endpoint.server == 'https://d' and endpoint.ca_file == str(tmp_path / 'ca')


@pytest.mark.parametrize('config, context, message', [
    ({'contexts': [{'name': 'ctx', 'context': {'cluster': 'c'}}]}, 'nope', "no context named 'nope'"),
    ({'contexts': [{'name': 'ctx', 'context': {'cluster': 'c'}}]}, 'ctx', "no cluster named 'c'"),
    ({'clusters': [{'name': 'c', 'cluster': {'server': 'https://s'}}],
      'contexts': [{'name': 'ctx', 'context': {'cluster': 'c', 'user': 'who'}}]}, 'ctx', "no user named 'who'"),
    ({'clusters': [{'name': 'c', 'cluster': {}}],
      'contexts': [{'name': 'ctx', 'context': {'cluster': 'c'}}]}, 'ctx',
     "the cluster 'c' of context 'ctx' has no server"),
    ({'contexts': [{'name': 'ctx', 'context': {'cluster': 'c'}}]}, None, 'sets no current-context'),
])
def test_clear_errors_for_what_the_kubeconfig_lacks(tmp_path, config, context, message):
    path = tmp_path / 'k'
    path.write_text(json.dumps(config))
    with pytest.raises(kubeconfig.ConfigError, match=message):
        kubeconfig.load_endpoint({'kubeconfig': str(path), 'context': context}, {})


def test_no_kubeconfig_anywhere_names_the_paths_tried(tmp_path):
    with pytest.raises(kubeconfig.ConfigError) as error:
        kubeconfig.load_endpoint({}, {'KUBECONFIG': os.pathsep.join([str(tmp_path / 'a'), str(tmp_path / 'b')])})
    assert str(error.value) == 'no kubeconfig at %s, %s' % (tmp_path / 'a', tmp_path / 'b')
    (tmp_path / 'list').write_text('- not a mapping\n')
    with pytest.raises(kubeconfig.ConfigError, match='is not a kubeconfig'):
        kubeconfig.load_endpoint({'kubeconfig': str(tmp_path / 'list')}, {})


def test_api_accepts_a_list_of_kubeconfigs_where_one_is_missing_but_not_where_all_are(tmp_path):
    path = simple_config(tmp_path / 'k', server='https://127.0.0.1:1')
    api = k8s.Api(FakeModule(kubeconfig=os.pathsep.join([str(tmp_path / 'missing'), path])))
    assert api.host == 'https://127.0.0.1:1'
    with pytest.raises(k8s.ClusterError, match='does not exist'):
        k8s.Api(FakeModule(kubeconfig=os.pathsep.join([str(tmp_path / 'missing'), str(tmp_path / 'gone')])))


# Users and clusters


def test_data_fields_are_decoded_and_beat_their_file_fields(tmp_path):
    path = simple_config(tmp_path / 'k', user={'client-certificate-data': b64('CERT'), 'client-certificate': 'x',
                                               'client-key-data': b64('KEY')},
                         cluster_extra={'certificate-authority-data': b64(PEM), 'certificate-authority': 'ca'})
    endpoint = kubeconfig.load_endpoint({'kubeconfig': path}, {})
    assert (endpoint.ca_data, endpoint.ca_file) == (PEM, None)
    assert (endpoint.cert_data, endpoint.cert_file, endpoint.key_data) == ('CERT', None, 'KEY')
    bad = simple_config(tmp_path / 'bad', cluster_extra={'certificate-authority-data': 'not*base64!'})
    with pytest.raises(kubeconfig.ConfigError, match='not base64'):
        kubeconfig.load_endpoint({'kubeconfig': bad}, {})


def test_cluster_tls_and_proxy_settings(tmp_path):
    path = simple_config(tmp_path / 'k', cluster_extra={'insecure-skip-tls-verify': True,
                                                        'tls-server-name': 'api.internal',
                                                        'proxy-url': 'http://proxy:3128'})
    endpoint = kubeconfig.load_endpoint({'kubeconfig': path}, {})
    assert endpoint.verify is False and endpoint.tls_server_name == 'api.internal'
    assert endpoint.proxy == 'http://proxy:3128'
    assert kubeconfig.load_endpoint({'kubeconfig': simple_config(tmp_path / 'v')}, {}).verify is True


def test_token_token_file_and_basic_auth(tmp_path):
    (tmp_path / 'secrets').mkdir()
    (tmp_path / 'secrets' / 'token').write_text('file-token\n')
    token = kubeconfig.load_endpoint({'kubeconfig': simple_config(tmp_path / 'a', user={'token': ' t0k \n'})}, {})
    assert token.headers == {'Authorization': 'Bearer t0k'}
    from_file = kubeconfig.load_endpoint({'kubeconfig': simple_config(tmp_path / 'b', user={
        'tokenFile': 'secrets/token'})}, {})
    assert from_file.headers == {'Authorization': 'Bearer file-token'}
    both = kubeconfig.load_endpoint({'kubeconfig': simple_config(tmp_path / 'c', user={
        'token': 'inline', 'tokenFile': 'secrets/token'})}, {})
    assert both.headers == {'Authorization': 'Bearer inline'}  # as the kubernetes client reads it
    basic = kubeconfig.load_endpoint({'kubeconfig': simple_config(tmp_path / 'd', user={
        'username': 'admin', 'password': 'pa:ss'})}, {})
    assert basic.headers == {'Authorization': 'Basic ' + b64('admin:pa:ss')}


def test_kubeconfig_impersonation(tmp_path):
    path = simple_config(tmp_path / 'k', user={'token': 't', 'as': 'bob', 'as-uid': '42',
                                               'as-groups': ['g1', 'g2'],
                                               'as-user-extra': {'scopes/x': ['a', 'b']}})
    headers = kubeconfig.load_endpoint({'kubeconfig': path}, {}).headers
    assert headers['Impersonate-User'] == 'bob' and headers['Impersonate-Uid'] == '42'
    assert headers['Impersonate-Group'] == ['g1', 'g2']
    assert headers['Impersonate-Extra-scopes%2Fx'] == ['a', 'b']


def test_an_auth_provider_is_left_to_the_kubernetes_client(tmp_path):
    path = simple_config(tmp_path / 'k', user={'auth-provider': {'name': 'oidc', 'config': {'id-token': 'x'}}})
    with pytest.raises(kubeconfig.Unsupported, match='auth-provider oidc'):
        kubeconfig.load_endpoint({'kubeconfig': path}, {})


class FakeModule(object):
    def __init__(self, **params):
        self.params = params


def test_api_falls_back_to_the_kubernetes_client_for_an_auth_provider(tmp_path, monkeypatch):
    made = []

    class FakeClientTransport(object):
        host = 'https://from-client'

        def __init__(self, module):
            made.append(module)

    monkeypatch.setattr(k8s, 'ClientTransport', FakeClientTransport)
    module = FakeModule(kubeconfig=simple_config(tmp_path / 'k', user={'auth-provider': {'name': 'gcp'}}))
    api = k8s.Api(module)
    assert made == [module] and isinstance(api.transport, FakeClientTransport) and api.host == 'https://from-client'
    # A user the standard library handles does not touch the kubernetes client.
    api = k8s.Api(FakeModule(kubeconfig=simple_config(tmp_path / 'plain')))
    assert isinstance(api.transport, kubeconfig.HttpTransport) and len(made) == 1


def test_a_client_error_without_an_answer_is_a_connection_failure_not_an_empty_success():
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    class FailingClient(object):
        def call_api(self, *args, **kwargs):
            raise ApiException(status=0, reason='SSLError\ncertificate verify failed')

    transport = object.__new__(k8s.ClientTransport)
    transport.api_client, transport._errors, transport.host = FailingClient(), (ApiException, HTTPError), 'h'
    api = object.__new__(k8s.Api)
    api.transport, api.host, api.timeout = transport, 'https://h', 5
    with pytest.raises(k8s.ClusterError) as error:
        api.get('/version')
    assert 'cannot reach the Kubernetes API server at https://h' in str(error.value)
    assert 'certificate verify failed' in str(error.value)


# The exec credential plugin


def plugin(tmp_path, body, name='plugin.py'):
    path = tmp_path / name
    path.write_text('#!%s\nimport json, os, sys\n%s\n' % (sys.executable, body))
    path.chmod(0o755)
    return path


GOOD_PLUGIN = '''
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
if info["apiVersion"] != "client.authentication.k8s.io/v1" or info["spec"]["interactive"] is not False:
    sys.exit("bad KUBERNETES_EXEC_INFO: %r" % info)
if os.environ.get("PLUGIN_AUDIENCE") != "sim":
    sys.exit("the env entry PLUGIN_AUDIENCE is missing")
with open(sys.argv[1], "w") as out:
    json.dump({"info": info, "argv": sys.argv[2:], "inherited": os.environ.get("FROM_CALLER")}, out)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "exec-token"}}))
'''


def exec_user(command, *args, **extra):
    return {'exec': dict({'apiVersion': 'client.authentication.k8s.io/v1', 'command': command,
                          'args': list(args), 'env': [{'name': 'PLUGIN_AUDIENCE', 'value': 'sim'}],
                          'interactiveMode': 'Never'}, **extra)}


def test_an_exec_plugin_gives_the_token(tmp_path, monkeypatch):
    (tmp_path / 'bin').mkdir()
    plugin(tmp_path / 'bin', GOOD_PLUGIN)
    seen = tmp_path / 'seen.json'
    # A relative command with a path separator is relative to the kubeconfig's directory, not the cwd.
    path = simple_config(tmp_path / 'k', user=exec_user('./bin/plugin.py', str(seen), '--region', 'x'),
                         cluster_extra={'certificate-authority-data': b64(PEM)})
    monkeypatch.chdir('/')
    endpoint = kubeconfig.load_endpoint({'kubeconfig': path}, {'FROM_CALLER': 'yes', 'PATH': os.environ['PATH']})
    assert endpoint.headers == {'Authorization': 'Bearer exec-token'}
    record = json.loads(seen.read_text())
    assert record['argv'] == ['--region', 'x'] and record['inherited'] == 'yes'
    assert 'cluster' not in record['info']['spec']  # only with provideClusterInfo


def test_an_exec_plugin_gets_the_cluster_when_it_asks(tmp_path):
    script = plugin(tmp_path, GOOD_PLUGIN)
    seen = tmp_path / 'seen.json'
    (tmp_path / 'ca.crt').write_text(PEM)
    path = write_config(tmp_path / 'k', clusters=[('c', {
        'server': 'https://api:6443', 'certificate-authority': str(tmp_path / 'ca.crt'),
        'tls-server-name': 'api.internal',
        'extensions': [{'name': 'client.authentication.k8s.io/exec', 'extension': {'audience': 'x'}}]})],
        users=[('u', exec_user(str(script), str(seen), provideClusterInfo=True))],
        contexts=[('ctx', {'cluster': 'c', 'user': 'u'})], current='ctx')
    kubeconfig.load_endpoint({'kubeconfig': path}, {})
    cluster = json.loads(seen.read_text())['info']['spec']['cluster']
    assert cluster == {'server': 'https://api:6443', 'insecure-skip-tls-verify': False,
                       'certificate-authority-data': b64(PEM), 'tls-server-name': 'api.internal',
                       'config': {'audience': 'x'}}


def test_an_exec_plugin_may_give_a_client_certificate(tmp_path):
    script = plugin(tmp_path, 'print(json.dumps({"status": {"clientCertificateData": "C", "clientKeyData": "K"}}))')
    path = simple_config(tmp_path / 'k', user={'exec': {'command': str(script)}})
    endpoint = kubeconfig.load_endpoint({'kubeconfig': path}, {})
    assert (endpoint.cert_data, endpoint.key_data, endpoint.headers) == ('C', 'K', {})


def test_a_static_token_wins_and_the_plugin_does_not_run(tmp_path):
    marker = tmp_path / 'ran'
    script = plugin(tmp_path, 'open(%r, "w").close()\nprint(json.dumps({"status": {"token": "exec"}}))' % str(marker))
    path = simple_config(tmp_path / 'k', user={'token': 'static', 'exec': {'command': str(script)}})
    assert kubeconfig.load_endpoint({'kubeconfig': path}, {}).headers == {'Authorization': 'Bearer static'}
    assert not marker.exists()


@pytest.mark.parametrize('body, message', [
    ('sys.stderr.write("token expired, run aws sso login\\n"); sys.exit(3)',
     r'failed \(3\): token expired, run aws sso login'),
    ('print("this is not json")', 'printed no ExecCredential JSON'),
    ('print("[1, 2]")', 'printed no ExecCredential JSON'),
    ('print(json.dumps({"status": {}}))', 'returned neither a token nor a client certificate'),
])
def test_a_failing_plugin_is_a_clear_error(tmp_path, body, message):
    path = simple_config(tmp_path / 'k', user={'exec': {'command': str(plugin(tmp_path, body))}})
    with pytest.raises(kubeconfig.ConfigError, match=message):
        kubeconfig.load_endpoint({'kubeconfig': path}, {})


def test_a_missing_plugin_shows_the_install_hint(tmp_path):
    path = simple_config(tmp_path / 'k', user={'exec': {'command': str(tmp_path / 'nope'),
                                                        'installHint': 'install nope-auth'}})
    with pytest.raises(kubeconfig.ConfigError, match='did not run: .*install nope-auth'):
        kubeconfig.load_endpoint({'kubeconfig': path}, {})
    bad_env = simple_config(tmp_path / 'e', user={'exec': {'command': 'x', 'env': [{'name': 'A'}]}})
    with pytest.raises(kubeconfig.ConfigError, match='needs a name and a value'):
        kubeconfig.load_endpoint({'kubeconfig': bad_env}, {})


# In cluster


def service_account(tmp_path, monkeypatch, token='sa-token\n'):
    directory = tmp_path / 'sa'
    directory.mkdir()
    if token is not None:
        (directory / 'token').write_text(token)
    (directory / 'ca.crt').write_text(PEM)
    monkeypatch.setattr(kubeconfig, 'SERVICE_ACCOUNT_DIR', str(directory))
    return directory


def test_in_cluster_uses_the_service_account(tmp_path, monkeypatch):
    directory = service_account(tmp_path, monkeypatch)
    environ = {'KUBERNETES_SERVICE_HOST': '10.96.0.1', 'KUBERNETES_SERVICE_PORT': '443',
               'KUBECONFIG': simple_config(tmp_path / 'k', server='https://from-kubeconfig')}
    endpoint = kubeconfig.load_endpoint({}, environ)
    assert endpoint.server == 'https://10.96.0.1:443' and endpoint.headers == {'Authorization': 'Bearer sa-token'}
    assert endpoint.ca_file == str(directory / 'ca.crt')
    v6 = kubeconfig.load_endpoint({}, dict(environ, KUBERNETES_SERVICE_HOST='fd00::1'))
    assert v6.server == 'https://[fd00::1]:443'
    # A kubeconfig or context given explicitly comes before the service account, as in kubernetes.core.
    assert kubeconfig.load_endpoint({'context': 'ctx'}, environ).server == 'https://from-kubeconfig'


def test_without_a_token_file_in_cluster_gives_way_to_the_kubeconfig(tmp_path, monkeypatch):
    service_account(tmp_path, monkeypatch, token=None)
    environ = {'KUBERNETES_SERVICE_HOST': '10.96.0.1', 'KUBERNETES_SERVICE_PORT': '443',
               'KUBECONFIG': simple_config(tmp_path / 'k', server='https://from-kubeconfig')}
    assert kubeconfig.load_endpoint({}, environ).server == 'https://from-kubeconfig'


# NO_PROXY


@pytest.mark.parametrize('host, port, no_proxy, expected', [
    ('api.example.com', 443, 'example.com', True),
    ('example.com', 443, 'example.com', True),
    ('badexample.com', 443, 'example.com', False),
    ('api.example.com', 443, '.example.com', True),
    ('api.example.com', 443, '*.example.com', True),
    ('API.Example.com', 443, 'api.example.COM', True),
    ('api.example.com', 443, '*', True),
    ('api.example.com', 443, ' other.org , example.com ', True),
    ('api.example.com', 443, 'other.org', False),
    ('api.example.com', 443, '', False),
    ('api.example.com', 443, None, False),
    ('10.1.2.3', 6443, '10.1.2.3', True),
    ('10.1.2.3', 6443, '10.0.0.0/8', True),
    ('10.1.2.3', 6443, '192.168.0.0/16', False),
    ('10.1.2.3', 6443, '10.1.2.3:6443', True),
    ('10.1.2.3', 6443, '10.1.2.3:443', False),
    ('api.example.com', 6443, 'example.com:6443', True),
    ('api.example.com', 443, 'example.com:6443', False),
    ('::1', 6443, '::1', True),
    ('::1', 6443, '[::1]:6443', True),
    ('fd00::5', 6443, 'fd00::/8', True),
    ('fd00::5', 6443, '10.0.0.0/8', False),
])
def test_no_proxy_matches(host, port, no_proxy, expected):
    assert kubeconfig._no_proxy_matches(host, no_proxy, port) is expected


# The transport


def test_missing_tls_files_are_named(tmp_path):
    endpoint = kubeconfig.Endpoint('https://api:6443')
    endpoint.ca_file = str(tmp_path / 'nope' / 'ca.crt')
    with pytest.raises(kubeconfig.ConfigError, match='cannot load the TLS files of the kubeconfig .*nope/ca.crt'):
        kubeconfig.HttpTransport(endpoint)
    endpoint = kubeconfig.Endpoint('https://api:6443')
    endpoint.key_data = 'KEY'
    with pytest.raises(kubeconfig.ConfigError, match='a key without its certificate'):
        kubeconfig.HttpTransport(endpoint)


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'test')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode('ascii')
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode('ascii')
    return cert_pem, key_pem


def test_client_certificates_from_data_and_files_and_a_relative_ca(tmp_path, monkeypatch):
    private = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, 'mkdtemp', lambda **kw: private.append(real_mkdtemp(**kw)) or private[-1])
    cert_pem, key_pem = self_signed(tmp_path)
    (tmp_path / 'pki').mkdir()
    (tmp_path / 'pki' / 'ca.crt').write_text(cert_pem)
    (tmp_path / 'pki' / 'client.key').write_text(key_pem)
    path = simple_config(tmp_path / 'k', user={'client-certificate-data': b64(cert_pem),
                                               'client-key': 'pki/client.key'},
                         cluster_extra={'certificate-authority': 'pki/ca.crt'})
    endpoint = kubeconfig.load_endpoint({'kubeconfig': path}, {})
    assert endpoint.ca_file == str(tmp_path / 'pki' / 'ca.crt')
    assert endpoint.key_file == str(tmp_path / 'pki' / 'client.key')
    transport = kubeconfig.HttpTransport(endpoint)  # loads the CA, the certificate data and the key file
    assert transport._context.verify_mode == ssl.CERT_REQUIRED and transport._context.check_hostname
    assert len(transport._context.get_ca_certs()) == 1
    # The key was written to a private directory for load_cert_chain, and that is gone.
    assert len(private) == 1 and not os.path.exists(private[0])
    # A key that does not belong to the certificate is refused, naming the files.
    (tmp_path / 'pki' / 'client.key').write_text(self_signed(tmp_path)[1])
    with pytest.raises(kubeconfig.ConfigError, match='client.key'):
        kubeconfig.HttpTransport(kubeconfig.load_endpoint({'kubeconfig': path}, {}))


def test_only_an_http_proxy_is_supported():
    endpoint = kubeconfig.Endpoint('https://api:6443')
    endpoint.proxy = 'socks5://proxy:1080'
    with pytest.raises(kubeconfig.ConfigError, match='only an http:// proxy'):
        kubeconfig.HttpTransport(endpoint)
    endpoint.no_proxy = 'api'
    assert kubeconfig.HttpTransport(endpoint)._proxy is None


def read_request(conn):
    """(request line, [(header, value)], body) of one request on conn, or None at EOF."""
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b'\r\n\r\n', 1)
    lines = head.decode('latin-1').split('\r\n')
    headers = [tuple(part.strip() for part in line.split(':', 1)) for line in lines[1:]]
    length = int(dict((k.lower(), v) for k, v in headers).get('content-length', 0))
    while len(body) < length:
        body += conn.recv(65536)
    return lines[0], headers, body


def answer(conn, payload, close=False):
    body = json.dumps(payload).encode('utf-8')
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s'
                 % (len(body), b'Connection: close\r\n' if close else b'', body))


class ScriptedServer(object):
    """A local server that runs one script per accepted connection, in order, and records every request."""

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.requests = []  # (connection number, request line, headers, body)
        self.connections = 0
        self.errors = []
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(8)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            for script in self.scripts:
                conn, _addr = self.listener.accept()
                conn.settimeout(10)
                self.connections += 1
                number = self.connections
                with conn:
                    script(conn, lambda request: self.requests.append((number,) + request) or request)
        except Exception as exc:  # reported by close()
            self.errors.append(exc)

    def close(self):
        self.thread.join(15)
        assert not self.thread.is_alive() and not self.errors, self.errors
        # A connection beyond the scripts (a retry nobody expected) waits in the backlog.
        self.listener.settimeout(0.3)
        try:
            self.listener.accept()[0].close()
            self.extra_connections = 1
        except socket.timeout:
            self.extra_connections = 0
        self.listener.close()


def transport_to(port, **settings):
    endpoint = kubeconfig.Endpoint('http://127.0.0.1:%d' % port)
    for name, value in settings.items():
        setattr(endpoint, name, value)
    return kubeconfig.HttpTransport(endpoint)


def test_requests_share_one_kept_alive_connection_and_groups_repeat():
    def serve_two(conn, record):
        for n in (1, 2):
            record(read_request(conn))
            answer(conn, {'n': n})
    server = ScriptedServer(serve_two)
    transport = transport_to(server.port, headers={'Authorization': 'Bearer t', 'Impersonate-Group': ['a', 'b']})
    first = transport.call('GET', '/api/v1/pods', query={'labelSelector': 'app=x', 'limit': 5}, timeout=5)
    second = transport.call('PATCH', '/apis/x', body={'k': 'v'}, headers={'Content-Type': 'application/json'},
                            timeout=5)
    transport.close()
    server.close()
    assert (first.status, json.loads(first.data), json.loads(second.data)) == (200, {'n': 1}, {'n': 2})
    assert [(r[0], r[1]) for r in server.requests] == [
        (1, 'GET /api/v1/pods?labelSelector=app%3Dx&limit=5 HTTP/1.1'), (1, 'PATCH /apis/x HTTP/1.1')]
    headers = server.requests[0][2]
    assert [v for k, v in headers if k == 'Impersonate-Group'] == ['a', 'b']
    assert ('Authorization', 'Bearer t') in headers
    assert server.requests[1][3] == b'{"k": "v"}'


def test_a_connection_the_server_closed_while_idle_is_replaced_even_for_a_post():
    closed = threading.Event()

    def answer_then_close(conn, record):
        record(read_request(conn))
        answer(conn, {'n': 1})
        conn.shutdown(socket.SHUT_RDWR)
        closed.set()

    def answer_once(conn, record):
        record(read_request(conn))
        answer(conn, {'n': 2})
    server = ScriptedServer(answer_then_close, answer_once)
    transport = transport_to(server.port)
    assert transport.call('GET', '/a', timeout=5).status == 200
    assert closed.wait(10)
    time.sleep(0.2)  # the FIN reaches this end
    # Without a body the POST is one send that "succeeds": only the check before sending can save it.
    assert json.loads(transport.call('POST', '/b', timeout=5).data) == {'n': 2}
    transport.close()
    server.close()
    assert [(r[0], r[1].split()[0]) for r in server.requests] == [(1, 'GET'), (2, 'POST')]


def drop_the_second_request(conn, record):
    record(read_request(conn))
    answer(conn, {'n': 1})
    record(read_request(conn))  # read, then hang up without an answer


def test_a_get_the_server_dropped_on_a_reused_connection_is_tried_once_more():
    def answer_once(conn, record):
        record(read_request(conn))
        answer(conn, {'n': 2})
    server = ScriptedServer(drop_the_second_request, answer_once)
    transport = transport_to(server.port)
    transport.call('GET', '/a', timeout=5)
    assert json.loads(transport.call('GET', '/b', timeout=5).data) == {'n': 2}
    transport.close()
    server.close()
    assert [(r[0], r[1].split()[1]) for r in server.requests] == [(1, '/a'), (1, '/b'), (2, '/b')]
    assert server.extra_connections == 0


def test_a_post_the_server_may_have_run_is_not_sent_twice():
    server = ScriptedServer(drop_the_second_request)
    transport = transport_to(server.port)
    transport.call('GET', '/a', timeout=5)
    with pytest.raises(http_client.RemoteDisconnected):
        transport.call('POST', '/api/generate', body={'model': 'm'}, timeout=5)
    transport.close()
    server.close()
    assert [r[1].split()[1] for r in server.requests] == ['/a', '/api/generate']
    assert server.extra_connections == 0


def test_a_response_that_closes_the_connection_opens_a_new_one_for_the_next_request():
    def answer_and_close(conn, record):
        record(read_request(conn))
        answer(conn, {'n': 1}, close=True)
    server = ScriptedServer(answer_and_close, answer_and_close)
    transport = transport_to(server.port)
    transport.call('GET', '/a', timeout=5)
    transport.call('GET', '/b', timeout=5)
    transport.close()
    server.close()
    assert [r[0] for r in server.requests] == [1, 2]


def test_a_stream_is_read_line_by_line_and_the_next_request_uses_a_new_connection():
    def stream(conn, record):
        record(read_request(conn))
        conn.sendall(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
        for line in (b'{"status": "pulling"}\n', b'\n', b'{"status": "success"}\n'):
            conn.sendall(b'%x\r\n%s\r\n' % (len(line), line))
        conn.sendall(b'0\r\n\r\n')

    def answer_once(conn, record):
        record(read_request(conn))
        answer(conn, {'n': 2})
    server = ScriptedServer(stream, answer_once)
    transport = transport_to(server.port)
    response = transport.call('POST', '/api/pull', body={'stream': True}, timeout=5, stream=True)
    assert [json.loads(line) for line in response.lines()] == [{'status': 'pulling'}, {'status': 'success'}]
    assert transport.call('GET', '/api/tags', timeout=5).status == 200
    transport.close()
    server.close()
    assert [r[0] for r in server.requests] == [1, 2]


def test_a_silent_server_times_out_within_the_request_timeout():
    def silent(conn, record):
        record(read_request(conn))
        time.sleep(3)
    server = ScriptedServer(silent)
    transport = transport_to(server.port)
    started = time.monotonic()
    with pytest.raises(kubeconfig.socket_errors()):
        transport.call('GET', '/slow', timeout=1)
    assert time.monotonic() - started < 2.5
    transport.close()
    server.close()


def test_a_proxy_tunnel_with_credentials_from_the_proxy_url():
    def proxy(conn, record):
        connect = record(read_request(conn))
        assert connect[0].startswith('CONNECT api.internal:6443 HTTP/')
        conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
        record(read_request(conn))  # the API request through the tunnel
        answer(conn, {'kind': 'Status'})
    server = ScriptedServer(proxy)
    endpoint = kubeconfig.Endpoint('http://api.internal:6443')  # never resolved here: the proxy connects
    endpoint.proxy = 'http://us%40er:p%3Ass@127.0.0.1:' + str(server.port)
    transport = kubeconfig.HttpTransport(endpoint)
    assert json.loads(transport.call('GET', '/version', timeout=5).data) == {'kind': 'Status'}
    transport.close()
    server.close()
    (connect, tunnelled) = server.requests
    assert ('Proxy-Authorization', 'Basic ' + b64('us@er:p:ss')) in connect[2]
    assert tunnelled[1] == 'GET /version HTTP/1.1' and ('Host', 'api.internal:6443') in tunnelled[2]
