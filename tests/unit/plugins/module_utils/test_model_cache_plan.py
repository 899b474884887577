# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan's model cache section: the upstreams, the names through the cache, the claim, the policies and the
refusals before any write. Pure functions; the cache itself runs against the simulator's registry in
tests/integration/collection/test_model_cache.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.module_utils import model_cache
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import parse_wanted
from ansible_collections.llmops.ollama.plugins.module_utils.plan import compute_plan

from test_plan import gpu_node, k3s_facts, storage_class

REGISTRY = '10.244.255.250:5000'
SIZED = [{'name': REGISTRY + '/library/tiny-a', 'size': '3GB'}, {'name': 'llama3.2:3b', 'size': '2GB'}]


def facts(**overrides):
    return k3s_facts(nodes=[gpu_node('a', taints=[]), gpu_node('b', taints=[])], **overrides)


def plan(models=None, **config):
    config = dict({'replicas': 2, 'models': SIZED if models is None else models, 'model_cache': True,
                   'insecure_registries': [REGISTRY]}, **config)
    return compute_plan(config.pop('facts', None) or facts(), config)


def errors_of(result, variable):
    return [e for e in result['errors'] if e['variable'] == variable]


def test_off_by_default_and_nothing_changes():
    result = compute_plan(facts(), {'replicas': 2, 'models': SIZED})
    assert result['ok'], result['errors']
    assert result['model_cache'] == {'enabled': False}
    assert all('via' not in m for m in result['models'])
    assert result['network_policy']['cache_ingress_spec'] is None


def test_one_registry_container_and_port_per_registry_the_models_come_from():
    result = plan()
    assert result['ok'], result['errors']
    cache = result['model_cache']
    assert cache['name'] == 'ollama-model-cache' and cache['host'] == 'ollama-model-cache.ollama.svc'
    assert [(u['host'], u['url'], u['port'], u['registry_port']) for u in cache['upstreams']] == [
        (REGISTRY, 'http://' + REGISTRY, 5000, 5100),  # listed in insecure_registries: plain HTTP, as Ollama pulls
        ('registry.ollama.ai', 'https://registry.ollama.ai', 5001, 5101)]
    assert cache['image']['ref'] == 'docker.io/library/registry:3.0.0'
    # Each model is pulled by the cache's name on the port of its registry.
    assert [m['via'] for m in result['models']] == [
        'ollama-model-cache.ollama.svc:5000/library/tiny-a:latest',
        'ollama-model-cache.ollama.svc:5001/library/llama3.2:3b']
    assert cache['list'].splitlines()[1:] == ['5100 library/tiny-a latest http://' + REGISTRY,
                                              '5101 library/llama3.2 3b https://registry.ollama.ai']


def test_the_replicas_and_the_sidecar_pull_by_the_cache_name_and_keep_their_own():
    result = plan()
    wanted, errors = parse_wanted(result['models'])
    assert not errors
    assert [(w['name'], w['via']) for w in wanted] == [
        (REGISTRY + '/library/tiny-a:latest', 'ollama-model-cache.ollama.svc:5000/library/tiny-a:latest'),
        ('llama3.2:3b', 'ollama-model-cache.ollama.svc:5001/library/llama3.2:3b')]
    lines = result['self_heal']['list'].splitlines()[1:]
    assert lines == [REGISTRY + '/library/tiny-a:latest ' + REGISTRY + '/library/tiny-a:latest 1 - '
                     'ollama-model-cache.ollama.svc:5000/library/tiny-a:latest',
                     'llama3.2:3b llama3.2:3b 0 - ollama-model-cache.ollama.svc:5001/library/llama3.2:3b']


def test_claim_sized_from_the_models_or_as_given():
    assert plan()['model_cache']['size'] == '10Gi'  # 5 GB + 20 %, at least 10Gi
    big = [{'name': 'llama3.1:70b', 'size': '40GB'}]
    assert plan(big)['model_cache']['size'] == '45Gi'  # 48 GB = 44.7 GiB, rounded up
    assert plan(model_cache_size='200Gi')['model_cache']['size'] == '200Gi'


def test_a_size_below_the_models_is_refused_with_the_size_that_fits():
    result = plan([{'name': 'llama3.1:70b', 'size': '40GB'}], model_cache_size='20Gi')
    (error,) = errors_of(result, 'ollama_model_cache_size')
    assert 'smaller than the models' in error['message'] and 'llama3.1:70b' in error['message']
    assert '45Gi' in error['fix']
    (error,) = errors_of(plan(model_cache_size='lots'), 'ollama_model_cache_size')
    assert 'not a Kubernetes quantity' in error['message']


def test_the_claim_takes_the_named_class_the_default_or_the_models_class():
    assert plan()['model_cache']['storage_class'] == 'local-path'
    two = [storage_class('local-path', 'rancher.io/local-path', default=True),
           storage_class('fast', 'rancher.io/local-path')]
    assert plan(facts=facts(classes=two), model_cache_storage_class='fast')['model_cache']['storage_class'] == 'fast'
    # No default class: the models' class (named for them).
    result = plan(facts=facts(classes=two, default=None), storage_class='fast')
    assert result['model_cache']['storage_class'] == 'fast', result['errors']


