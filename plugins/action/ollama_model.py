# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the ollama_model module in the controller process (see plugins/plugin_utils/controller_module.py).

With progress_interval the module's main() runs in a thread of this worker while the worker prints each
endpoint's progress file every progress_interval seconds: one task pulls everything at once and shows its
progress, with no asynchronous job to start and no polling tasks to run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile
import threading
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action.normal import ActionModule as NormalAction
from ansible.utils.display import Display

from ansible_collections.llmops.ollama.plugins.modules import ollama_model
from ansible_collections.llmops.ollama.plugins.plugin_utils.controller_module import (
    ControllerModuleAction,
    run_in_worker,
    runs_in_controller,
)
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import HAS_KUBERNETES_CORE

display = Display()

# Beyond pull_timeout (which the module enforces itself) the reads, deletes and warm-ups may take this long.
MARGIN = 600


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def progress_line(state):
    """One endpoint's progress as the role prints it: ``pod ns/x: tiny-a:latest 42.0% pulling; tiny-b queued``."""
    models = state.get('models') or {}
    parts = []
    for name, p in models.items():
        text = '%s %s%%' % (name, p.get('percent', 0.0))
        if p.get('status'):
            text += ' ' + str(p['status'])
        parts.append(text)
    return '%s%s: %s' % (state.get('endpoint', '?'), ' (done)' if state.get('done') else '',
                         '; '.join(parts) if parts else 'nothing to pull')


def read_progress(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


class ActionModule(ControllerModuleAction):
    MODULE = ollama_model
    IMPORTED = HAS_KUBERNETES_CORE

    def run(self, tmp=None, task_vars=None):
        args = dict(self._task.args)
        interval = _int(args.get('progress_interval'), 0)
        if interval <= 0 or self._task.check_mode or not runs_in_controller(self, self.IMPORTED):
            return super(ActionModule, self).run(tmp, task_vars)
        result = super(NormalAction, self).run(tmp, task_vars)
        own_dir = None
        if not args.get('progress_file'):
            own_dir = tempfile.mkdtemp(prefix='llmops-model-pull-')
            args['progress_file'] = os.path.join(own_dir, '{pod}.json' if args.get('pods') else 'progress.json')
        template = args['progress_file']
        paths = [template.replace('{pod}', str(pod)) for pod in args.get('pods') or []] or [template]
        outcome = {}

        def module():
            try:
                outcome['result'] = run_in_worker(self, self.MODULE.main, args, False, self._task.diff)
            except Exception as exc:  # handed to the worker's own thread below
                outcome['error'] = exc

        runner = threading.Thread(target=module, name='llmops-ollama-model')
        runner.daemon = True  # past the bound the worker ends and takes it along
        started = time.monotonic()
        bound = _int(args.get('pull_timeout'), 7200) + MARGIN
        rounds = 0

        def show(final=False):
            for path in paths:
                state = read_progress(path)
                # The last round says where each pull ended; a replica with nothing to pull says nothing then.
                if state is not None and (not final or state.get('models')):
                    display.display('[%3ds] %s' % (time.monotonic() - started, progress_line(state)))
        try:
            runner.start()
            # One round per interval until the module ends, at most bound seconds.
            for _round in range(bound // interval + 1):
                runner.join(interval)
                if not runner.is_alive():
                    break
                show()
                rounds += 1
            if not runner.is_alive():
                show(final=True)
        finally:
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
        if runner.is_alive():
            raise AnsibleActionFail('the model sync did not end within %s s (pull_timeout plus %s s for reads and '
                                    'warm-ups). Fix: raise pull_timeout (model_pull_timeout) for large models or '
                                    'check the network to the registry' % (bound - MARGIN, MARGIN))
        if 'error' in outcome:
            raise outcome['error']
        result.update(outcome['result'])
        result['progress_rounds'] = rounds
        return result
