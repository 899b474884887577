# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugins that run a collection module inside the controller process.

The strategy imports an action plugin in the main ansible-playbook process before it forks a worker for the
task, so the module and its module_utils are imported once per run, not once per task. On a local connection
without become and async the module's main() runs in the worker (see module_utils/inprocess.py); anywhere else
(become, async, a remote host or delegate_to one, a controller without kubernetes.core) the module runs as an
ordinary module process, with Ansible's own semantics for each.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.llmops.ollama.plugins.module_utils.inprocess import run_in_controller


def runs_in_controller(action, imported=True):
    """Whether action's task can run a module's main() in its worker: the module's libraries imported in the
    controller, a local connection (a delegate_to host other than a local one brings its own), no become and no
    async. Anything else runs the module as an ordinary module process, which Ansible starts as the become user
    (with that user's HOME, so its ~/.kube/config) or leaves running in the background for async."""
    connection = action._connection
    return bool(imported
                and getattr(connection, 'transport', None) == 'local'
                and getattr(connection, 'become', None) is None
                and not getattr(action._play_context, 'become', False)
                and not action._task.async_val)


def run_in_worker(action, main, args, check_mode, diff, name=None):
    """main()'s result, run in this worker with the task's `environment` in os.environ (a module process gets it
    on its command line); this worker runs this one task, and the environment is put back after. name is the
    module's name in its messages (the task's action unless given)."""
    module_name = name or action._task.action
    environment = {}
    action._compute_environment_string(environment)
    saved = dict((name, os.environ.get(name)) for name in environment)
    os.environ.update((str(name), str(value)) for name, value in environment.items())
    try:
        return run_in_controller(main, args, check_mode, diff, name=module_name)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ControllerModuleAction(NormalAction):
    """Subclasses set MODULE to the imported module and IMPORTED to whether its libraries imported."""

    MODULE = None
    IMPORTED = True

    def run(self, tmp=None, task_vars=None):
        if not runs_in_controller(self, self.IMPORTED):
            return super(ControllerModuleAction, self).run(tmp, task_vars)
        result = super(NormalAction, self).run(tmp, task_vars)
        result.update(run_in_worker(self, self.MODULE.main, self._task.args, self._task.check_mode, self._task.diff))
        return result
