# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan's security decisions: the CVE table and the image digest, namespace ownership, the Ingress class,
the HTTPRoute and the NetworkPolicies. Pure logic on hand-built facts (the shape build_facts returns)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import exposure
from ansible_collections.llmops.ollama.plugins.module_utils import plan as plan_mod
from ansible_collections.llmops.ollama.plugins.module_utils.plan import (
    DEFAULTS, KNOWN_CVES, SECURITY_DEFAULTS, compute_plan, config_from_role_vars, known_cves)

SELECTOR = {'app.kubernetes.io/name': 'ollama', 'app.kubernetes.io/instance': 'ollama',
            'app.kubernetes.io/managed-by': 'llmops.ollama'}
TRAEFIK_GATEWAY = {'name': 'traefik-gateway', 'namespace': 'kube-system', 'class': 'traefik',
                   'listeners': [{'name': 'web', 'protocol': 'HTTP', 'port': 8000, 'hostname': None, 'from': 'All',
                                  'selector': None}]}
SIM_REGISTRY = '10.249.255.250:5000'


def gpu_node(name):
    return {'name': name, 'ready': True, 'schedulable': True, 'labels': {'nvidia.com/gpu.present': 'true'},
            'taints': [], 'zone': None, 'gpu_capacity': 1, 'gpu_allocatable': 1, 'gpu_requested': 0, 'gpu_free': 1,
            'gpu_product': 'NVIDIA-GeForce-RTX-4090', 'gpu_memory_mib': 24564, 'gpu_present_label': True}


def k3s(**overrides):
    """A k3s cluster as the simulator's k3s profile looks once Traefik and its Gateway run."""
    facts = {
        'kubernetes_version': {'major': 1, 'minor': 34, 'git_version': 'v1.34.4+k3s1'},
        'distribution': 'k3s',
        'nodes': [gpu_node('k3s-gpu-0'), gpu_node('k3s-gpu-1')],
        'gpu_nodes': ['k3s-gpu-0', 'k3s-gpu-1'],
        'storage_classes': [{'name': 'local-path', 'provisioner': 'rancher.io/local-path', 'default': True,
                             'binding_mode': 'WaitForFirstConsumer', 'allow_expansion': False, 'rwx': False}],
        'default_storage_class': 'local-path', 'csi_drivers': [], 'runtime_classes': ['nvidia'],
        'device_plugin': {'found': True, 'name': 'nvidia-device-plugin-daemonset', 'namespace': 'kube-system',
                          'desired': 2, 'ready': 2, 'healthy': True, 'source': 'device-plugin'},
        'existing': {'namespace_exists': False, 'namespace_labels': {}, 'workloads': [], 'claims': [],
                     'ollama_replicas': 0},
        'warnings': [],
        'control_plane': [{'name': 'k3s-server-0', 'internal_ips': ['10.250.0.1'], 'pod_cidrs': []}],
        'controller_pods': [{'name': 'traefik', 'namespace': 'kube-system'}],
        'ingress_classes': [{'name': 'traefik', 'controller': 'traefik.io/ingress-controller', 'default': True}],
        'default_ingress_class': 'traefik',
        'gateway_api': {'installed': True, 'versions': ['v1'], 'resources': ['gateways', 'httproutes']},
        'gateway_classes': [{'name': 'traefik', 'controller': 'traefik.io/gateway-controller'}],
        'gateways': [copy.deepcopy(TRAEFIK_GATEWAY)],
    }
    facts.update(overrides)
    return facts


def eks(**overrides):
    base = dict(distribution='eks', control_plane=[], controller_pods=[],
                kubernetes_version={'major': 1, 'minor': 33, 'git_version': 'v1.33.1-eks-1234567'},
                ingress_classes=[{'name': 'alb', 'controller': 'ingress.k8s.aws/alb', 'default': False}],
                default_ingress_class=None,
                gateway_api={'installed': False, 'versions': [], 'resources': []}, gateway_classes=[], gateways=[])
    base.update(overrides)
    return k3s(**base)


def errors(result, variable):
    return [e for e in result['errors'] if e['variable'] == variable]


def assert_refused(result, variable, *fragments):
    found = errors(result, variable)
    assert found, result['errors']
    text = ' '.join(e['message'] + ' Fix: ' + e['fix'] for e in found)
    for fragment in fragments:
        assert fragment in text, (fragment, text)


