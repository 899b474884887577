# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan is a pure function: compute it on the controller instead of shipping a module to run it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.llmops.ollama.plugins.module_utils.plan import (
    compute_plan, config_from_role_vars, describe_errors)

ARGUMENT_SPEC = dict(
    facts=dict(type='dict', required=True),
    variables=dict(type='dict'),
    fail_on_error=dict(type='bool', default=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        _validated, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        variables = args['variables']
        if variables is None:
            # Every ollama_* variable the task sees: inventory, play vars, role vars, extra vars.
            task_vars = task_vars or {}
            variables = dict((name, self._templar.template(value)) for name, value in task_vars.items()
                             if name.startswith('ollama_'))
        plan = compute_plan(args['facts'], config_from_role_vars(variables))
        result.update(changed=False, plan=plan)
        if plan['warnings']:
            result['warnings'] = list(plan['warnings'])
        if plan['errors'] and args['fail_on_error']:
            result.update(failed=True, msg='The plan found %d problem(s); nothing was changed in the cluster.\n%s'
                          % (len(plan['errors']), describe_errors(plan['errors'])))
        return result
