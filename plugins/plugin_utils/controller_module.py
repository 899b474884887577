# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugins that run a collection module inside the controller process.

The strategy imports an action plugin in the main ansible-playbook process before it forks a worker for the
task, so the module, the kubernetes client and kubernetes.core are imported once per run, not once per task.
On a local connection without async the module's main() runs in the worker (see module_utils/inprocess.py);
anywhere else (a remote host, async, a controller Python without the kubernetes client) the module runs as
an ordinary module process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.llmops.ollama.plugins.module_utils.inprocess import run_in_controller


class ControllerModuleAction(NormalAction):
    """Subclasses set MODULE to the imported module and IMPORTED to whether its libraries imported."""

    MODULE = None
    IMPORTED = True

    def _runs_in_controller(self):
        return (self.IMPORTED and not self._task.async_val
                and getattr(self._connection, 'transport', None) == 'local')

    def run(self, tmp=None, task_vars=None):
        if not self._runs_in_controller():
            return super(ControllerModuleAction, self).run(tmp, task_vars)
        result = super(NormalAction, self).run(tmp, task_vars)
        # The task's `environment` reaches a module process through its command line; here, through os.environ
        # of this worker, which runs this one task.
        environment = {}
        self._compute_environment_string(environment)
        saved = dict((name, os.environ.get(name)) for name in environment)
        os.environ.update((str(name), str(value)) for name, value in environment.items())
        try:
            result.update(run_in_controller(self.MODULE.main, self._task.args, self._task.check_mode,
                                            self._task.diff))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return result
