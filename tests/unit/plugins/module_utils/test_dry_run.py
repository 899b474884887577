# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The API server's refusals told as the variables behind them (pure logic). The answers are kube-apiserver
1.34's Status bodies as the simulator returned them. The DryRun cases replay those answers through a fake
transport: they test which request follows which answer, not the API server (the integration tests in
tests/integration/collection/test_checks_before_writes.py do that against the simulator)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.dry_run import (
    DryRun,
    culprits,
    describe,
    explain,
    normalize_field,
    source_variables,
)
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Response


def invalid(kind, name, causes):
    return {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'reason': 'Invalid', 'code': 422,
            'message': '%s "%s" is invalid: %s' % (kind, name, ', '.join('%s: %s' % (f, m) for f, m in causes)),
            'details': {'name': name, 'kind': kind.split('.')[0].lower(),
                        'causes': [{'reason': 'FieldValueInvalid', 'field': f, 'message': m} for f, m in causes]}}


def workload(containers=('ollama',), init=()):
    spec = {'containers': [{'name': n, 'image': 'x:1'} for n in containers]}
    if init:
        spec['initContainers'] = [{'name': n, 'image': 'x:1', 'restartPolicy': 'Always'} for n in init]
    return {'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'metadata': {'name': 'ollama', 'namespace': 'ollama'},
            'spec': {'template': {'spec': spec}}}


HEALED = workload(('ollama', 'gate'), init=('models',))
ROUTE = {'apiVersion': 'gateway.networking.k8s.io/v1', 'kind': 'HTTPRoute',
         'metadata': {'name': 'ollama', 'namespace': 'ollama'}, 'spec': {}}


POLICY = {'apiVersion': 'networking.k8s.io/v1', 'kind': 'NetworkPolicy',
          'metadata': {'name': 'ollama-ingress', 'namespace': 'ollama'}, 'spec': {}}

LABEL_MESSAGE = ("Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', "
                 "and must start and end with an alphanumeric character")


@pytest.mark.parametrize('field, expected', [
    ('spec.template.spec.containers[0].resources.requests', 'spec.template.spec.containers[0].resources.requests'),
    ('.spec.template.spec.containers[name="gate"].resources', 'spec.template.spec.containers[gate].resources'),
    ('', ''),
])
def test_field_paths_of_validation_and_apply_read_the_same(field, expected):
    assert normalize_field(field) == expected


