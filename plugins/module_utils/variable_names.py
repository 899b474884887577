# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Variables named like the collection's that nothing of the collection reads: a misspelt ``ollama_replica: 3``
would otherwise be ignored without a word.

A name is known when one of the collection's roles or playbooks mentions it (a default, an argument spec, a
template, a registered result) or the plan reads it; see :func:`names_in_text`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import re

# ollama_ covers ollama_workload_ too.
PREFIXES = ('ollama_', 'gpu_preflight_', 'ha_policy_', 'model_pull_', 'storage_provisioner_')
STRICT_VARIABLE = 'ollama_strict_variables'
_NAME = re.compile(r'(?<![A-Za-z0-9_])(?:ollama|gpu_preflight|ha_policy|model_pull|storage_provisioner)_[a-z0-9_]*'
                   r'[a-z0-9](?![A-Za-z0-9_])')


def names_in_text(text):
    """Every variable-shaped name with one of PREFIXES in a role or playbook file's text."""
    return set(_NAME.findall(text or ''))


def check_names(names, known, strict=False):
    """(warnings, errors) for each name with one of PREFIXES that is not in known, each naming the closest
    known variable. Errors have the plan's shape (variable, message, fix); strict turns warnings into errors."""
    warnings = []
    errors = []
    candidates = sorted(known)
    for name in sorted(n for n in names if n.startswith(PREFIXES) and n not in known):
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = ' (did you mean %s?)' % close[0] if close else ''
        if strict:
            errors.append({
                'variable': name,
                'message': 'no role or playbook of llmops.ollama reads %s%s.' % (name, hint),
                'fix': ('rename it to %s, or remove it' % close[0]) if close else 'remove it',
            })
        else:
            warnings.append('unknown variable %s is ignored%s; %s: true makes this an error'
                            % (name, hint, STRICT_VARIABLE))
    return warnings, errors
