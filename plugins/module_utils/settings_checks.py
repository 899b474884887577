# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a role's argument spec cannot say about its own settings: patterns, names the role owns, and rules that
read the plan. Each problem names the variable and the fix.

The types and choices come from the role's meta/argument_specs.yml (the k8s_dry_run action plugin validates them
first, so the values here have their declared types); the cluster, the settings of several roles and the Ollama
environment (ollama_workload_env, as Ollama reads it: env_settings.py) are the plan's (plan.py). k8s_dry_run
runs these checks before its dry run (``settings_of``), in the check play of playbooks/site.yml, before the first
write.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

ABSOLUTE_PATH = re.compile(r'^/[^\s]*[^/\s]$')
WHOLE_ABOVE_ZERO = re.compile(r'^[1-9][0-9]*$')

RESOURCE_FIXES = {
    'ollama_workload_resources': '{requests: {cpu: "1", memory: 4Gi}, limits: {}}',
    'ollama_workload_gate_resources': ('{requests: {cpu: 50m, memory: 64Mi, ephemeral-storage: 64Mi}, limits: '
                                       '{cpu: "1", memory: 256Mi, ephemeral-storage: 1Gi}}'),
    'ollama_workload_self_heal_resources': '{requests: {cpu: 10m, memory: 32Mi}, limits: {cpu: 500m, memory: 256Mi}}',
    'ollama_workload_model_cache_resources': '{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: "2", memory: 512Mi}}',
}

# The variables each role's check reads, besides its plan.
VARIABLES = {
    'ollama_workload': ['ollama_workload_plan', 'ollama_workload_data_path',
                        'ollama_workload_uid', 'ollama_workload_gid', 'ollama_workload_startup_seconds',
                        'ollama_workload_rollout_timeout', 'ollama_workload_ingress_annotations']
    + sorted(RESOURCE_FIXES),
    'ha_policy': ['ha_policy_plan', 'ha_policy_gpu_quota'],
    'storage_provisioner': [],
}


def _json(value):
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _plan_ok(plan, key):
    return isinstance(plan, dict) and bool(plan.get('ok')) and key in plan


def _whole_above_zero(value):
    return not isinstance(value, bool) and WHOLE_ABOVE_ZERO.match(str(value)) is not None


def _resources(problems, name, value):
    if not isinstance(value, dict) or set(value).difference(('requests', 'limits')):
        problems.append('%s must be a mapping with requests and limits only, got %s. Fix: set %s: %s'
                        % (name, _json(value), name, RESOURCE_FIXES[name]))
        return
    if name != 'ollama_workload_resources':
        return
    for part in ('requests', 'limits'):
        if 'nvidia.com/gpu' in (value.get(part) or {}):
            problems.append('%s.%s sets nvidia.com/gpu, which the plan owns (requests = limits = '
                            'ollama_gpus_per_pod). Fix: remove it and set ollama_gpus_per_pod' % (name, part))


def ollama_workload_problems(settings):
    """Every problem with the plan and ollama_workload's own settings."""
    if not _plan_ok(settings.get('ollama_workload_plan'), 'storage'):
        return ['ollama_workload_plan is missing or not ok. Fix: run playbooks/preflight.yml (role '
                'llmops.ollama.gpu_preflight) earlier in the same run (playbooks/site.yml does); its errors name the '
                'variable to change.']
    problems = []
    path = settings.get('ollama_workload_data_path')
    if not isinstance(path, str) or not ABSOLUTE_PATH.match(path):
        problems.append('ollama_workload_data_path must be an absolute path, got %s. Fix: set '
                        'ollama_workload_data_path: /var/lib/ollama' % _json(path))
    uid, gid = settings.get('ollama_workload_uid'), settings.get('ollama_workload_gid')
    if not (_whole_above_zero(uid) and _whole_above_zero(gid)):
        problems.append('ollama_workload_uid and ollama_workload_gid must be whole numbers above 0 (the restricted '
                        'level refuses root), got %s/%s. Fix: set both to 10001' % (uid, gid))
    for name in ('ollama_workload_startup_seconds', 'ollama_workload_rollout_timeout'):
        if not _whole_above_zero(settings.get(name)):
            problems.append('%s must be a whole number of seconds above 0, got %s. Fix: set %s: 600'
                            % (name, _json(settings.get(name)), name))
    for name in RESOURCE_FIXES:
        _resources(problems, name, settings.get(name))
    annotations = settings.get('ollama_workload_ingress_annotations')
    if not isinstance(annotations, dict):
        problems.append('ollama_workload_ingress_annotations must be a mapping of annotation names to values, got '
                        '%s. Fix: set ollama_workload_ingress_annotations: {}' % _json(annotations))
    else:
        for key in annotations:
            if 'snippet' in str(key):
                problems.append('ollama_workload_ingress_annotations sets %s, a configuration snippet that can route '
                                'around the paths the Ingress allows. Fix: remove it; ollama_workload_ingress_paths '
                                'chooses the routes, and the gate in each pod authenticates every path' % key)
    return problems


def ha_policy_problems(settings):
    """Every problem with the plan and ha_policy's own (retired) setting."""
    plan = settings.get('ha_policy_plan')
    if not _plan_ok(plan, 'affinity'):
        return ['ha_policy_plan is missing or not ok. Fix: run playbooks/preflight.yml (role '
                'llmops.ollama.gpu_preflight) earlier in the same run, or pass ha_policy_plan; its errors name the '
                'variable to change.']
    raw = settings.get('ha_policy_gpu_quota')
    if raw in (None, False) or str(raw).strip() == '':
        return []
    return ['ha_policy_gpu_quota is retired: the plan decides the GPU quota, got %s. Fix: set ollama_gpu_quota: %s '
            'in the inventory instead (roles/gpu_preflight/README.md) and remove ha_policy_gpu_quota.'
            % (_json(raw), _json(raw))]


CHECKS = {
    'ollama_workload': ollama_workload_problems,
    'ha_policy': ha_policy_problems,
    # Its argument spec says all there is; the plan checks the storage settings.
    'storage_provisioner': lambda settings: [],
}


def settings_problems(role, settings):
    """The problems of role's settings (a name of CHECKS; None or '' checks nothing)."""
    if not role:
        return []
    return CHECKS[role](settings or {})
