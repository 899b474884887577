# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the k8s_dry_run module in the controller process (see plugins/plugin_utils/controller_module.py), with
the values of the variables its field table names, so a refusal names the variable that caused it.

With ``settings_of`` it first checks that role's settings, in the controller: the types and choices of the role's
meta/argument_specs.yml (as the role's own validation would when it starts, but before any role of the run has
written), then what a spec cannot say (module_utils/settings_checks.py). Only sound settings get their
``definition`` rendered: objects rendered from a value of the wrong type would fail in Jinja with a message that
names no variable."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.llmops.ollama.plugins.modules import k8s_dry_run
from ansible_collections.llmops.ollama.plugins.module_utils.dry_run import source_variables
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import HAS_KUBERNETES_CORE
from ansible_collections.llmops.ollama.plugins.module_utils.settings_checks import VARIABLES, settings_problems
from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import ControllerModuleAction


def role_spec(task, task_vars):
    """The options of the main entry point of the task's role (meta/argument_specs.yml), {} outside a role."""
    role = getattr(task, '_role', None)
    if role is not None and hasattr(role, '_get_role_argspecs'):
        return ((role._get_role_argspecs() or {}).get('main') or {}).get('options') or {}
    return {}


def spec_problems(role, options, values):
    """The argument spec's errors for values, each naming the variable and where its type and choices are."""
    if not options:
        return []
    result = ArgumentSpecValidator(options).validate(values, validate_role_argument_spec=True)
    fix = ('Fix: give it the type and one of the choices that roles/%s/README.md (meta/argument_specs.yml) lists'
           % role)
    return ['%s. %s' % (message.rstrip('.'), fix) for message in result.error_messages]


class ActionModule(ControllerModuleAction):
    MODULE = k8s_dry_run
    IMPORTED = HAS_KUBERNETES_CORE

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        # run() renders definition once the settings are sound (ansible-core 2.19; older cores render it first).
        if name == 'definition':
            return value
        return super(ActionModule, cls).finalize_task_arg(name, value, templar, context)

    def _check_settings(self, role, task_vars):
        options = role_spec(self._task, task_vars)
        names = set(options).union(VARIABLES.get(role, ()))
        values = {}
        for name in sorted(names):
            if name in task_vars:
                try:
                    values[name] = self._templar.template(task_vars[name])
                except AnsibleError as exc:  # a mandatory() default says which role to run first
                    return ['%s' % getattr(exc, 'message', exc)]
        problems = spec_problems(role, options, dict((k, v) for k, v in values.items() if k in options))
        return problems or settings_problems(role, values)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        args = dict(self._task.args)
        role = args.get('settings_of')
        problems = list(args.get('problems') or [])
        if role:
            problems.extend(self._check_settings(role, task_vars))
        args['problems'] = problems
        # Nothing of a role whose settings are wrong is rendered; the module fails with the problems.
        args['definition'] = [] if problems else self._templar.template(args.get('definition'))
        if 'sources' not in args:
            sources = {}
            for name in source_variables():
                if name in task_vars:
                    try:
                        sources[name] = self._templar.template(task_vars[name])
                    except Exception:  # a variable that cannot be rendered here names nothing
                        continue
            args['sources'] = sources
        self._task.args = args
        return super(ActionModule, self).run(tmp, task_vars)
