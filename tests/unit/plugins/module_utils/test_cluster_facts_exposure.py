# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The facts exposure and the policies are decided from: IngressClasses, the Gateway API, the control plane's
addresses, where the ingress controllers run, the namespace's labels. Raw API objects in, facts out; read_cluster
against a fake API (plain dicts by path, as the API answers; a 403 or 404 where the user or cluster lacks one)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import (
    build_facts,
    control_plane_facts,
    gateway_facts,
    read_cluster,
    read_gateway_api,
)

VERSION = {'gitVersion': 'v1.34.4+k3s1', 'major': '1', 'minor': '34'}


def ingress_class(name, controller, default=False):
    annotations = {'ingressclass.kubernetes.io/is-default-class': 'true'} if default else {}
    return {'metadata': {'name': name, 'annotations': annotations}, 'spec': {'controller': controller}}


def server_node(name='k3s-server-0', address='10.250.0.1', cidrs=None):
    return {'metadata': {'name': name, 'labels': {'node-role.kubernetes.io/control-plane': 'true'}},
            'spec': {'podCIDRs': cidrs or []},
            'status': {'addresses': [{'type': 'InternalIP', 'address': address},
                                     {'type': 'Hostname', 'address': name}]}}


def test_the_default_ingress_class_and_a_warning_for_two():
    facts = build_facts(VERSION, [], [], [], [], [], [], ingress_classes=[
        ingress_class('traefik', 'traefik.io/ingress-controller', default=True),
        ingress_class('nginx', 'k8s.io/ingress-nginx')])
    assert facts['default_ingress_class'] == 'traefik'
    assert [c['name'] for c in facts['ingress_classes']] == ['traefik', 'nginx']
    two = build_facts(VERSION, [], [], [], [], [], [], ingress_classes=[
        ingress_class('a', 'x', default=True), ingress_class('b', 'y', default=True)])
    assert two['default_ingress_class'] is None and any('several IngressClasses' in w for w in two['warnings'])
    unread = build_facts(VERSION, [], [], [], [], [], [])
    assert unread['ingress_classes'] is None and unread['default_ingress_class'] is None


def test_control_plane_nodes_with_their_addresses_even_when_only_gpu_nodes_are_kept():
    gpu = {'metadata': {'name': 'g', 'labels': {'nvidia.com/gpu.present': 'true'}},
           'status': {'allocatable': {'nvidia.com/gpu': '1'}, 'capacity': {'nvidia.com/gpu': '1'}}}
    facts = build_facts(VERSION, [server_node(cidrs=['10.42.0.0/24']), gpu], [], [], [], [], [], label_keys=[])
    assert [n['name'] for n in facts['nodes']] == ['g']
    assert facts['control_plane'] == [{'name': 'k3s-server-0', 'internal_ips': ['10.250.0.1'],
                                       'pod_cidrs': ['10.42.0.0/24']}]
    assert control_plane_facts(gpu) is None
    legacy = server_node()
    legacy['metadata']['labels'] = {'node-role.kubernetes.io/master': 'true'}
    legacy['spec'] = {'podCIDR': '10.42.1.0/24'}
    assert control_plane_facts(legacy)['pod_cidrs'] == ['10.42.1.0/24']


def test_where_known_controllers_run():
    pods = [{'metadata': {'name': 'traefik-abc', 'namespace': 'kube-system',
                          'labels': {'app.kubernetes.io/name': 'traefik'}}, 'spec': {}, 'status': {'phase': 'Running'}},
            {'metadata': {'name': 'x', 'namespace': 'ingress-nginx', 'labels': {'app.kubernetes.io/name': 'ingress-nginx'}},
             'spec': {}, 'status': {'phase': 'Running'}},
            {'metadata': {'name': 'old', 'namespace': 'gone', 'labels': {'app': 'traefik'}}, 'spec': {},
             'status': {'phase': 'Succeeded'}},
            {'metadata': {'name': 'web', 'namespace': 'apps', 'labels': {'app': 'web'}}, 'spec': {},
             'status': {'phase': 'Running'}}]
    facts = build_facts(VERSION, [], pods, [], [], [], [])
    assert facts['controller_pods'] == [{'name': 'ingress-nginx', 'namespace': 'ingress-nginx'},
                                        {'name': 'traefik', 'namespace': 'kube-system'}]


