# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Modules that only read: the same in check mode, nothing to diff.
    READ_ONLY = r'''
attributes:
  check_mode:
    support: full
    details: Read-only, so it runs the same in check mode.
  diff_mode:
    support: none
    details: Changes nothing, so it has no diff.
  platform:
    platforms: posix
'''
