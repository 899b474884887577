# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading inventory values as Ansible users write them: booleans and whole numbers, also as strings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re


def as_bool(value):
    """True/False for a boolean, yes/no/on/off/1/0 (any case) or an integer; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ('true', 'yes', 'on', '1'):
        return True
    if isinstance(value, str) and value.strip().lower() in ('false', 'no', 'off', '0'):
        return False
    if isinstance(value, int):
        return bool(value)
    return None


def as_int(value):
    """An integer, or the integer a string spells; None for booleans and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r'^\s*-?\d+\s*$', value):
        return int(value)
    return None
