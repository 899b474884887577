"""The role settings checks that argument specs cannot express (module_utils/settings_checks.py): pure logic,
table-driven, no cluster. Each bad value must give one problem naming the variable and the fix."""

import json

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import settings_checks as sc

PLAN = {'ok': True, 'storage': {}, 'affinity': {}, 'replicas': 2, 'gpus_per_pod': 1,
        'rolling_update': {'max_surge': 0}}

WORKLOAD = {
    'ollama_workload_plan': PLAN,
    'ollama_workload_data_path': '/var/lib/ollama',
    'ollama_workload_uid': 10001,
    'ollama_workload_gid': 10001,
    'ollama_workload_startup_seconds': 600,
    'ollama_workload_rollout_timeout': 900,
    'ollama_workload_resources': {'requests': {'cpu': '1'}, 'limits': {}},
    'ollama_workload_gate_resources': {'requests': {}, 'limits': {}},
    'ollama_workload_self_heal_resources': {'requests': {}},
    'ollama_workload_model_cache_resources': {'requests': {'cpu': '100m'}, 'limits': {}},
    'ollama_workload_ingress_annotations': {'cert-manager.io/cluster-issuer': 'le'},
}


def test_sound_workload_settings_have_no_problem():
    assert sc.settings_problems('ollama_workload', WORKLOAD) == []


WORKLOAD_BAD = [
    ({'ollama_workload_plan': {}}, 'ollama_workload_plan', 'run playbooks/preflight.yml'),
    ({'ollama_workload_plan': dict(PLAN, ok=False)}, 'ollama_workload_plan', 'run playbooks/preflight.yml'),
    ({'ollama_workload_data_path': 'var/lib/ollama'}, 'ollama_workload_data_path must be an absolute path',
     '/var/lib/ollama'),
    ({'ollama_workload_data_path': '/var/lib/ollama/'}, 'ollama_workload_data_path', '/var/lib/ollama'),
    ({'ollama_workload_uid': 0}, 'ollama_workload_uid and ollama_workload_gid', 'set both to 10001'),
    ({'ollama_workload_gid': -5}, 'ollama_workload_uid and ollama_workload_gid', 'set both to 10001'),
    ({'ollama_workload_startup_seconds': 0}, 'ollama_workload_startup_seconds must be a whole number',
     'ollama_workload_startup_seconds: 600'),
    ({'ollama_workload_rollout_timeout': True}, 'ollama_workload_rollout_timeout', 'ollama_workload_rollout_timeout: 600'),
    ({'ollama_workload_resources': {'requests': {}, 'limit': {}}}, 'ollama_workload_resources must be a mapping',
     'ollama_workload_resources: {requests'),
    ({'ollama_workload_resources': {'limits': {'nvidia.com/gpu': 1}}}, 'ollama_workload_resources.limits sets nvidia',
     'set ollama_gpus_per_pod'),
    ({'ollama_workload_gate_resources': {'cpu': '1'}}, 'ollama_workload_gate_resources must be a mapping',
     'ollama_workload_gate_resources: {requests'),
    ({'ollama_workload_self_heal_resources': []}, 'ollama_workload_self_heal_resources must be a mapping',
     'ollama_workload_self_heal_resources: {requests'),
    ({'ollama_workload_model_cache_resources': {'cpu': '1'}}, 'ollama_workload_model_cache_resources must be a mapping',
     'ollama_workload_model_cache_resources: {requests'),
    ({'ollama_workload_ingress_annotations': {'nginx.ingress.kubernetes.io/server-snippet': 'x'}},
     'ollama_workload_ingress_annotations sets nginx.ingress.kubernetes.io/server-snippet', 'remove it'),
    ({'ollama_workload_ingress_annotations': ['a']}, 'ollama_workload_ingress_annotations must be a mapping',
     'ollama_workload_ingress_annotations: {}'),
]


@pytest.mark.parametrize('change, named, fix', WORKLOAD_BAD, ids=[str(case[0]) for case in WORKLOAD_BAD])
def test_a_bad_workload_setting_gives_one_problem_naming_the_variable_and_the_fix(change, named, fix):
    problems = sc.settings_problems('ollama_workload', dict(WORKLOAD, **change))
    assert len(problems) == 1, problems
    assert named in problems[0] and 'Fix: ' in problems[0] and fix in problems[0].split('Fix: ', 1)[1], problems


def test_every_bad_workload_setting_is_reported_at_once():
    bad = dict(WORKLOAD, ollama_workload_uid=0, ollama_workload_data_path='x',
               ollama_workload_startup_seconds=0)
    assert len(sc.settings_problems('ollama_workload', bad)) == 3


@pytest.mark.parametrize('value', ['', None])
def test_ha_policy_has_no_setting_of_its_own(value):
    assert sc.settings_problems('ha_policy', {'ha_policy_plan': PLAN, 'ha_policy_gpu_quota': value}) == []


@pytest.mark.parametrize('value', ['auto', 2, '0'])
def test_the_retired_gpu_quota_names_the_plan_variable_to_set(value):
    (problem,) = sc.settings_problems('ha_policy', {'ha_policy_plan': PLAN, 'ha_policy_gpu_quota': value})
    assert problem.startswith('ha_policy_gpu_quota is retired')
    assert 'Fix: set ollama_gpu_quota: %s' % json.dumps(value) in problem


@pytest.mark.parametrize('plan', [{}, None, dict(PLAN, ok=False), {'ok': True}])
def test_ha_policy_without_a_sound_plan_says_to_run_the_preflight(plan):
    (problem,) = sc.settings_problems('ha_policy', {'ha_policy_plan': plan, 'ha_policy_gpu_quota': 'auto'})
    assert problem.startswith('ha_policy_plan is missing or not ok. Fix: run playbooks/preflight.yml')


def test_no_role_and_storage_provisioner_check_nothing_here():
    assert sc.settings_problems(None, {}) == []
    assert sc.settings_problems('storage_provisioner', {}) == []
