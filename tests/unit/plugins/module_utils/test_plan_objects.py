# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan names every object, sizes the GPU quota and lists what other settings wrote that these no longer ask
for; the roles' templates only render it. Pure functions (no cluster); the roles apply and delete these on the
simulator in tests/integration/collection/test_workload.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.plan import compute_plan, decide_gpu_quota, Report

from test_plan import gpu_node, k3s_facts

TWO_NODES = [gpu_node('a', taints=[]), gpu_node('b', taints=[])]


def plan(**config):
    return compute_plan(k3s_facts(nodes=TWO_NODES), config)


def refs(result, role):
    return sorted('%s %s' % (o['kind'], o['metadata']['name']) for o in result['stale'][role])


QUOTA = [
    # (ollama_gpu_quota, replicas, gpus per pod, rolling update, GPUs or None, refused)
    ('', 2, 1, None, None, False),
    (None, 2, 1, None, None, False),
    ('auto', 2, 1, None, 2, False),
    (' auto ', 2, 1, {'max_surge': 1}, 3, False),
    (2, 2, 1, None, 2, False),
    ('4', 2, 1, None, 4, False),
    (1, 2, 1, None, None, True),
    ('two', 2, 1, None, None, True),
    ('-2', 2, 1, None, None, True),
    (2, 2, 1, {'max_surge': 1}, None, True),
    (3, 2, 1, {'max_surge': 1}, 3, False),
    (3, 2, 2, None, None, True),
]


@pytest.mark.parametrize('value, replicas, gpus, rolling, expected, refused', QUOTA,
                         ids=['%r-%d-%d-%r' % case[:4] for case in QUOTA])
def test_the_gpu_quota_covers_the_replicas_and_a_surge_pod(value, replicas, gpus, rolling, expected, refused):
    report = Report()
    assert decide_gpu_quota(value, replicas, gpus, rolling, report) == expected
    assert bool(report.errors) == refused, report.errors
    if refused:
        (error,) = report.errors
        needed = (replicas + int((rolling or {}).get('max_surge') or 0)) * gpus
        assert error['variable'] == 'ollama_gpu_quota'
        assert 'at least %d' % needed in error['message'] and 'to %d or more' % needed in error['fix']


def test_the_surge_pod_is_named_in_the_quota_refusal():
    report = Report()
    decide_gpu_quota(1, 2, 1, {'max_surge': 1}, report)
    assert 'at least 3 (2 replica(s) x 1 GPU(s) + one surge pod)' in report.errors[0]['message']


def test_the_plan_sizes_and_names_the_quota():
    # Two replicas on a shared store roll with a surge pod where a third node has a free GPU.
    facts = k3s_facts(nodes=TWO_NODES + [gpu_node('c', taints=[])])
    result = compute_plan(facts, {'name': 'chat', 'replicas': 2, 'storage_mode': 'shared', 'storage_class_rwx': True,
                                  'gpu_quota': 'auto'})
    assert result['ok'], result['errors']
    assert result['workload_kind'] == 'Deployment' and result['rolling_update']['max_surge'] == 1
    assert result['gpu_quota'] == {'name': 'chat-gpu', 'gpus': 3}
    assert 'ResourceQuota chat-gpu' not in refs(result, 'ha_policy')
    assert plan(name='chat', replicas=2)['gpu_quota'] is None
    assert 'ResourceQuota chat-gpu' in refs(plan(name='chat', replicas=2), 'ha_policy')


def test_every_object_name_comes_from_the_plan():
    objects = plan(name='chat')['objects']
    assert objects['headless_service'] == 'chat-headless' and objects['gpu_quota'] == 'chat-gpu'
    assert objects['network_policies'] == {'ingress': 'chat-ingress', 'egress': 'chat-egress',
                                           'cache_ingress': 'chat-model-cache-ingress',
                                           'cache_egress': 'chat-model-cache-egress'}
    assert objects['self_heal_config_map'] == plan(name='chat')['self_heal']['config_map']


def test_a_statefulset_leaves_the_deployment_stale_and_keeps_its_headless_service():
    result = plan(name='chat', replicas=2, storage_mode='per_replica')
    assert result['workload_kind'] == 'StatefulSet'
    stale = refs(result, 'ollama_workload')
    assert 'Deployment chat' in stale and 'Service chat-headless' not in stale and 'StatefulSet chat' not in stale
    assert all(o['metadata']['namespace'] == result['namespace'] for o in result['stale']['ollama_workload'])


def test_a_deployment_leaves_the_statefulset_and_its_headless_service_stale():
    stale = refs(plan(name='chat', replicas=1), 'ollama_workload')
    assert 'StatefulSet chat' in stale and 'Service chat-headless' in stale and 'Deployment chat' not in stale


def test_what_is_turned_off_is_stale_and_what_is_on_is_not():
    off = refs(plan(name='chat', replicas=1, self_heal=False, workload_network_policy=False), 'ollama_workload')
    for ref in ('Ingress chat', 'ConfigMap chat-self-heal', 'NetworkPolicy chat-ingress', 'NetworkPolicy chat-egress',
                'Deployment chat-model-cache', 'Service chat-model-cache', 'ConfigMap chat-model-cache-config'):
        assert ref in off, ref
    on = refs(plan(name='chat', replicas=1), 'ollama_workload')
    assert 'ConfigMap chat-self-heal' not in on and 'NetworkPolicy chat-ingress' not in on
    assert 'NetworkPolicy chat-egress' not in on


def test_no_claim_is_ever_stale():
    for config in ({'replicas': 1}, {'replicas': 2, 'storage_mode': 'per_replica'}, {'replicas': 2}):
        result = plan(**config)
        kinds = [o['kind'] for role in result['stale'].values() for o in role]
        assert 'PersistentVolumeClaim' not in kinds


def test_one_replica_leaves_no_budget_and_two_keep_theirs():
    assert 'PodDisruptionBudget chat' in refs(plan(name='chat', replicas=1), 'ha_policy')
    assert 'PodDisruptionBudget chat' not in refs(plan(name='chat', replicas=2), 'ha_policy')
