# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The in-process runner held to AnsibleModule: one small module, built as the collection's modules build theirs
(make_module with AnsibleModule, new_module with AnsibleK8SModule), runs in one real ansible-playbook both in the
controller (an action plugin of ControllerModuleAction) and as an ordinary module process (the same file without
the action plugin), for each case; the two task results must be equal. No mock: both sides are ansible's own
execution, the json callback reports what a registered result holds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
PLAYBOOK_BIN = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def _controller_python():
    """The interpreter ansible-playbook runs in (its #! line): module processes get the same one, so that
    messages naming the Python (requires) agree."""
    with open(PLAYBOOK_BIN) as script:
        return script.readline()[2:].strip()


PROBE = '''#!/usr/bin/python
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.llmops.ollama.plugins.module_utils.inprocess import make_module
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import new_module

SPEC = dict(
    name=dict(type='str', required=True, aliases=['title']),
    count=dict(type='int', default=1),
    ratio=dict(type='float'),
    flag=dict(type='bool', default=False),
    labels=dict(type='dict', default={}),
    items=dict(type='list', elements='str', default=[]),
    mode=dict(type='str', choices=['one', 'two'], default='one'),
    token=dict(type='str', no_log=True, fallback=(env_fallback, ['PROBE_TOKEN'])),
    pod=dict(type='str'),
    url=dict(type='str'),
    action=dict(type='str', default='exit'),
    old=dict(type='str', aliases=['older'], deprecated_aliases=[dict(name='older', version='9.0.0', collection_name='llmops.ollama')]),
    legacy=dict(type='str', removed_in_version='9.0.0', removed_from_collection='llmops.ollama'),
)


def main():
    if KIND == 'k8s':
        module = new_module(SPEC, supports_check_mode=True, mutually_exclusive=[('pod', 'url')],
                            required_if=[('mode', 'two', ['url'])])
    else:
        module = make_module(AnsibleModule, SPEC, supports_check_mode=False, mutually_exclusive=[('pod', 'url')],
                             required_if=[('mode', 'two', ['url'])])
    params = module.params
    action = params['action']
    if action == 'warn':
        module.warn('first warning')
        module.warn('second warning')
    if action == 'deprecate':
        module.deprecate('this option goes away', version='9.0.0', collection_name='llmops.ollama')
    if action == 'no_log_values':
        # AnsibleK8SModule keeps its AnsibleModule (and no_log_values) in _module, as ollama_client reaches it.
        getattr(module, '_module', module).no_log_values.add('read-by-the-module')
        module.exit_json(found='it was read-by-the-module', again=['read-by-the-module'])
    if action == 'requires':
        module.requires('kubernetes', '999.0.0', reason='to test requires')
    if action == 'fail':
        module.fail_json(msg='it failed for %s with %s' % (params['name'], params['token']), detail={'n': 1},
                         token_again=params['token'], same_as_secret=True, nothing=None)
    module.exit_json(
        changed=params['flag'], params=params, check_mode=module.check_mode, diff=module._diff,
        name_is=module.params.get('name'), as_tuple=(1, 2), secret_inside='x-%s-y' % params['token'],
        secret_bool=bool(params['token']), nested={'list': [params['token'], 'plain']})


if __name__ == '__main__':
    main()
'''

ACTION = '''from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util

from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import ControllerModuleAction

_spec = importlib.util.spec_from_file_location('%(name)s_module', %(path)r)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)


class ActionModule(ControllerModuleAction):
    MODULE = _module
'''

KINDS = ('k8s', 'plain')

