"""The role settings checks that argument specs cannot express (module_utils/settings_checks.py): pure logic,
table-driven, no cluster. Each bad value must give one problem naming the variable and the fix."""

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


QUOTA = [
    # (quota, plan changes, problem expected)
    ('', {}, False),
    (None, {}, False),
    ('auto', {}, False),
    (' auto ', {}, False),
    (2, {}, False),
    ('4', {}, False),
    (1, {}, True),
    ('two', {}, True),
    ('-2', {}, True),
    (2, {'rolling_update': {'max_surge': 1}}, True),
    (3, {'rolling_update': {'max_surge': 1}}, False),
    (3, {'gpus_per_pod': 2}, True),
]


@pytest.mark.parametrize('quota, plan, bad', QUOTA, ids=['%r-%r' % case[:2] for case in QUOTA])
def test_the_gpu_quota_must_cover_the_replicas_and_a_surge_pod(quota, plan, bad):
    problems = sc.settings_problems('ha_policy', {'ha_policy_plan': dict(PLAN, **plan), 'ha_policy_gpu_quota': quota})
    assert bool(problems) == bad, problems
    if bad:
        (problem,) = problems
        needed = sc.gpu_quota_needed(dict(PLAN, **plan))[0]
        assert problem.startswith('ha_policy_gpu_quota is ') and 'Fix: set ha_policy_gpu_quota to "auto", to %d' \
            % needed in problem, problem


def test_the_surge_pod_is_named_in_the_quota_problem():
    (problem,) = sc.settings_problems('ha_policy', {'ha_policy_plan': dict(PLAN, rolling_update={'max_surge': 1}),
                                                    'ha_policy_gpu_quota': 1})
    assert 'at least 3 (2 replica(s) x 1 GPU(s) + one surge pod)' in problem


@pytest.mark.parametrize('plan', [{}, None, dict(PLAN, ok=False), {'ok': True}])
def test_ha_policy_without_a_sound_plan_says_to_run_the_preflight(plan):
    (problem,) = sc.settings_problems('ha_policy', {'ha_policy_plan': plan, 'ha_policy_gpu_quota': 'auto'})
    assert problem.startswith('ha_policy_plan is missing or not ok. Fix: run playbooks/preflight.yml')


def test_no_role_and_storage_provisioner_check_nothing_here():
    assert sc.settings_problems(None, {}) == []
    assert sc.settings_problems('storage_provisioner', {}) == []