@pytest.mark.parametrize('obj, field, variables', [
    (workload(), 'spec.template.spec.containers[0].resources.requests', ['ollama_workload_resources']),
    (workload(('ollama', 'gate')), 'spec.template.spec.containers[1].resources.limits',
     ['ollama_workload_gate_resources']),
    (workload(('ollama', 'gate')), 'spec.template.spec.containers[gate].resources', ['ollama_workload_gate_resources']),
    (workload(), 'spec.template.spec.containers[0].env[3].name', ['ollama_workload_env', 'ollama_workload_env_defaults']),
    (workload(), 'spec.template.spec.tolerations[0].operator', ['ollama_tolerations']),
    (workload(), 'spec.template.spec.securityContext.runAsUser', ['ollama_workload_uid', 'ollama_workload_gid']),
    (workload(), 'spec.volumeClaimTemplates[0].spec', ['ollama_storage_class', 'ollama_claim_size']),
    (POLICY, 'spec.ingress[0].from[2].podSelector.matchLabels', ['ollama_workload_allowed_pods']),
    (POLICY, 'spec.ingress[0].from[0].ipBlock.cidr', ['ollama_workload_allowed_cidrs']),
    # The self-heal sidecar is initContainers[0]: an index counts within its own list, never the containers'.
    (HEALED, 'spec.template.spec.initContainers[0].resources.requests',
     ['ollama_workload_self_heal_resources']),
    (HEALED, 'spec.template.spec.initContainers[models].resources', ['ollama_workload_self_heal_resources']),
    (HEALED, 'spec.template.spec.containers[0].resources.requests', ['ollama_workload_resources']),
    (HEALED, 'spec.template.spec.containers[1].resources.limits', ['ollama_workload_gate_resources']),
    (HEALED, 'spec.template.spec.initContainers[0].env[4].value',
     ['ollama_self_heal_interval', 'ollama_self_heal_pull_timeout']),
    (POLICY, 'spec.egress[1].to[0].ipBlock.cidr', ['ollama_workload_egress_cidrs', 'ollama_workload_extra_egress']),
    (POLICY, 'spec.egress[2].to[0].podSelector.matchLabels', ['ollama_workload_extra_egress']),
    (ROUTE, 'spec.parentRefs[0].name', ['ollama_httproute_parent_refs']),
    (ROUTE, 'spec.hostnames[0]', ['ollama_httproute_hostnames']),
    (ROUTE, 'spec.rules[0].matches[2].path.value', ['ollama_workload_ingress_paths']),
    ({'kind': 'PodDisruptionBudget', 'metadata': {'namespace': 'ollama'}}, 'spec.minAvailable',
     ['ollama_pdb_min_available']),
    ({'kind': 'Namespace', 'metadata': {}}, 'metadata.labels', ['ollama_workload_pod_security_level',
                                                                'ollama_workload_pod_security_version']),
    ({'kind': 'Deployment', 'metadata': {'namespace': 'local-path-storage'}}, 'spec.template.spec.containers[0].image',
     ['storage_provisioner_local_path_image', 'storage_provisioner_local_path_helper_image',
      'storage_provisioner_local_path_namespace', 'storage_provisioner_local_path_node_path']),
])
def test_the_table_names_the_variables(obj, field, variables):
    assert culprits(obj, field, '')[0] == variables


def test_several_candidates_narrow_to_the_one_holding_the_value():
    sources = {'ollama_workload_allowed_pods': [{'namespace': 'open webui!', 'labels': {'app': 'x'}}],
               'ollama_workload_allowed_namespaces': ['apps'], 'ollama_workload_ingress_controller_namespace': 'x'}
    variables, fix = culprits(POLICY, 'spec.ingress[0].from[1].namespaceSelector.matchLabels',
                              'Invalid value: "open webui!": a valid label must be ...', sources)
    assert variables == ['ollama_workload_allowed_pods'] and 'namespace' in fix


def test_a_refusal_of_two_fields_gives_two_problems():
    answer = invalid('Deployment.apps', 'ollama', [
        ('spec.template.spec.containers[0].resources.requests',
         'Invalid value: "8Gi": must be less than or equal to memory limit of 4Gi'),
        ('spec.template.spec.nodeSelector', LABEL_MESSAGE)])
    problems = explain(dict(workload(), kind='Deployment'), answer)
    assert [p['variable'] for p in problems] == ['ollama_workload_resources', 'ollama_node_selector']
    text = describe(problems)
    assert '- ollama_workload_resources: Deployment ollama/ollama spec.template.spec.containers[0].resources.requests' \
        in text and 'Fix: keep every request at or below its limit' in text


def test_an_apply_that_does_not_fit_the_schema_names_its_field():
    answer = {'kind': 'Status', 'status': 'Failure', 'reason': 'BadRequest', 'code': 400,
              'message': 'failed to create typed patch object (ollama/ollama; apps/v1, Kind=StatefulSet): '
                         '.spec.template.spec.containers[name="ollama"].resources.limits.memory: expected string, '
                         'got &value.valueUnstructured{Value:[]interface {}{}}'}
    (problem,) = explain(workload(), answer)
    assert problem['variable'] == 'ollama_workload_resources'
    assert problem['field'] == 'spec.template.spec.containers[ollama].resources.limits.memory'


def test_an_unknown_field_still_says_what_and_where():
    answer = invalid('Service', 'ollama', [('spec.ports[0].name', 'Invalid value: "HTTP": must be lower case')])
    (problem,) = explain({'kind': 'Service', 'metadata': {'name': 'ollama', 'namespace': 'ollama'}}, answer)
    assert problem['variable'] == "the role's settings" and 'must be lower case' in problem['message']
    assert problem['fix']


