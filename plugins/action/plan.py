# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan is a pure function: compute it on the controller instead of shipping a module to run it.

Without ``facts`` it reads them itself with the cluster_info module (in this process on a local connection)
and keeps them in its result, so thousands of nodes' facts never pass through templating on their way from
one task to the next.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import HAS_KUBERNETES_CORE
from ansible_collections.llmops.ollama.plugins.module_utils.plan import (
    DEFAULTS, compute_plan, config_from_role_vars, describe_errors)
from ansible_collections.llmops.ollama.plugins.module_utils.values import as_bool
from ansible_collections.llmops.ollama.plugins.module_utils.variable_names import PREFIXES, STRICT_VARIABLE, check_names
from ansible_collections.llmops.ollama.plugins.plugin_utils.known_variables import known_variables
from ansible_collections.llmops.ollama.plugins.modules import cluster_info
from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import runs_in_controller, run_in_worker

OWN_ARGS = ('facts', 'variables', 'models', 'fail_on_error', 'request_timeout', 'fact_name')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def _read_cluster(self, module_args, task_vars):
        """cluster_info in this process on a local connection, else as a module."""
        if runs_in_controller(self, HAS_KUBERNETES_CORE):
            return run_in_worker(self, cluster_info.main, module_args, check_mode=True, diff=False,
                                 name='llmops.ollama.cluster_info')
        return self._execute_module(module_name='llmops.ollama.cluster_info', module_args=module_args,
                                    task_vars=task_vars)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        variables = args.get('variables')
        if variables is None:
            # Every ollama_* variable the task sees: inventory, play vars, role vars, extra vars.
            variables = dict((name, self._templar.template(value)) for name, value in task_vars.items()
                             if name.startswith('ollama_'))
            names = [name for name in task_vars if name.startswith(PREFIXES)]
        else:
            names = list(variables)
        # config_from_role_vars keeps the plan's settings only: a misspelt name has to be caught here.
        strict = variables.get(STRICT_VARIABLE)
        name_warnings, name_errors = check_names(names, known_variables(), strict=bool(as_bool(strict)))
        config = config_from_role_vars(variables)
        if args.get('models') is not None:
            config['models'] = args['models']
        facts = args.get('facts')
        if facts is None:
            # Auth options (module_defaults of group/llmops.ollama.cluster) pass through to cluster_info.
            module_args = dict((k, v) for k, v in args.items() if k not in OWN_ARGS)
            label = config.get('gpu_node_label') or DEFAULTS['gpu_node_label']
            selector = config.get('node_selector') or {}
            module_args.update(
                namespace=config.get('namespace') or DEFAULTS['namespace'],
                request_timeout=int(args.get('request_timeout') or 30),
                label_keys=[label.get('key', '')] + sorted(selector) if isinstance(selector, dict) and isinstance(
                    label, dict) else [])
            read = self._read_cluster(module_args, task_vars)
            if read.get('failed'):
                return dict(result, **read)
            facts = read['cluster']
            result['cluster'] = facts
        plan = compute_plan(facts, config)
        if name_warnings or name_errors:
            plan['warnings'] = name_warnings + list(plan['warnings'])
            plan['errors'] = name_errors + list(plan['errors'])
            plan['ok'] = not plan['errors']
        result.update(changed=False, plan=plan)
        if args.get('fact_name'):
            result['ansible_facts'] = {args['fact_name']: plan}
        if plan['warnings']:
            result['warnings'] = list(plan['warnings'])
        if plan['errors'] and args.get('fail_on_error', True):
            result.update(failed=True, msg='The plan found %d problem(s); nothing was changed in the cluster.\n%s'
                          % (len(plan['errors']), describe_errors(plan['errors'])))
            if Display().verbosity < 1:
                # A failure shows the problems and their fixes only: the plan and the facts are hundreds of lines.
                for key in ('plan', 'cluster', 'ansible_facts'):
                    result.pop(key, None)
                result['msg'] += '\n(The whole plan: run with -v, or register the task with fail_on_error: false.)'
        return result
