# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gate's decisions: keys (checked, never copied into the plan), routes, limits, the startup budget
against OLLAMA_LOAD_TIMEOUT, the key maps nginx reads and the rotation annotation. Pure functions only;
tests/integration/collection/test_gate_nginx.py runs the rendered config in front of a real Ollama."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import os
import re

import pytest
import yaml

from ansible_collections.llmops.ollama.plugins.module_utils import gate
from ansible_collections.llmops.ollama.plugins.module_utils.plan import Report, compute_plan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
KEY_A = 'a' * 20 + 'B' * 12 + '.x+y/z~_-='
KEY_B = gate.generate_key()


def node(name, gpus=1):
    labels = {'nvidia.com/gpu.present': 'true'} if gpus else {}
    return {'name': name, 'ready': True, 'schedulable': True, 'labels': labels, 'taints': [], 'zone': None,
            'gpu_capacity': gpus, 'gpu_allocatable': gpus, 'gpu_requested': 0, 'gpu_free': gpus,
            'gpu_product': None, 'gpu_memory_mib': 81559 if gpus else None, 'gpu_present_label': bool(gpus)}


def k3s_facts(rwx=False):
    """Like the simulator's k3s profile: two GPU nodes, a CPU server, local-path (and an NFS class)."""
    classes = [{'name': 'local-path', 'provisioner': 'rancher.io/local-path', 'default': not rwx,
                'binding_mode': 'WaitForFirstConsumer', 'allow_expansion': False, 'reclaim_policy': 'Delete',
                'rwx': False}]
    if rwx:
        classes.append({'name': 'nfs', 'provisioner': 'nfs.csi.k8s.io', 'default': True, 'binding_mode': 'Immediate',
                        'allow_expansion': True, 'reclaim_policy': 'Delete', 'rwx': True})
    nodes = [node('gpu-1'), node('gpu-2'), node('server', gpus=0)]
    return {
        'kubernetes_version': {'major': 1, 'minor': 34, 'git_version': 'v1.34.4+k3s1'}, 'distribution': 'k3s',
        'nodes': nodes, 'gpu_nodes': ['gpu-1', 'gpu-2'], 'storage_classes': classes,
        'default_storage_class': 'nfs' if rwx else 'local-path', 'csi_drivers': ['nfs.csi.k8s.io'],
        'runtime_classes': ['nvidia'], 'gpu_operator': False, 'warnings': [],
        'device_plugin': {'found': True, 'name': 'nvidia-device-plugin', 'namespace': 'kube-system', 'desired': 2,
                          'ready': 2, 'healthy': True, 'source': 'device-plugin'},
        'existing': {'namespace_exists': False, 'workloads': [], 'claims': [], 'services': [], 'pdbs': [],
                     'ollama_replicas': 0, 'ollama_pods': []},
    }


def gate_of(config=None, facts=None):
    result = compute_plan(facts or k3s_facts(), config or {})
    return result, result['gate']


def errors(result, variable=None):
    return [e for e in result['errors'] if variable is None or e['variable'] == variable]


def nginx_regex(entry):
    """The regex of one map line as nginx reads it ("~<regex>" <value>;)."""
    match = re.match(r'^"~(.*)" 1;$', entry)
    assert match, entry
    return re.compile(match.group(1))


# ---------------------------------------------------------------- defaults