# (task name, module args, task keywords); each runs once in process and once as a module process.
CASES = [
    ('exit', {'name': 'a', 'count': '3', 'ratio': '0.5', 'flag': 'yes', 'labels': {'k': 'v'}, 'items': 'x,y'}, {}),
    ('alias', {'title': 'by-alias'}, {}),
    ('alias and option', {'name': 'a', 'title': 'b'}, {}),
    ('deprecated alias', {'name': 'a', 'older': 'x'}, {}),
    ('deprecated option', {'name': 'a', 'legacy': 'x'}, {}),
    ('changed', {'name': 'a', 'flag': True}, {}),
    ('check mode', {'name': 'a'}, {'check_mode': True}),
    ('diff', {'name': 'a'}, {'diff': True}),
    ('warn', {'name': 'a', 'action': 'warn'}, {}),
    ('deprecate', {'name': 'a', 'action': 'deprecate'}, {}),
    ('fail', {'name': 'a', 'action': 'fail', 'token': 'S3cret-value'}, {}),
    ('no_log in the result', {'name': 'a', 'token': 'S3cret-value'}, {}),
    ('no_log from the environment', {'name': 'a'}, {'environment': {'PROBE_TOKEN': 'env-s3cret'}}),
    ('task no_log', {'name': 'a', 'token': 'S3cret-value'}, {'no_log': True}),
    ('no_log_values added by the module', {'name': 'a', 'action': 'no_log_values'}, {}),
    ('missing required', {}, {}),
    ('unknown option', {'name': 'a', 'colour': 'red'}, {}),
    ('bad type', {'name': 'a', 'count': 'many'}, {}),
    ('bad choice', {'name': 'a', 'mode': 'three'}, {}),
    ('mutually exclusive', {'name': 'a', 'pod': 'p', 'url': 'u'}, {}),
    ('required if', {'name': 'a', 'mode': 'two'}, {}),
    ('requires', {'name': 'a', 'action': 'requires'}, {}),  # AnsibleK8SModule's; AnsibleModule has none
]
ONLY = {'requires': ('k8s',)}