# ---------------------------------------------------------------- image and CVEs

def test_the_default_tag_is_above_every_known_cve():
    result = compute_plan(k3s(), {})
    assert result['ok'], result['errors']
    assert result['image']['ref'] == 'docker.io/ollama/ollama:' + plan_mod.DEFAULT_OLLAMA_TAG
    assert result['image']['known_cves'] == []
    assert {'CVE-2024-37032', 'CVE-2024-45436', 'CVE-2026-7482'} <= set(c[0] for c in KNOWN_CVES)


@pytest.mark.parametrize('tag, named', [
    ('0.1.33', ['CVE-2024-37032 ', 'fixed in 0.1.34', 'CVE-2024-45436', 'CVE-2026-7482']),
    ('0.1.46', ['CVE-2024-45436', 'fixed in 0.1.47', 'CVE-2026-7482']),
    ('0.17.0', ['CVE-2026-7482', 'fixed in 0.17.1']),
    ('v0.11.4', ['CVE-2026-7482', 'fixed in 0.17.1']),
    ('0.17.0-rocm', ['CVE-2026-7482']),
])
def test_a_tag_below_the_cve_table_is_refused_naming_each_cve_and_its_fix(tag, named):
    result = compute_plan(k3s(), {'image_tag': tag})
    assert_refused(result, 'ollama_image_tag', 'known critical CVEs', 'ollama_image_allow_known_vulnerable: true',
                   *named)
    if tag.lstrip('v').startswith('0.17') or tag.lstrip('v').startswith('0.11'):
        assert 'CVE-2024-37032' not in errors(result, 'ollama_image_tag')[0]['message']


def test_the_opt_out_runs_an_old_tag_and_says_so_loudly():
    result = compute_plan(k3s(), {'image_tag': '0.11.4', 'image_allow_known_vulnerable': True})
    assert result['ok'], result['errors']
    assert result['image']['known_cves'] == ['CVE-2026-7482']
    assert any('HAS KNOWN CRITICAL CVEs' in w and 'CVE-2026-7482' in w for w in result['warnings'])


def test_known_cves_orders_by_fix():
    assert [c for c, _f, _w in known_cves((0, 1, 0))] == ['CVE-2024-37032', 'CVE-2024-45436', 'CVE-2026-7482']
    assert known_cves((0, 17, 1)) == [] and known_cves((1, 0, 0)) == []


@pytest.mark.parametrize('digest, fragment', [
    ('sha256:abc', 'not sha256:<64'),
    ('sha256:' + 'AB' * 32, 'not sha256:<64'),
    ('md5:' + 'a' * 32, 'not sha256:<64'),
    ('latest', 'not sha256:<64'),
])
def test_an_invalid_digest_is_refused(digest, fragment):
    assert_refused(compute_plan(k3s(), {'image_digest': digest}), 'ollama_image_digest', fragment, 'crane digest')


def test_a_digest_pins_the_tagged_image():
    digest = 'sha256:' + '0f' * 32
    result = compute_plan(k3s(), {'image_digest': digest})
    assert result['image']['ref'] == 'docker.io/ollama/ollama:%s@%s' % (plan_mod.DEFAULT_OLLAMA_TAG, digest)
    conflict = compute_plan(k3s(), {'image_digest': digest, 'image_tag': '0.32.15@sha256:' + '1e' * 32})
    assert_refused(conflict, 'ollama_image_digest', 'differ')


# ---------------------------------------------------------------- namespaces

@pytest.mark.parametrize('namespace', ['kube-system', 'kube-public', 'kube-node-lease', 'default', 'kube-flannel'])
def test_a_system_namespace_is_refused(namespace):
    assert_refused(compute_plan(k3s(), {'namespace': namespace}), 'ollama_namespace', 'Kubernetes owns',
                   'ollama_namespace to a namespace of its own')


def test_a_new_namespace_is_the_collections():
    info = compute_plan(k3s(), {})['namespace_info']
    assert info == {'name': 'ollama', 'exists': False, 'owned': True, 'manage_labels': True, 'labels': {}}


