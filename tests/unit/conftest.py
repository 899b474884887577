# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.llmops.ollama`` importable from a plain checkout.

The repository root is the collection root; a symlink
``<repo>/.collections/ansible_collections/llmops/ollama -> <repo>`` gives it the
path Ansible imports collections by, and ``<repo>/.collections`` goes first on
``sys.path``. Under ansible-test (which copies the collection into such a tree
itself) the real location is used and nothing is created.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'llmops', 'ollama')


def _under_ansible_collections():
    parts = REPO.split(os.sep)
    return len(parts) >= 3 and parts[-3] == 'ansible_collections'


if not _under_ansible_collections():
    if not os.path.lexists(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        try:
            os.symlink(REPO, LINK)
        except FileExistsError:  # another worker made it first
            pass
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
