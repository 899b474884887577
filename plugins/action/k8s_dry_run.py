# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the k8s_dry_run module in the controller process (see plugins/plugin_utils/controller_module.py), with
the values of the variables its field table names, so a refusal names the variable that caused it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.modules import k8s_dry_run
from ansible_collections.llmops.ollama.plugins.module_utils.dry_run import source_variables
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import HAS_KUBERNETES_CORE
from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import ControllerModuleAction


class ActionModule(ControllerModuleAction):
    MODULE = k8s_dry_run
    IMPORTED = HAS_KUBERNETES_CORE

    def run(self, tmp=None, task_vars=None):
        if 'sources' not in self._task.args:
            sources = {}
            for name in source_variables():
                if name in (task_vars or {}):
                    try:
                        sources[name] = self._templar.template(task_vars[name])
                    except Exception:  # a variable that cannot be rendered here names nothing
                        continue
            self._task.args = dict(self._task.args, sources=sources)
        return super(ActionModule, self).run(tmp, task_vars)