def test_a_namespace_made_by_someone_else_keeps_its_labels_unless_the_user_opts_in():
    facts = k3s(existing={'namespace_exists': True, 'namespace_labels': {'team': 'ml'}, 'workloads': [],
                          'claims': []})
    result = compute_plan(facts, {})
    assert result['ok'] and result['namespace_info']['owned'] is False
    assert result['namespace_info']['manage_labels'] is False
    assert any('ollama_namespace_manage_labels: true' in w for w in result['warnings'])
    opted = compute_plan(facts, {'namespace_manage_labels': True})['namespace_info']
    assert opted['owned'] is False and opted['manage_labels'] is True
    ours = k3s(existing={'namespace_exists': True, 'workloads': [], 'claims': [],
                         'namespace_labels': {'app.kubernetes.io/managed-by': 'llmops.ollama'}})
    assert compute_plan(ours, {})['namespace_info']['owned'] is True


# ---------------------------------------------------------------- Ingress

def test_the_ingress_takes_the_default_class_and_routes_only_the_client_paths():
    result = compute_plan(k3s(), {'ingress': {'enabled': True, 'host': 'ollama.example.com'}})
    assert result['ok'], result['errors']
    ingress = result['ingress']
    assert ingress['class_name'] == 'traefik' and ingress['controller'] == 'traefik.io/ingress-controller'
    assert ingress['paths'] == list(exposure.CLIENT_PATHS)
    assert not set(ingress['paths']) & set(exposure.ADMIN_PATHS)
    assert ingress['controller_namespaces'] == ['kube-system']


def test_an_ingress_class_that_does_not_exist_is_refused():
    result = compute_plan(k3s(), {'ingress': {'enabled': True, 'host': 'o.example.com', 'class_name': 'nginx'}})
    assert_refused(result, 'ollama_ingress_class_name', "IngressClass 'nginx' does not exist", 'existing: traefik')


def test_no_default_class_and_none_named_is_refused():
    assert_refused(compute_plan(eks(), {'ingress': {'enabled': True, 'host': 'o.example.com'}}),
                   'ollama_ingress_class_name', 'no (single) default IngressClass', 'alb')
    assert_refused(compute_plan(k3s(ingress_classes=[], default_ingress_class=None),
                                {'ingress': {'enabled': True, 'host': 'o.example.com'}}),
                   'ollama_ingress_class_name', 'no IngressClass', 'Traefik')


def test_unreadable_ingress_classes_refuse_only_an_unnamed_class():
    facts = k3s(ingress_classes=None, default_ingress_class=None)
    assert_refused(compute_plan(facts, {'ingress': {'enabled': True, 'host': 'o.example.com'}}),
                   'ollama_ingress_class_name', 'could not be read')
    named = compute_plan(facts, {'ingress': {'enabled': True, 'host': 'o.example.com', 'class_name': 'traefik'}})
    assert not errors(named, 'ollama_ingress_class_name')
    assert compute_plan(facts, {})['ok']


@pytest.mark.parametrize('name', ['auth_type', 'auth_secret', 'auth_url', 'allow_unauthenticated'])
def test_the_retired_ingress_auth_variables_are_refused_with_what_replaced_them(name):
    config = config_from_role_vars({'ollama_ingress_%s' % name: 'basic'})
    assert_refused(compute_plan(k3s(), config), 'ollama_ingress_%s' % name, 'retired', 'remove')


def test_a_path_that_routes_an_admin_endpoint_is_refused_unless_opened():
    config = {'ingress': {'enabled': True, 'host': 'o.example.com'}, 'workload_ingress_paths': ['/api']}
    assert_refused(compute_plan(k3s(), config), 'ollama_workload_ingress_paths', '/api/pull',
                   'ollama_ingress_open_admin_endpoints: true')
    config['ingress']['open_admin_endpoints'] = True
    assert compute_plan(k3s(), config)['ok']


def test_eks_alb_needs_the_vpc_cidr_in_the_policy():
    config = {'ingress': {'enabled': True, 'host': 'o.example.com', 'class_name': 'alb'}}
    assert_refused(compute_plan(eks(), config), 'ollama_workload_allowed_cidrs', 'VPC')
    config['workload_allowed_cidrs'] = ['10.0.0.0/16']
    result = compute_plan(eks(), config)
    assert result['ok'], result['errors']
    assert {'ipBlock': {'cidr': '10.0.0.0/16'}} in result['network_policy']['ingress_spec']['ingress'][0]['from']