def _tasks(kind):
    tasks = []
    for case, args, keywords in CASES:
        if kind not in ONLY.get(case, KINDS):
            continue
        for how in ('inproc', 'process'):
            task = {'name': '%s %s %s' % (kind, case, how), 'probe_%s_%s' % (kind, how): args,
                    'ignore_errors': True}
            task.update(keywords)
            tasks.append(task)
    return tasks


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    """The json callback's report of one playbook run with every case both ways."""
    tmp = tmp_path_factory.mktemp('inprocess-parity')
    library, actions = tmp / 'library', tmp / 'action_plugins'
    library.mkdir()
    actions.mkdir()
    tasks = []
    for kind in KINDS:
        source = PROBE.replace('KIND ==', '%r ==' % kind)
        for how in ('inproc', 'process'):
            (library / ('probe_%s_%s.py' % (kind, how))).write_text(source)
        # Only the in-process name has an action plugin; the other goes through ansible's normal action.
        (actions / ('probe_%s_inproc.py' % kind)).write_text(
            ACTION % {'name': 'probe_%s' % kind, 'path': str(library / ('probe_%s_inproc.py' % kind))})
        tasks.extend(_tasks(kind))
    play = tmp / 'play.yml'
    play.write_text(json.dumps([{'name': 'Parity', 'hosts': 'localhost', 'connection': 'local',
                                 'gather_facts': False, 'tasks': tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'), ANSIBLE_LIBRARY=str(library),
               ANSIBLE_ACTION_PLUGINS=str(actions), ANSIBLE_STDOUT_CALLBACK='ansible.builtin.json',
               ANSIBLE_PYTHON_INTERPRETER=_controller_python(), ANSIBLE_NOCOLOR='1')
    env.pop('PROBE_TOKEN', None)
    done = subprocess.run([PLAYBOOK_BIN, '-i', 'localhost,', str(play)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    try:
        return json.loads(done.stdout[done.stdout.index('{'):])
    except ValueError:
        pytest.fail('ansible-playbook gave no report: rc=%s\n%s\n%s'
                    % (done.returncode, done.stdout[-3000:], done.stderr[-3000:]))


def _result(report, name):
    for task in report['plays'][0]['tasks']:
        if task['task']['name'] == name:
            return task['hosts']['localhost']
    raise AssertionError('no task %s in the report' % name)


@pytest.mark.parametrize('kind,case', [(kind, c[0]) for kind in KINDS for c in CASES
                                       if kind in ONLY.get(c[0], KINDS)])
def test_in_process_result_equals_the_module_process_result(report, kind, case):
    inproc = _result(report, '%s %s inproc' % (kind, case))
    process = _result(report, '%s %s process' % (kind, case))
    # The module's name is the one difference by construction: the tasks name the two files apart.
    assert inproc['action'] == 'probe_%s_inproc' % kind and process['action'] == 'probe_%s_process' % kind
    inproc = json.loads(json.dumps(inproc).replace('probe_%s_inproc' % kind, 'probe_%s_process' % kind))
    assert inproc == process


def test_the_cases_reach_what_they_test(report):
    """The comparison above would also hold if both sides went wrong the same way."""
    exit_ = _result(report, 'k8s exit inproc')
    assert exit_['params']['count'] == 3 and exit_['params']['items'] == ['x', 'y'] and exit_['changed'] is True
    assert exit_['as_tuple'] == [1, 2]
    assert _result(report, 'k8s check mode inproc')['check_mode'] is True
    assert _result(report, 'plain check mode inproc')['skipped'] is True
    assert _result(report, 'k8s diff inproc')['diff'] is True
    assert [w for w in json.dumps(_result(report, 'k8s warn inproc')['warnings']).split('"') if 'warning' in w]
    failed = _result(report, 'k8s fail inproc')
    assert failed['failed'] and 'S3cret-value' not in json.dumps(failed) and failed['same_as_secret'] is True
    assert 'env-s3cret' not in json.dumps(_result(report, 'k8s no_log from the environment inproc'))
    assert 'S3cret-value' not in json.dumps(_result(report, 'k8s task no_log inproc'))
    added = _result(report, 'k8s no_log_values added by the module inproc')
    assert 'read-by-the-module' not in json.dumps(added) and added['found'].startswith('it was ')
    for case in ('missing required', 'unknown option', 'bad type', 'bad choice', 'mutually exclusive',
                 'required if', 'requires'):
        assert _result(report, 'k8s %s inproc' % case)['failed'], case


# What the parity cases above cover of a module object; a module run in process may use no other attribute.
COVERED = {'params', 'check_mode', '_diff', 'exit_json', 'fail_json', 'warn', 'deprecate', 'requires',
           'no_log_values', '_module'}


def _in_process_sources():
    """The modules with a ControllerModuleAction plugin, and the module_utils they may hand their module to."""
    actions = os.path.join(REPO, 'plugins', 'action')
    paths = []
    for name in sorted(os.listdir(actions)):
        with open(os.path.join(actions, name)) as source:
            if 'ControllerModuleAction' in source.read():
                paths.append(os.path.join(REPO, 'plugins', 'modules', name))
    utils = os.path.join(REPO, 'plugins', 'module_utils')
    paths.extend(os.path.join(utils, name) for name in sorted(os.listdir(utils))
                 if name.endswith('.py') and name != 'inprocess.py')
    return paths


def test_every_module_attribute_the_in_process_modules_use_is_covered():
    """A module that starts using, say, module.run_command in process must get a parity case (and the runner
    the method) first. Pure source inspection, no execution."""
    used = {}
    for path in _in_process_sources():
        with open(path) as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == 'module':
                used.setdefault(node.attr, set()).add(os.path.basename(path))
            # getattr(module, 'name', ...) is a use as well
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'getattr'
                    and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id == 'module'
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                used.setdefault(node.args[1].value, set()).add(os.path.basename(path))
    assert {'params', 'exit_json', 'fail_json'} <= set(used)
    assert not set(used) - COVERED, dict((a, sorted(used[a])) for a in set(used) - COVERED)
