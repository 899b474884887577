# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the ollama_model_info module in the controller process (see plugins/plugin_utils/controller_module.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.modules import ollama_model_info
from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import ControllerModuleAction


class ActionModule(ControllerModuleAction):
    MODULE = ollama_model_info