def test_an_unknown_controller_needs_its_namespace_named():
    facts = k3s(distribution='other', controller_pods=[],
                ingress_classes=[{'name': 'haproxy', 'controller': 'haproxy.org/ingress-controller/haproxy',
                                  'default': True}], default_ingress_class='haproxy')
    config = {'ingress': {'enabled': True, 'host': 'o.example.com'}}
    assert_refused(compute_plan(facts, config), 'ollama_workload_ingress_controller_namespace',
                   'cannot tell where the ingress controller runs')
    config['workload_ingress_controller_namespace'] = 'haproxy-controller'
    result = compute_plan(facts, config)
    assert result['ok'], result['errors']
    assert result['network_policy']['controller_namespaces'] == ['haproxy-controller']


# ---------------------------------------------------------------- HTTPRoute

ROUTE = {'httproute_enabled': True, 'httproute_parent_refs': [{'name': 'traefik-gateway', 'namespace': 'kube-system'}],
         'httproute_hostnames': ['ollama.example.com']}


def test_the_httproute_attaches_to_the_gateway_with_the_client_paths():
    result = compute_plan(k3s(), dict(ROUTE))
    assert result['ok'], result['errors']
    route = result['httproute']
    assert route['parent_refs'] == [{'group': 'gateway.networking.k8s.io', 'kind': 'Gateway',
                                     'name': 'traefik-gateway', 'namespace': 'kube-system'}]
    assert route['hostnames'] == ['ollama.example.com'] and route['paths'] == list(exposure.CLIENT_PATHS)
    assert result['network_policy']['controller_namespaces'] == ['kube-system']


def test_an_httproute_without_parent_refs_is_refused():
    assert_refused(compute_plan(k3s(), dict(ROUTE, httproute_parent_refs=[])), 'ollama_httproute_parent_refs',
                   'is empty', 'kube-system/traefik-gateway')


def test_an_httproute_naming_a_gateway_that_does_not_exist_is_refused():
    config = dict(ROUTE, httproute_parent_refs=[{'name': 'public', 'namespace': 'gateways'}])
    assert_refused(compute_plan(k3s(), config), 'ollama_httproute_parent_refs', 'Gateway gateways/public does not exist',
                   'Gateways: kube-system/traefik-gateway')


def test_an_httproute_without_the_gateway_api_crds_is_refused():
    facts = k3s(gateway_api={'installed': False, 'versions': [], 'resources': []}, gateways=[], gateway_classes=[])
    assert_refused(compute_plan(facts, dict(ROUTE)), 'ollama_httproute_enabled', 'CRDs are not installed',
                   'ollama_httproute_enabled: false')


def test_a_gateway_that_admits_only_its_own_namespace_is_refused():
    gateway = copy.deepcopy(TRAEFIK_GATEWAY)
    gateway['listeners'][0]['from'] = 'Same'
    assert_refused(compute_plan(k3s(gateways=[gateway]), dict(ROUTE)), 'ollama_httproute_parent_refs',
                   'admits no route from namespace ollama', 'namespacePolicy: All')
    gateway['listeners'][0].update({'from': 'Selector',
                                    'selector': {'matchLabels': {'kubernetes.io/metadata.name': 'ollama'}}})
    assert compute_plan(k3s(gateways=[gateway]), dict(ROUTE))['ok']


@pytest.mark.parametrize('refs, fragment', [
    ([{'namespace': 'kube-system'}], 'no valid name'),
    ([{'name': 'traefik-gateway', 'namespace': 'Kube_System'}], 'not a namespace name'),
    ([{'name': 'traefik-gateway', 'namespace': 'kube-system', 'sectionName': 'websecure'}], 'no listener websecure'),
    ([{'name': 'traefik-gateway', 'kind': 'Service'}], 'unknown keys kind'),
    ('traefik-gateway', 'must be a list'),
])
def test_bad_parent_refs_are_refused(refs, fragment):
    assert_refused(compute_plan(k3s(), dict(ROUTE, httproute_parent_refs=refs)), 'ollama_httproute_parent_refs',
                   fragment)


def test_bad_hostnames_are_refused():
    assert_refused(compute_plan(k3s(), dict(ROUTE, httproute_hostnames=['https://x'])), 'ollama_httproute_hostnames',
                   'DNS names')


