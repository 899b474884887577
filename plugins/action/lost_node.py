# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the lost_node module in the controller process (see plugins/plugin_utils/controller_module.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.modules import lost_node
from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import ControllerModuleAction
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import HAS_KUBERNETES_CORE


class ActionModule(ControllerModuleAction):
    MODULE = lost_node
    IMPORTED = HAS_KUBERNETES_CORE