def test_defaults_match_the_role_defaults():
    with open(os.path.join(REPO, 'roles', 'ollama_workload', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    # The plan reads these role settings from the inventory; unset, it assumes the role's defaults.
    assert defaults['ollama_workload_env_defaults']['OLLAMA_LOAD_TIMEOUT'] == gate.LOAD_TIMEOUT_DEFAULT
    assert defaults['ollama_workload_startup_seconds'] == gate.DEFAULTS['workload_startup_seconds']


def test_default_gate():
    result, g = gate_of()
    assert result['ok'], result['errors']
    assert g['port'] == 8080 and g['service_port'] == 11434 and g['ollama_host'] == '127.0.0.1:11434'
    assert g['image']['ref'] == 'docker.io/nginxinc/nginx-unprivileged:1.30.4'
    assert g['auth_required'] is True
    assert g['api_keys'] == {'given': 0, 'generate': True, 'source': 'generated'}
    assert g['secrets'] == {'api_keys': 'ollama-api-keys', 'admin': 'ollama-gate-admin'}
    assert g['config_map'] == 'ollama-gate' and g['admin_header'] == 'X-Llmops-Admin-Key'
    assert g['open_admin_endpoints'] == [] and g['max_body_size'] == '32m' and g['read_timeout'] == 3600
    assert g['startup_seconds'] == 600 and g['load_timeout_seconds'] == 600


def test_the_plan_holds_no_key():
    result, g = gate_of({'api_keys': [KEY_A, KEY_B]})
    assert result['ok'], result['errors']
    assert g['api_keys'] == {'given': 2, 'generate': True, 'source': 'given'}
    text = json.dumps(result)
    assert KEY_A not in text and KEY_B not in text


# ---------------------------------------------------------------- routes

def test_client_routes_and_closed_admin_routes():
    by_name = dict((r['name'], r) for r in gate_of()[1]['routes'])
    for name in ('generate', 'chat', 'embed', 'embeddings', 'show', 'tags', 'ps', 'version'):
        assert by_name[name] == {'name': name, 'path': '/api/' + name, 'exact': True, 'access': 'client',
                                 'buffer': True}
    assert by_name['v1'] == {'name': 'v1', 'path': '/v1/', 'exact': False, 'access': 'client', 'buffer': True}
    for name in ('pull', 'push', 'create', 'delete', 'copy'):
        assert by_name[name]['access'] == 'admin' and by_name[name]['path'] == '/api/' + name
    assert by_name['blobs'] == {'name': 'blobs', 'path': '/api/blobs/', 'exact': False, 'access': 'admin',
                                'buffer': False}
    assert len(by_name) == 15


def test_opening_admin_endpoints_by_name():
    result, g = gate_of({'gate_open_admin_endpoints': ['push', '/api/pull', 'pull']})
    assert result['ok'], result['errors']
    assert g['open_admin_endpoints'] == ['pull', 'push']
    access = dict((r['name'], r['access']) for r in g['routes'])
    assert access['pull'] == access['push'] == 'client' and access['delete'] == 'admin'
    assert any('opens /api/pull, /api/push to every client key' in w for w in result['warnings'])


def test_an_unknown_admin_endpoint_is_refused_with_the_valid_names():
    result = gate_of({'gate_open_admin_endpoints': ['pull', 'generate', 'pul']})[0]
    found = errors(result, 'ollama_gate_open_admin_endpoints')
    assert len(found) == 2 and not result['ok']
    assert "'pul'" in found[1]['message'] and 'pull, push, create, delete, copy, blobs' in found[1]['fix']


# ---------------------------------------------------------------- keys

@pytest.mark.parametrize('keys,needle', [
    (['short-key'], 'entry 1 is 9 characters long; a key needs at least 32'),
    ([KEY_A, 'x' * 31], 'entry 2 is 31 characters long'),
    (['a' * 31 + ' ' + 'b' * 8], 'entry 1 holds characters a Bearer token cannot carry'),
    (['k' * 40 + '"'], 'holds characters'),
    ([KEY_A, KEY_B, KEY_A], 'entries 1 and 3 are the same key'),
    ([12345678901234567890123456789012345], 'entry 1 is not a string'),
    ('one-key', 'must be a list'),
])
def test_bad_keys_are_refused_by_position_never_by_value(keys, needle):
    result = gate_of({'api_keys': keys})[0]
    found = errors(result, 'ollama_api_keys')
    assert found and not result['ok']
    assert any(needle in e['message'] for e in found), found
    for e in found:
        assert e['fix']
        for key in (keys if isinstance(keys, list) else [keys]):
            assert str(key) not in e['message'] + e['fix']


def test_keys_required_none_given_and_generation_off_is_refused():
    result = gate_of({'api_keys_generate': False})[0]
    (found,) = errors(result, 'ollama_api_keys')
    assert 'no client could authenticate' in found['message']
    assert 'ollama_api_keys_generate: true' in found['fix'] and 'ollama-api-keys' in found['fix']
    assert gate_of({'api_keys_generate': False, 'api_keys': [KEY_A]})[0]['ok']


def test_running_without_keys_says_so_loudly():
    result, g = gate_of({'auth_required': False, 'api_keys_generate': False, 'api_keys': [KEY_A]})
    assert result['ok'], result['errors']
    assert g['auth_required'] is False and g['api_keys']['source'] == 'none'
    assert any(w.startswith('THE OLLAMA API HAS NO AUTHENTICATION (ollama_auth_required: false)')
               for w in result['warnings'])
    assert any('ollama_api_keys is ignored' in w for w in result['warnings'])
    # the admin routes stay behind the admin key
    assert dict((r['name'], r['access']) for r in g['routes'])['pull'] == 'admin'
    opened = gate_of({'auth_required': False, 'gate_open_admin_endpoints': ['pull']})[0]
    assert any('EVERY CLIENT, WITHOUT A KEY' in w for w in opened['warnings'])


@pytest.mark.parametrize('variable,value', [
    ('auth_required', 'maybe'), ('api_keys_generate', 'sometimes'), ('gate_max_body_size', '32 MB'),
    ('gate_max_body_size', 0), ('gate_read_timeout', '1h'), ('gate_image_tag', 'latest'), ('gate_image_tag', ''),
    ('gate_image', 'nginx:1.30'),
])
def test_bad_gate_settings_name_the_variable(variable, value):
    result = gate_of({variable: value})[0]
    assert errors(result, 'ollama_' + variable), result['errors']


def test_generated_keys_are_long_random_and_valid():
    keys = set(gate.generate_key() for dummy in range(50))
    assert len(keys) == 50
    assert all(len(k) == 43 and gate.key_problem(k) is None for k in keys)


def test_keys_text_round_trip_skips_blanks_and_comments():
    text = gate.keys_text([KEY_A, KEY_B])
    assert text == KEY_A + '\n' + KEY_B + '\n'
    assert gate.parse_keys_text('# rotated 2026-12-01\n\n  %s  \n%s\n' % (KEY_A, KEY_B)) == [KEY_A, KEY_B]


# ---------------------------------------------------------------- the maps nginx reads

def test_client_map_matches_exactly_each_key_with_any_case_of_the_scheme():
    lines = [line for line in gate.client_map([KEY_A, KEY_B]).splitlines() if not line.startswith('#')]
    assert len(lines) == 2
    first = nginx_regex(lines[0])
    for header in ('Bearer ' + KEY_A, 'bearer ' + KEY_A, 'BEARER  ' + KEY_A):
        assert first.search(header), header
    for header in ('Bearer ' + KEY_A.lower(), 'Bearer ' + KEY_A + 'x', 'Bearer x' + KEY_A, KEY_A,
                   'Basic ' + KEY_A, 'Bearer ' + KEY_A.replace('.', 'Q'), 'Bearer ' + KEY_A.replace('+', '')):
        assert not first.search(header), header
    assert '\\' not in gate.client_map([KEY_A])  # nginx's quoted strings would eat a backslash


def test_admin_map_matches_the_header_value_exactly():
    (line,) = [x for x in gate.admin_map(KEY_B).splitlines() if not x.startswith('#')]
    regex = nginx_regex(line)
    assert regex.search(KEY_B) and not regex.search(KEY_B + 'x') and not regex.search('Bearer ' + KEY_B)


def test_fingerprint_changes_with_any_key_and_hides_them():
    admin = gate.generate_key()
    one = gate.fingerprint(admin, gate.client_map([KEY_A]))
    assert one == gate.fingerprint(admin, gate.client_map([KEY_A]))
    assert one != gate.fingerprint(admin, gate.client_map([KEY_A, KEY_B]))
    assert one != gate.fingerprint(gate.generate_key(), gate.client_map([KEY_A]))
    assert re.match(r'^[0-9a-f]{64}$', one) and KEY_A not in one


# ---------------------------------------------------------------- startup budget and probes

@pytest.mark.parametrize('text,seconds', [
    ('10m', 600), ('1h30m', 5400), ('90s', 90), ('1.5h', 5400), ('500ms', 0.5), ('600', 600), ('0', math.inf),
    ('-1', math.inf), ('-5m', math.inf), (600, 600), (None, 300), ('', 300), ('forever', None), ('10 m', None),
    ('5x', None),
])
def test_ollama_reads_its_load_timeout_like_this(text, seconds):
    assert gate.ollama_load_timeout(text) == seconds


def test_a_startup_budget_below_the_load_timeout_is_refused():
    result = gate_of({'workload_startup_seconds': 300})[0]
    (found,) = errors(result, 'ollama_workload_startup_seconds')
    assert '300 s' in found['message'] and "OLLAMA_LOAD_TIMEOUT '10m' in ollama_workload_env_defaults (600 s)" \
        in found['message']
    assert 'at least 600' in found['fix']
    lowered = gate_of({'workload_startup_seconds': 300, 'workload_env': {'OLLAMA_LOAD_TIMEOUT': '4m'}})[0]
    assert lowered['ok'], lowered['errors']
    raised = gate_of({'workload_env': {'OLLAMA_LOAD_TIMEOUT': '30m'}})[0]
    (found,) = errors(raised, 'ollama_workload_startup_seconds')
    assert "'30m' in ollama_workload_env" in found['message'] and 'at least 1800' in found['fix']


@pytest.mark.parametrize('env,needle', [
    ({'OLLAMA_LOAD_TIMEOUT': 'forever'}, 'not a duration Ollama reads'),
    ({'OLLAMA_LOAD_TIMEOUT': '0'}, 'means no limit'),
])
def test_a_load_timeout_no_budget_can_cover_is_refused(env, needle):
    (found,) = errors(gate_of({'workload_env': env})[0], 'ollama_workload_env')
    assert needle in found['message']


def test_load_timeout_from_replaced_defaults_or_ollamas_own():
    g = gate_of({'workload_env_defaults': {'OLLAMA_LOAD_TIMEOUT': '2m'}, 'workload_startup_seconds': 120})[1]
    assert g['load_timeout_seconds'] == 120
    # defaults replaced without the setting: Ollama's 5m
    result, g = gate_of({'workload_env_defaults': {'OLLAMA_KEEP_ALIVE': '1h'}, 'workload_startup_seconds': 200})
    assert "unset (Ollama's 5m)" in errors(result, 'ollama_workload_startup_seconds')[0]['message']


def test_probes_cover_the_budget_and_readiness_is_never_liveness():
    g = gate_of({'workload_startup_seconds': 905, 'workload_env': {'OLLAMA_LOAD_TIMEOUT': '15m'}})[1]
    p = g['probes']
    assert p['ollama_startup']['failure_threshold'] * p['ollama_startup']['period'] >= 905
    assert p['ollama_startup']['path'] == p['gate_readiness']['path'] == '/llmops/readyz'
    assert p['ollama_liveness']['path'] == '/llmops/livez' and p['gate_liveness']['path'] == '/llmops/healthz'
    # Each container's readiness differs from its liveness (kube-score pod-probes-identical).
    assert p['ollama_readiness']['path'] == '/llmops/readyz' != p['ollama_liveness']['path']
    assert p['gate_readiness']['path'] != p['gate_liveness']['path']


# ---------------------------------------------------------------- rotation without downtime

def test_two_replicas_rotate_keys_with_one_ready_endpoint():
    # local-path (RWO): a StatefulSet rolling one pod at a time, the next once the last is Ready
    result, g = gate_of({'replicas': 2})
    assert result['ok'], result['errors']
    assert result['workload_kind'] == 'StatefulSet' and result['strategy'] == 'RollingUpdate'
    assert g['rotation_keeps_an_endpoint'] is True
    assert not any('restarts the only Ollama pod' in w for w in result['warnings'])
    # an RWX class: a Deployment that never takes both down (no spare GPU: maxSurge 0, maxUnavailable 1)
    result, g = gate_of({'replicas': 2}, facts=k3s_facts(rwx=True))
    assert result['ok'], result['errors']
    assert result['workload_kind'] == 'Deployment'
    assert result['rolling_update'] == {'max_surge': 0, 'max_unavailable': 1}
    assert g['rotation_keeps_an_endpoint'] is True


def test_one_replica_warns_that_a_rotation_restarts_it():
    result = gate_of()[0]
    assert any('restarts the only Ollama pod' in w for w in result['warnings'])


def test_check_rollout_of_a_recreate_with_several_replicas():
    report = Report()
    assert gate.check_rollout(3, 'Deployment', 'Recreate', None, report) is False
    assert any('every replica down at once' in w for w in report.warnings)


# ---------------------------------------------------------------- what the Secrets hold (gate_keys)

def counter_keys():
    made = []

    def make():
        made.append('made-%02d-' % len(made) + 'k' * 32)
        return made[-1]
    return made, make


def secret(data, source=None):
    return {'data': data, 'annotations': {gate.KEYS_SOURCE_ANNOTATION: source} if source else {}}


def test_first_run_generates_the_admin_key_and_one_client_key():
    made, make = counter_keys()
    want = gate.plan_secrets(None, None, [], True, True, make_key=make)
    assert want['generated'] == ['admin', 'api_keys'] and len(made) == 2
    assert want['admin']['data'] == {'key': made[0], 'admin.map': gate.admin_map(made[0])}
    assert want['client']['data'] == {'keys': made[1] + '\n', 'keys.map': gate.client_map([made[1]])}
    assert want['client']['annotations'] == {'llmops.ollama/keys-source': 'generated'}
    assert (want['key_count'], want['source']) == (1, 'generated')


def test_later_runs_keep_what_was_generated_or_written_by_hand():
    made, make = counter_keys()
    admin = secret({'key': KEY_B, 'admin.map': 'stale'})
    by_hand = secret({'keys': '%s\n# added by hand\n%s\n' % (KEY_A, KEY_B)}, 'generated')
    want = gate.plan_secrets(admin, by_hand, [], True, True, make_key=make)
    assert made == [] and want['generated'] == []
    assert want['admin']['data'] == {'key': KEY_B, 'admin.map': gate.admin_map(KEY_B)}  # the map follows the key
    assert want['client']['data']['keys.map'] == gate.client_map([KEY_A, KEY_B]) and want['key_count'] == 2


def test_given_keys_replace_the_secrets_and_removing_them_generates_a_new_one():
    made, make = counter_keys()
    admin = secret({'key': KEY_B})
    want = gate.plan_secrets(admin, secret({'keys': 'old-' + 'o' * 40}, 'generated'), [KEY_A], True, True,
                             make_key=make)
    assert want['client']['data']['keys'] == KEY_A + '\n' and want['source'] == 'given' and made == []
    gone = gate.plan_secrets(admin, secret({'keys': KEY_A + '\n'}, 'given'), [], True, True, make_key=make)
    assert gone['client']['data']['keys'] == made[0] + '\n' and gone['generated'] == ['api_keys']
    assert 'old keys no longer pass the gate' in gone['warnings'][0]


def test_without_client_keys_only_the_admin_secret_is_managed():
    want = gate.plan_secrets(secret({'key': KEY_B}), None, [], True, False)
    assert want['client'] is None and want['generated'] == [] and want['source'] == 'none'


@pytest.mark.parametrize('admin,client,keys,generate,needle', [
    (secret({'key': 'short'}), None, [], True, 'admin Secret'),
    (None, secret({'keys': KEY_A + '\nnot a key\n'}, 'generated'), [], True, 'line 2 of the "keys"'),
    (None, None, [KEY_A, 'short'], True, 'api_keys entries 2'),
    (None, None, [], False, 'no client key'),
])
def test_unusable_keys_stop_before_any_write_without_showing_them(admin, client, keys, generate, needle):
    with pytest.raises(gate.GateKeyError) as raised:
        gate.plan_secrets(admin, client, keys, generate, True)
    assert needle in str(raised.value) and 'Fix:' in str(raised.value)
    assert KEY_A not in str(raised.value) and 'not a key' not in str(raised.value)