# ---------------------------------------------------------------- NetworkPolicies

def test_default_policies_select_only_the_collections_pods_and_admit_the_api_server():
    result = compute_plan(k3s(), {'models': [{'name': SIM_REGISTRY + '/library/tiny-a:latest', 'size': 1}],
                                  'insecure_registries': [SIM_REGISTRY]})
    policy = result['network_policy']
    assert result['ok'], result['errors']
    ingress, egress = policy['ingress_spec'], policy['egress_spec']
    for spec in (ingress, egress):
        assert spec['podSelector'] == {'matchLabels': SELECTOR}
    # Nothing exposed, no clients listed: only the API server's pod proxy (the control-plane node) gets in.
    assert ingress['ingress'] == [{'from': [{'ipBlock': {'cidr': '10.250.0.1/32'}}],
                                   'ports': [{'port': 'http', 'protocol': 'TCP'}]}]
    assert egress['egress'] == [
        {'to': [{'namespaceSelector': {'matchLabels': {'kubernetes.io/metadata.name': 'kube-system'}}}],
         'ports': [{'port': 53, 'protocol': 'UDP'}, {'port': 53, 'protocol': 'TCP'}]},
        {'ports': [{'port': 5000, 'protocol': 'TCP'}]}]
    assert policy['registry_ports'] == [SIM_REGISTRY]


def test_the_control_planes_pod_network_addresses_are_admitted():
    facts = k3s(control_plane=[{'name': 'cp', 'internal_ips': ['192.168.1.10'], 'pod_cidrs': ['10.42.0.0/24']}])
    policy = compute_plan(facts, {})['network_policy']
    assert policy['api_server_cidrs'] == ['192.168.1.10/32', '10.42.0.0/32', '10.42.0.1/32']
    assert policy['api_server_source'] == 'control-plane nodes'


def test_clients_namespaces_pods_and_cidrs_are_admitted_to_the_gate_port_only():
    config = {'ingress': {'enabled': True, 'host': 'o.example.com'},
              'workload_allowed_namespaces': ['open-webui', 'open-webui'],
              'workload_allowed_pods': [{'labels': {'app': 'batch'}}, {'namespace': 'apps', 'labels': {'app': 'rag'}}],
              'workload_allowed_cidrs': ['192.168.7.0/24']}
    result = compute_plan(k3s(), config)
    assert result['ok'], result['errors']
    (clients, api) = result['network_policy']['ingress_spec']['ingress']
    assert clients['ports'] == [{'port': 'http', 'protocol': 'TCP'}]
    assert clients['from'] == [
        {'namespaceSelector': {'matchExpressions': [{'key': 'kubernetes.io/metadata.name', 'operator': 'In',
                                                     'values': ['open-webui']}]}},
        {'podSelector': {'matchLabels': {'app': 'batch'}}},
        {'podSelector': {'matchLabels': {'app': 'rag'}},
         'namespaceSelector': {'matchLabels': {'kubernetes.io/metadata.name': 'apps'}}},
        {'namespaceSelector': {'matchLabels': {'kubernetes.io/metadata.name': 'kube-system'}}},
        {'ipBlock': {'cidr': '192.168.7.0/24'}}]
    assert api == {'from': [{'ipBlock': {'cidr': '10.250.0.1/32'}}], 'ports': [{'port': 'http', 'protocol': 'TCP'}]}


def test_registry_ports_follow_the_declared_models():
    models = [{'full': 'registry.ollama.ai/library/llama3:latest'}, {'full': 'hf.co/org/m:q4'},
              {'full': 'registry.local:5000/ns/m:t'}, {'full': 'plain.local/ns/m:t'}]
    assert exposure.registry_ports(models, ['plain.local']) == [
        ('registry.ollama.ai', 443), ('hf.co', 443), ('registry.local', 5000), ('plain.local', 80)]


def test_egress_to_listed_cidrs_and_extra_rules():
    extra = [{'to': [{'ipBlock': {'cidr': '10.0.0.0/8'}}], 'ports': [{'port': 5432, 'protocol': 'TCP'}]}]
    result = compute_plan(k3s(), {'models': ['llama3.2:3b'], 'workload_egress_cidrs': ['203.0.113.0/24'],
                                  'workload_extra_egress': extra})
    egress = result['network_policy']['egress_spec']['egress']
    assert egress[1] == {'ports': [{'port': 443, 'protocol': 'TCP'}], 'to': [{'ipBlock': {'cidr': '203.0.113.0/24'}}]}
    assert egress[2:] == extra