def test_a_cache_without_a_storage_class_is_refused_before_any_write():
    result = plan(facts=facts(classes=[], default=None))
    (error,) = errors_of(result, 'ollama_model_cache_storage_class')
    assert 'has no StorageClass' in error['message']
    assert 'ollama_model_cache_storage_class' in error['fix']
    (error,) = errors_of(plan(model_cache_storage_class='nope'), 'ollama_model_cache_storage_class')
    assert "'nope'" in error['message'] and 'local-path' in error['message']


def test_an_existing_cache_claim_keeps_its_class_and_never_shrinks():
    existing = {'claims': [{'name': 'ollama-model-cache', 'storage_class': 'other', 'size_bytes': 50 * 2 ** 30}]}
    result = plan(facts=facts(existing=existing))
    assert errors_of(result, 'ollama_model_cache_storage_class')
    existing['claims'][0]['storage_class'] = 'local-path'
    result = plan(facts=facts(existing=existing))
    assert result['ok'], result['errors']
    assert result['model_cache']['size'] == '50Gi'


def test_floating_images_and_bad_values_are_refused():
    assert errors_of(plan(model_cache_image_tag='latest'), 'ollama_model_cache_image_tag')
    assert errors_of(plan(model_cache_image='docker.io/library/registry:3'), 'ollama_model_cache_image')
    assert errors_of(plan(model_cache='maybe'), 'ollama_model_cache')
    assert errors_of(plan(model_cache_port=5150), 'ollama_model_cache_port')
    assert errors_of(plan(model_cache_port=70000), 'ollama_model_cache_port')
    assert errors_of(plan(name='x' * 60), 'ollama_name')


def test_the_replicas_reach_only_the_cache_and_the_cache_reaches_the_registries():
    result = plan()
    policy = result['network_policy']
    selector = result['model_cache']['selector']
    egress = policy['egress_spec']['egress']
    # DNS, then the cache's pods on its ports: no rule to the registries' ports any more.
    assert egress[1] == {'to': [{'podSelector': {'matchLabels': selector}}],
                         'ports': [{'port': 5000, 'protocol': 'TCP'}, {'port': 5001, 'protocol': 'TCP'}]}
    assert len(egress) == 2
    cache_egress = policy['cache_egress_spec']
    assert cache_egress['podSelector'] == {'matchLabels': selector}
    assert cache_egress['egress'][1] == {'ports': [{'port': 443, 'protocol': 'TCP'}, {'port': 5000, 'protocol': 'TCP'}]}
    ingress = policy['cache_ingress_spec']['ingress']
    assert ingress == [{'from': [{'podSelector': {'matchLabels': policy['pod_selector']}}],
                        'ports': [{'port': 5000, 'protocol': 'TCP'}, {'port': 5001, 'protocol': 'TCP'}]}]
    # The cache's egress keeps the destinations the user restricts the registries to.
    restricted = plan(workload_egress_cidrs=['10.0.0.0/8'])['network_policy']['cache_egress_spec']
    assert restricted['egress'][1]['to'] == [{'ipBlock': {'cidr': '10.0.0.0/8'}}]
    # The user's extra egress rules (a proxy, a registry's other addresses) apply to the cache too.
    extra = [{'to': [{'ipBlock': {'cidr': '203.0.113.0/24'}}], 'ports': [{'port': 3128, 'protocol': 'TCP'}]}]
    result = plan(workload_extra_egress=extra)
    assert result['ok'], result['errors']
    assert result['network_policy']['cache_egress_spec']['egress'][-1] == extra[0]


def test_a_new_model_list_has_a_new_hash():
    first, second = plan()['model_cache'], plan(SIZED[:1])['model_cache']
    assert first['list_hash'] != second['list_hash'] and len(first['list_hash']) == 16
    assert plan()['model_cache']['list_hash'] == first['list_hash']


def test_via_names_leaves_the_models_alone_without_the_cache():
    models = [{'name': 'a:1'}]
    assert model_cache.via_names(models, {'enabled': False}) is models


def test_a_registry_address_outside_the_egress_cidrs_is_refused_before_any_write():
    result = plan(workload_egress_cidrs=['192.0.2.0/24'])
    (error,) = errors_of(result, 'ollama_workload_egress_cidrs')
    assert REGISTRY in error['message'] and 'model cache could not reach' in error['message']
    assert '10.244.255.250/32' in error['fix']
    # Inside them: no error; a registry by host name (registry.ollama.ai) is only found out at pull time.
    assert not errors_of(plan(workload_egress_cidrs=['10.244.0.0/16']), 'ollama_workload_egress_cidrs')


def test_no_models_no_cache_objects():
    result = plan([])
    assert result['model_cache'] == {'enabled': False}
    assert any('no model cache is deployed' in w for w in result['warnings'])