def test_every_variable_of_the_table_is_a_source():
    names = source_variables()
    assert 'ollama_workload_allowed_pods' in names and 'ollama_workload_gate_resources' in names
    assert names == sorted(set(names))
    assert 'ollama_workload_env' not in names  # may hold credentials


class FakeTransport(object):
    """Answers by (method, path prefix); records every request."""

    host = 'https://fake'

    def __init__(self, answers):
        self.answers = answers
        self.sent = []

    def call(self, method, path, body=None, query=None, headers=None, timeout=30, stream=False):
        self.sent.append((method, path, dict(query or {})))
        for (want_method, prefix), (status, answer) in self.answers.items():
            if method == want_method and path.startswith(prefix):
                return Response(status, 'x', data=json.dumps(answer).encode())
        return Response(200, 'OK', data=b'{}')


class FakeApi(object):
    timeout = 30
    host = 'https://fake'

    def __init__(self, transport):
        self.transport = transport

    def send(self, method, path, body=None, query=None, headers=None, timeout=None, stream=False):
        return self.transport.call(method, path, body=body, query=query, headers=headers, timeout=timeout,
                                   stream=stream)


NOT_FOUND_NS = {'kind': 'Status', 'reason': 'NotFound', 'code': 404, 'message': 'namespaces "fresh" not found',
                'details': {'name': 'fresh', 'kind': 'namespaces'}}


def objects(namespace):
    return [{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace}},
            {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': 'ollama', 'namespace': namespace}},
            {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'ollama', 'namespace': namespace}}]


def test_an_existing_namespace_gets_one_dry_run_apply_per_object():
    transport = FakeTransport({})
    runner = DryRun(FakeApi(transport), 'llmops-ollama')
    for obj in objects('ollama'):
        assert runner.check(obj) == ([], None)
    assert [(m, q['dryRun'], q['fieldManager']) for m, _p, q in transport.sent] == [('PATCH', 'All', 'llmops-ollama')] * 3


def test_a_missing_namespace_sends_its_objects_as_creates_into_the_fallback_once_found():
    transport = FakeTransport({('PATCH', '/api/v1/namespaces/fresh/'): (404, NOT_FOUND_NS),
                               ('POST', '/api/v1/namespaces/default/services'): (409, {'reason': 'AlreadyExists'})})
    runner = DryRun(FakeApi(transport), 'llmops-ollama')
    for obj in objects('fresh'):
        assert runner.check(obj) == ([], None)
    assert [(m, p) for m, p, _q in transport.sent] == [
        ('PATCH', '/api/v1/namespaces/fresh'),
        ('PATCH', '/api/v1/namespaces/fresh/serviceaccounts/ollama'),
        ('POST', '/api/v1/namespaces/default/serviceaccounts'),
        # The namespace is known missing now: straight to the fallback.
        ('POST', '/api/v1/namespaces/default/services'),
    ]


def test_no_right_in_the_fallback_is_a_note_not_a_refusal():
    transport = FakeTransport({('PATCH', '/api/v1/namespaces/fresh/'): (404, NOT_FOUND_NS),
                               ('POST', '/api/v1/namespaces/default/'): (403, {'reason': 'Forbidden'})})
    problems, note = DryRun(FakeApi(transport), 'm').check(objects('fresh')[1])
    assert problems == [] and 'was not checked' in note and 'default' in note


def test_a_conflict_with_another_field_manager_is_refused_with_the_fix():
    transport = FakeTransport({('PATCH', '/api/v1/namespaces/ollama/services/'): (
        409, {'reason': 'Conflict', 'message': 'Apply failed with 1 conflict: conflict with "kubectl"'})})
    (problem,), _note = DryRun(FakeApi(transport), 'llmops-ollama').check(objects('ollama')[2])
    assert 'another field manager' in problem['message'] and 'force_conflicts' in problem['fix']
