# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_report
type: aggregate
short_description: At the end of a run over a fleet, each cluster's outcome, ok or failed with the reason
description:
  - A fleet is an inventory whose group C(ollama_clusters) names one host per cluster (docs/fleet.md); the
    collection's playbooks run on those hosts in parallel, and a cluster that fails stops alone.
  - At the end of the run this prints one line per cluster, C(ok) (with its changed count), C(failed) or
    C(unreachable) with the play, the task and the message that stopped it, or C(not run) (left out by
    C(--limit)), and the same for any other host that failed (a GPU host's check). Without the group
    C(ollama_clusters) it prints nothing, so single-cluster runs look as before.
  - With a JSON stdout callback (C(ansible.builtin.json)) the report goes to stderr, so stdout stays JSON.
  - The collection's C(ansible.cfg) enables it; elsewhere add it to C(callbacks_enabled)
    (C(ANSIBLE_CALLBACKS_ENABLED=llmops.ollama.fleet_report)).
author:
  - llmops.ollama maintainers (@llmops-ollama)
requirements:
  - enabled in C(callbacks_enabled)
options:
  report_path:
    description: Also write the report as JSON to this file on the controller (C({"clusters":{HOST:{...}}})).
    type: path
    env:
      - name: LLMOPS_FLEET_REPORT
    ini:
      - section: llmops_fleet_report
        key: report_path
'''

import json

from ansible import constants as C
from ansible.plugins.callback import CallbackBase

FLEET_GROUP = 'ollama_clusters'
_MAX_LINES = 12
# A loop's own message says nothing; its failed item's does.
_LOOP_MSG = 'One or more items failed'


def _message(result):
    res = result._result if hasattr(result, '_result') else result
    msg = res.get('msg') or res.get('reason') or res.get('stderr') or res.get('exception') or ''
    return str(msg).strip()


def _trim(text):
    lines = text.splitlines() or ['']
    if len(lines) > _MAX_LINES:
        lines = lines[:_MAX_LINES] + ['... (%d more lines: see the task above)' % (len(lines) - _MAX_LINES)]
    return lines


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'llmops.ollama.fleet_report'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._clusters = None
        self._play = ''
        self._failures = {}
        self._item_failures = {}

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()
        if self._clusters is None:
            inventory = getattr(play.get_variable_manager(), '_inventory', None)
            group = inventory.groups.get(FLEET_GROUP) if inventory is not None else None
            self._clusters = [h.name for h in group.get_hosts()] if group is not None else []

    def _record(self, result, state):
        host = result._host.get_name()
        msg = _message(result)
        if msg.startswith(_LOOP_MSG) and host in self._item_failures:
            msg = self._item_failures[host]
        self._failures[host] = {'status': state, 'play': self._play, 'task': result._task.get_name(), 'msg': msg}

    def v2_runner_item_on_failed(self, result):
        self._item_failures[result._host.get_name()] = _message(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._record(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def report(self, stats):
        """{host: outcome} for the fleet's hosts and every other host that failed."""
        out = {}
        others = sorted(h for h in set(stats.failures) | set(stats.dark) if h not in self._clusters)
        for host in list(self._clusters) + others:
            summary = stats.summarize(host)
            if host not in stats.processed:
                out[host] = {'status': 'not run', 'cluster': host in self._clusters}
                continue
            if summary['failures'] or summary['unreachable']:
                failure = self._failures.get(host) or {'status': 'failed', 'play': '', 'task': '', 'msg': ''}
                if summary['unreachable'] and not summary['failures']:
                    failure = dict(failure, status='unreachable')
                out[host] = dict(failure, changed=summary['changed'], cluster=host in self._clusters)
            else:
                out[host] = {'status': 'ok', 'changed': summary['changed'], 'cluster': host in self._clusters}
        return out

    def v2_playbook_on_stats(self, stats):
        if not self._clusters:
            return
        report = self.report(stats)
        clusters = [h for h in report if report[h]['cluster']]
        counts = {}
        for host in clusters:
            counts[report[host]['status']] = counts.get(report[host]['status'], 0) + 1
        width = max(len(h) for h in report)
        lines = ['FLEET REPORT: %d cluster(s), %s' % (len(clusters), ', '.join(
            '%d %s' % (counts[k], k) for k in ('ok', 'failed', 'unreachable', 'not run') if k in counts))]
        for host, outcome in report.items():
            label = host.ljust(width) + ('' if outcome['cluster'] else ' (not a cluster)')
            if outcome['status'] == 'ok':
                lines.append('  %s  ok, changed=%d' % (label, outcome['changed']))
            elif outcome['status'] == 'not run':
                lines.append('  %s  not run (left out of this run: --limit)' % label)
            else:
                where = (label, outcome['status'], outcome['play'], outcome['task'])
                lines.append('  %s  %s in play "%s", task "%s":' % where)
                lines.extend('      ' + line for line in _trim(outcome['msg']))
        to_stderr = str(C.config.get_config_value('DEFAULT_STDOUT_CALLBACK') or '').endswith('json')
        self._display.display('\n'.join(lines), stderr=to_stderr)
        path = self.get_option('report_path')
        if path:
            with open(path, 'w') as handle:
                json.dump({'clusters': report}, handle, indent=2, sort_keys=True)