def test_policies_off_render_nothing():
    policy = compute_plan(k3s(), {'workload_network_policy': False})['network_policy']
    assert policy['ingress_spec'] is None and policy['egress_spec'] is None
    egress_off = compute_plan(k3s(), {'workload_egress_policy': False})['network_policy']
    assert egress_off['ingress_spec'] and egress_off['egress_spec'] is None


def test_eks_without_a_vpc_cidr_warns_that_its_api_server_is_not_admitted():
    result = compute_plan(eks(), {})
    assert result['ok'] and result['network_policy']['api_server_cidrs'] == []
    assert result['network_policy']['ingress_spec']['ingress'] == []
    assert any('VPC CIDR' in w for w in result['warnings'])


@pytest.mark.parametrize('config, variable, fragment', [
    ({'workload_allowed_namespaces': ['Open_WebUI']}, 'ollama_workload_allowed_namespaces', 'not a namespace name'),
    ({'workload_allowed_namespaces': 'open-webui'}, 'ollama_workload_allowed_namespaces', 'must be a list'),
    ({'workload_allowed_pods': [{'labels': {'app': 'bad value!'}}]}, 'ollama_workload_allowed_pods', 'value'),
    ({'workload_allowed_pods': [{'labels': {'-app': 'x'}}]}, 'ollama_workload_allowed_pods', 'key'),
    ({'workload_allowed_pods': [{'labels': {'Example.COM/app': 'x'}}]}, 'ollama_workload_allowed_pods', 'prefix'),
    ({'workload_allowed_pods': [{'labels': {}}]}, 'ollama_workload_allowed_pods', 'non-empty'),
    ({'workload_allowed_pods': [{'namespace': 'Apps', 'labels': {'a': 'b'}}]}, 'ollama_workload_allowed_pods',
     'not a namespace name'),
    ({'workload_allowed_pods': [{'labels': {'a': True}}]}, 'ollama_workload_allowed_pods', 'quote'),
    ({'workload_allowed_pods': [{'selector': {'a': 'b'}}]}, 'ollama_workload_allowed_pods', 'unknown keys'),
    ({'workload_allowed_cidrs': ['10.0.0.0']}, 'ollama_workload_allowed_cidrs', 'not a CIDR'),
    ({'workload_egress_cidrs': ['300.0.0.0/8']}, 'ollama_workload_egress_cidrs', 'not a CIDR'),
    ({'workload_extra_egress': [{'to': [{'ipBlock': {'cidr': 'x'}}]}]}, 'ollama_workload_extra_egress', 'cidr'),
    ({'workload_extra_egress': [{'ports': [{'port': 53, 'protocol': 'ICMP'}]}]}, 'ollama_workload_extra_egress',
     'port'),
    ({'workload_extra_egress': {'to': []}}, 'ollama_workload_extra_egress', 'must be a list'),
    ({'workload_ingress_controller_namespace': 'Traefik'}, 'ollama_workload_ingress_controller_namespace',
     'not a namespace name'),
])
def test_bad_policy_input_is_refused(config, variable, fragment):
    assert_refused(compute_plan(k3s(), config), variable, fragment)


def test_label_syntax():
    assert exposure.label_key_problem('app.kubernetes.io/name') is None
    assert exposure.label_key_problem('a' * 63) is None and exposure.label_key_problem('a' * 64)
    assert exposure.label_value_problem('') is None and exposure.label_value_problem('v1.2_x-y') is None
    assert exposure.label_value_problem('-x') and exposure.label_value_problem('x' * 64)


def test_role_defaults_match_the_plan_defaults():
    """The ollama_workload role documents these plan settings; both must say the same."""
    import os
    import yaml
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, '..', '..', '..', '..', 'roles', 'ollama_workload', 'defaults', 'main.yml')
    with open(path) as handle:
        defaults = yaml.safe_load(handle)
    for key, value in SECURITY_DEFAULTS.items():
        if key.startswith('workload_'):
            assert defaults['ollama_' + key] == value, key
    assert DEFAULTS['image_tag'] == plan_mod.DEFAULT_OLLAMA_TAG
