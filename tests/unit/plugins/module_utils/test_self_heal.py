# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan's self-heal section: the sidecar's list (names, pull names, insecure flags, pinned IDs as the model_pull
role and `ollama list` have them), whether it pulls, and the refusals. Pure functions; the sidecar itself runs
against real Ollama in tests/integration/collection/test_self_heal.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import self_heal
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import parse_wanted, _is_insecure
from ansible_collections.llmops.ollama.plugins.module_utils.plan import Report, compute_plan, normalize_models

from test_plan import gpu_node, k3s_facts, storage_class

DIGEST = 'sha256:' + 'ab12' * 16
REGISTRY = '10.254.255.250:5000'


def plan(models, **config):
    return self_heal.plan_self_heal(dict(self_heal.DEFAULTS, **config), 'ollama', models,
                                    {'access_mode': config.pop('access_mode', 'ReadWriteOnce')}, Report())


def normalized(names):
    return normalize_models(names, Report())


def test_the_list_names_each_model_as_ollama_lists_it_and_pulls_it_as_model_pull_does():
    given = ['llama3.2:3b', 'registry.ollama.ai/library/qwen2.5:7b', 'hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M',
             {'name': REGISTRY + '/library/tiny-a', 'digest': DIGEST}, 'http://plain.example:8080/ns/m:1']
    models = normalized(given)
    heal = self_heal.heal_models(models, [REGISTRY])
    wanted, errors = parse_wanted(models)
    assert not errors
    assert [h['name'] for h in heal] == ['llama3.2:3b', 'qwen2.5:7b', 'hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M',
                                         REGISTRY + '/library/tiny-a:latest', 'plain.example:8080/ns/m:1']
    # The same pull name and insecure flag as the model_pull role (ollama_client.sync_models) uses.
    assert [h['pull_name'] for h in heal] == [w['pull_name'] for w in wanted]
    assert [h['insecure'] for h in heal] == [_is_insecure(w, False, [REGISTRY]) for w in wanted]
    assert [h['insecure'] for h in heal] == [False, False, False, True, True]
    assert [h['digest_id'] for h in heal] == [None, None, None, 'ab12ab12ab12', None]


def test_the_list_text_is_one_line_a_model():
    models = normalized([{'name': REGISTRY + '/library/tiny-a', 'digest': DIGEST}, 'llama3.2:3b'])
    text = self_heal.list_text(self_heal.heal_models(models, [REGISTRY]))
    lines = text.splitlines()
    assert lines[0].startswith('#')
    assert lines[1:] == [REGISTRY + '/library/tiny-a:latest ' + REGISTRY + '/library/tiny-a:latest 1 ab12ab12ab12',
                         'llama3.2:3b llama3.2:3b 0 -']
    assert text.endswith('\n')


def test_pulls_only_on_a_store_of_its_own():
    assert plan([], access_mode='ReadWriteOnce')['pulls'] is True
    assert plan([], access_mode='ReadWriteMany')['pulls'] is False


def test_the_plan_carries_the_section_and_its_default_is_on():
    result = compute_plan(k3s_facts(nodes=[gpu_node('a', taints=[]), gpu_node('b', taints=[])]),
                          {'replicas': 2, 'models': ['llama3.2:3b'], 'insecure_registries': [REGISTRY]})
    assert result['ok'], result['errors']
    heal = result['self_heal']
    assert heal['enabled'] and heal['pulls']
    assert heal['config_map'] == 'ollama-self-heal' and heal['container'] == 'models'
    assert heal['marker'].startswith(heal['state_dir'] + '/')
    assert heal['insecure_registries'] == [REGISTRY]
    assert heal['list'].splitlines()[1:] == ['llama3.2:3b llama3.2:3b 0 -']


def test_a_shared_store_waits_for_the_models_instead_of_pulling():
    nfs = storage_class('nfs', 'nfs.csi.k8s.io', default=True, binding='Immediate', rwx=True)
    result = compute_plan(k3s_facts(nodes=[gpu_node('a', taints=[]), gpu_node('b', taints=[])], classes=[nfs],
                                    default='nfs', csi_drivers=['nfs.csi.k8s.io']), {'replicas': 2})
    assert result['ok'], result['errors']
    assert result['storage']['access_mode'] == 'ReadWriteMany'
    assert result['self_heal']['enabled'] and not result['self_heal']['pulls']


@pytest.mark.parametrize('config, variable', [
    ({'self_heal': 'sometimes'}, 'ollama_self_heal'),
    ({'self_heal_interval': 0}, 'ollama_self_heal_interval'),
    ({'self_heal_interval': '10s'}, 'ollama_self_heal_interval'),
    ({'self_heal_pull_timeout': 5}, 'ollama_self_heal_pull_timeout'),
    ({'insecure_registries': 'a b'}, 'ollama_insecure_registries'),
    ({'insecure_registries': ['http://reg:5000']}, 'ollama_insecure_registries'),
    ({'insecure_registries': {'reg': 1}}, 'ollama_insecure_registries'),
])
def test_bad_settings_name_the_variable_and_the_fix(config, variable):
    result = compute_plan(k3s_facts(), config)
    errors = [e for e in result['errors'] if e['variable'] == variable]
    assert len(errors) == 1, result['errors']
    assert errors[0]['fix']


def test_false_turns_it_off_and_true_strings_are_read():
    assert compute_plan(k3s_facts(), {'self_heal': False})['self_heal']['enabled'] is False
    assert compute_plan(k3s_facts(), {'self_heal': 'yes'})['self_heal']['enabled'] is True
    assert compute_plan(k3s_facts(), {'self_heal_interval': '15'})['self_heal']['interval'] == 15


def test_registries_are_kept_once_in_order():
    report = Report()
    assert self_heal.check_insecure_registries(['b:1', 'a', 'b:1', ' [::1]:5000 '], report) == ['b:1', 'a', '[::1]:5000']
    assert not report.errors


def test_kubernetes_without_native_sidecars_is_refused_unless_self_heal_is_off():
    old = {'major': 1, 'minor': 28, 'git_version': 'v1.28.9'}
    result = compute_plan(k3s_facts(kubernetes_version=old), {})
    errors = [e for e in result['errors'] if e['variable'] == 'ollama_self_heal']
    assert len(errors) == 1 and '1.29' in errors[0]['message'] and 'ollama_self_heal: false' in errors[0]['fix']
    assert not [e for e in compute_plan(k3s_facts(kubernetes_version=old), {'self_heal': False})['errors']
                if e['variable'] == 'ollama_self_heal']
