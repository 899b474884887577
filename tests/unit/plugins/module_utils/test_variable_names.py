# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unknown ollama_* and role-prefixed variable names: the closest known name in a warning, or an error in
strict mode (pure logic, and the names read from this checkout's roles and playbooks)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.plan import config_from_role_vars
from ansible_collections.llmops.ollama.plugins.module_utils.variable_names import check_names, names_in_text
from ansible_collections.llmops.ollama.plugins.plugin_utils.known_variables import COLLECTION_ROOT, known_variables

KNOWN = {'ollama_replicas', 'ollama_namespace', 'model_pull_timeout', 'ollama_kubeconfig'}


def test_a_misspelt_name_warns_with_the_closest_known_name():
    warnings, errors = check_names(['ollama_replica', 'ollama_replicas', 'inventory_hostname'], KNOWN)
    assert errors == []
    assert warnings == ['unknown variable ollama_replica is ignored (did you mean ollama_replicas?); '
                        'ollama_strict_variables: true makes this an error']


def test_role_prefixed_names_are_checked_too():
    warnings, errors = check_names(['model_pull_timout'], KNOWN)
    assert errors == [] and len(warnings) == 1 and 'did you mean model_pull_timeout?' in warnings[0]


def test_strict_turns_each_unknown_name_into_a_plan_error_with_the_fix():
    warnings, errors = check_names(['ollama_replica', 'ollama_zzzzzzzzzzzzzzzzzzzz'], KNOWN, strict=True)
    assert warnings == []
    assert errors[0] == {'variable': 'ollama_replica',
                         'message': 'no role or playbook of llmops.ollama reads ollama_replica '
                                    '(did you mean ollama_replicas?).',
                         'fix': 'rename it to ollama_replicas, or remove it'}
    assert errors[1]['variable'] == 'ollama_zzzzzzzzzzzzzzzzzzzz' and errors[1]['fix'] == 'remove it'


def test_the_plan_alone_drops_the_misspelt_name_which_is_why_the_names_are_checked_first():
    assert config_from_role_vars({'ollama_replica': 3}) == {}


def test_known_names_come_from_the_roles_playbooks_and_the_plan():
    known = known_variables()
    for name in ('ollama_replicas', 'ollama_kubeconfig', 'ollama_k8s_api_key', 'ollama_strict_variables',
                 'ollama_ingress_host', 'gpu_preflight_plan', 'model_pull_admin_key', 'ollama_workload_validated',
                 'ollama_verify_allow_cpu', 'storage_provisioner_local_path_image'):
        assert name in known, name
    assert 'ollama_replica' not in known


@pytest.mark.parametrize('pattern', ['inventories/*/group_vars/*.yml', 'extensions/molecule/*/inventory/group_vars/*.yml',
                                     'extensions/molecule/*/*.yml', 'roles/*/README.md', 'docs/*.md', 'README.md'])
def test_the_shipped_inventories_and_docs_name_only_known_variables(pattern):
    # A warning on the collection's own inventories or documented names would teach users to ignore it.
    known = known_variables()
    unknown = {}
    for path in glob.glob(os.path.join(COLLECTION_ROOT, pattern)):
        with open(path) as handle:
            names = sorted(n for n in names_in_text(handle.read()) if n not in known)
        if names:
            unknown[os.path.relpath(path, COLLECTION_ROOT)] = names
    assert unknown == {}
