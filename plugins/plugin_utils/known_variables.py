# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The variable names the collection reads, from its own files on the controller (a checkout or an installed
copy): every role and playbook file, and the plan's settings. Read once per process."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.llmops.ollama.plugins.module_utils.plan import VARIABLES
from ansible_collections.llmops.ollama.plugins.module_utils.variable_names import names_in_text

# plugins/plugin_utils/known_variables.py -> the collection root
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SUFFIXES = ('.yml', '.yaml', '.j2')
_cache = {}


def known_variables(root=COLLECTION_ROOT):
    if root not in _cache:
        names = set(v for v in VARIABLES.values() if v.startswith('ollama_'))
        for top in ('roles', 'playbooks'):
            for folder, _dirs, files in os.walk(os.path.join(root, top)):
                for name in files:
                    if name.endswith(_SUFFIXES):
                        with open(os.path.join(folder, name), encoding='utf-8') as handle:
                            names |= names_in_text(handle.read())
        _cache[root] = frozenset(names)
    return _cache[root]