def test_gateway_listeners_and_whom_they_admit():
    gateway = {'metadata': {'name': 'traefik-gateway', 'namespace': 'kube-system'},
               'spec': {'gatewayClassName': 'traefik', 'listeners': [
                   {'name': 'web', 'port': 8000, 'protocol': 'HTTP'},
                   {'name': 'all', 'port': 8001, 'protocol': 'HTTP', 'allowedRoutes': {'namespaces': {'from': 'All'}}},
                   {'name': 'sel', 'port': 8002, 'protocol': 'HTTP', 'allowedRoutes': {'namespaces': {
                       'from': 'Selector', 'selector': {'matchLabels': {'team': 'ml'}}}}}]}}
    facts = gateway_facts(gateway)
    assert facts['class'] == 'traefik'
    admitted = [(item['name'], item['from']) for item in facts['listeners']]
    assert admitted == [('web', 'Same'), ('all', 'All'), ('sel', 'Selector')]
    assert facts['listeners'][2]['selector'] == {'matchLabels': {'team': 'ml'}}


class FakeError(Exception):
    def __init__(self, status):
        super(FakeError, self).__init__('answered %d' % status)
        self.status = status


class FakeApi(object):
    """Answers by path; a path mapped to an int answers that HTTP status as module_utils.k8s.Api raises it."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def get(self, path, **query):
        self.asked.append(path)
        answer = self.answers.get(path, 404)
        if isinstance(answer, int):
            raise FakeError(answer)
        return answer

    def get_or_none(self, path, **query):
        try:
            return self.get(path)
        except FakeError as exc:
            if exc.status == 404:
                return None
            raise

    def list_all(self, path, **query):
        return list(self.iter_all(path))

    def iter_all(self, path, **query):
        return iter(self.get(path).get('items') or [])

    def version(self):
        return VERSION


GATEWAY_DISCOVERY = {
    '/apis/gateway.networking.k8s.io': {'versions': [{'version': 'v1'}, {'version': 'v1beta1'}]},
    '/apis/gateway.networking.k8s.io/v1': {'resources': [
        {'name': 'gateways'}, {'name': 'gateways/status'}, {'name': 'httproutes'}, {'name': 'gatewayclasses'}]},
}


def test_the_gateway_api_is_read_only_where_it_is_served():
    info, classes, gateways = read_gateway_api(FakeApi({}))
    assert info['installed'] is False and classes == [] and gateways == []
    api = FakeApi(dict(GATEWAY_DISCOVERY, **{
        '/apis/gateway.networking.k8s.io/v1/gatewayclasses': {'items': [
            {'metadata': {'name': 'traefik'}, 'spec': {'controllerName': 'traefik.io/gateway-controller'}}]},
        '/apis/gateway.networking.k8s.io/v1/gateways': 403}))
    info, classes, gateways = read_gateway_api(api)
    assert info == {'installed': True, 'versions': ['v1', 'v1beta1'],
                    'resources': ['gatewayclasses', 'gateways', 'httproutes']}
    assert classes[0]['metadata']['name'] == 'traefik' and gateways is None


@pytest.mark.parametrize('status', [403, 404])
def test_read_cluster_keeps_going_without_ingress_classes(status):
    api = FakeApi({
        '/api/v1/namespaces/ollama': {'metadata': {'name': 'ollama', 'labels': {'team': 'ml'}}},
        '/apis/networking.k8s.io/v1/ingressclasses': status,
    })
    for path in ('/api/v1/nodes', '/api/v1/pods', '/apis/storage.k8s.io/v1/storageclasses',
                 '/apis/storage.k8s.io/v1/csidrivers', '/apis/node.k8s.io/v1/runtimeclasses',
                 '/apis/apps/v1/daemonsets', '/apis/apps/v1/namespaces/ollama/deployments',
                 '/apis/apps/v1/namespaces/ollama/statefulsets', '/api/v1/namespaces/ollama/persistentvolumeclaims',
                 '/api/v1/namespaces/ollama/services', '/apis/policy/v1/namespaces/ollama/poddisruptionbudgets'):
        api.answers[path] = {'items': []}
    facts = read_cluster(api, 'ollama')
    assert facts['ingress_classes'] is None
    assert facts['existing']['namespace_exists'] is True
    assert facts['existing']['namespace_labels'] == {'team': 'ml'}
    assert facts['gateway_api']['installed'] is False


def test_other_errors_are_not_swallowed():
    api = FakeApi({'/api/v1/namespaces/ollama': 500})
    with pytest.raises(FakeError):
        read_cluster(api, 'ollama')
