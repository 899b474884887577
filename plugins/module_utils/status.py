# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The deployment's status: GPU nodes, replicas, the models on each replica, problems; as a terminal table and
as a self-contained HTML page.

:func:`build_report` is a pure function of what was read (nodes, pods, each replica's /api/tags and /api/ps,
earlier measurements); :func:`render_table` and :func:`render_html` only lay the report out. :func:`collect`
does the reading, through :mod:`k8s` (the API server) and :mod:`ollama_client` (each replica through the pod
proxy and the gate), and writes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import html
import time

from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import (
    GPU_RESOURCE,
    is_gpu_node,
    node_facts,
    pod_resource_request,
)
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import (
    OllamaError,
    endpoint_info,
    generate_check,
    loaded_models,
    model_key,
    normalize_digest,
    short_name,
)

ERROR = 'error'
WARNING = 'warning'
SHORT_DIGEST = 12   # hex digits shown, as `ollama list` shows its ID


# ---------------------------------------------------------------- figures

def human_bytes(value):
    """``1.5 GiB``, ``322.3 KiB``, ``0 B``; ``-`` for unknown."""
    if value is None:
        return '-'
    value = float(value)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(value) < 1024 or unit == 'TiB':
            return '%d B' % value if unit == 'B' else '%.1f %s' % (value, unit)
        value /= 1024.0
    return '-'  # not reached


def short_digest(digest):
    digest = normalize_digest(digest) or ''
    if not digest:
        return '-'
    return digest.split(':', 1)[-1][:SHORT_DIGEST]


def restarts(pod):
    return sum(int(c.get('restartCount') or 0) for c in (pod.get('status') or {}).get('containerStatuses') or [])


def replica_facts(pod):
    meta, spec, status = pod.get('metadata') or {}, pod.get('spec') or {}, pod.get('status') or {}
    ready = any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in status.get('conditions') or [])
    return {
        'name': meta.get('name'),
        'node': spec.get('nodeName') or None,
        'phase': status.get('phase') or 'Unknown',
        'ready': ready,
        'terminating': bool(meta.get('deletionTimestamp')),
        'restarts': restarts(pod),
        'gpus': pod_resource_request(pod, GPU_RESOURCE),
        'ip': status.get('podIP') or '',
    }


def measurement_index(measurements):
    """``{(pod, model key): {tokens_per_second, source}}`` from ollama_generate_check results (as registered,
    or a loop's ``results``) or plain ``{pod, model, tokens_per_second}`` dicts; entries without a figure are
    skipped. A later entry replaces an earlier one."""
    out = {}
    for entry in measurements or []:
        if not isinstance(entry, dict):
            continue
        endpoint = entry.get('endpoint') if isinstance(entry.get('endpoint'), dict) else {}
        pod = entry.get('pod') or endpoint.get('pod')
        model = entry.get('model')
        tps = entry.get('tokens_per_second')
        if not pod or not model or isinstance(tps, bool) or not isinstance(tps, (int, float)):
            continue
        key = model_key(model)
        if key is None:
            continue
        residency = entry.get('residency') if isinstance(entry.get('residency'), dict) else {}
        percent = residency.get('gpu_percent', entry.get('gpu_percent'))
        out[(pod, key)] = {'tokens_per_second': float(tps), 'source': entry.get('source') or 'verification',
                           'gpu_percent': percent if isinstance(percent, (int, float)) else None}
    return out


# ---------------------------------------------------------------- the report

def _model_cell(name, declared, tag, loaded, measured):
    cell = {'name': name, 'declared': declared, 'present': tag is not None, 'size': None, 'digest': None,
            'loaded': loaded is not None, 'size_loaded': None, 'size_vram': None, 'gpu_percent': None,
            'processor': None, 'tokens_per_second': None, 'tokens_source': None, 'measured_gpu_percent': None}
    if tag is not None:
        cell.update(size=tag.get('size'), digest=normalize_digest(tag.get('digest')))
    if loaded is not None:
        cell.update(size_loaded=loaded['size'], size_vram=loaded['size_vram'], gpu_percent=loaded['gpu_percent'],
                    processor=loaded['processor'], fully_on_gpu=loaded['fully_on_gpu'])
    if measured:
        cell.update(tokens_per_second=measured['tokens_per_second'], tokens_source=measured['source'],
                    measured_gpu_percent=measured['gpu_percent'])
    return cell


def build_report(namespace, name, nodes, pods, replica_pods, infos, declared=(), measurements=(), allow_cpu=False,
                 max_nodes=50, generated_at=None, notes=()):
    """The status report.

    ``nodes`` and ``pods``: every node and every running pod of the cluster (raw API objects; the pods count the
    GPUs in use on each node). ``replica_pods``: the Ollama pods. ``infos``: ``{pod name: endpoint_info(...)}``
    of the replicas that were read. ``declared``: the model names the deployment should hold.
    """
    replicas = sorted((replica_facts(p) for p in replica_pods), key=lambda r: r['name'] or '')
    on_node = {}
    for replica in replicas:
        on_node.setdefault(replica['node'], []).append(replica['name'])

    used = {}
    for pod in pods:
        node = (pod.get('spec') or {}).get('nodeName')
        if node and (pod.get('status') or {}).get('phase') not in ('Succeeded', 'Failed'):
            used[node] = used.get(node, 0) + pod_resource_request(pod, GPU_RESOURCE)

    problems = []

    def problem(severity, text, replica=None, model=None, node=None):
        problems.append({'severity': severity, 'text': text, 'replica': replica, 'model': model, 'node': node})

    # Model key -> the name shown: the declared ones first, in their order, then any other model a replica holds.
    declared_names = {}
    for item in declared or []:
        item_name = item.get('name') if isinstance(item, dict) else item
        key = model_key(item_name) if item_name else None
        if key and key not in declared_names:
            declared_names[key] = short_name(item_name)
    measured = measurement_index(measurements)
    model_names = dict(declared_names)
    digests = {}
    vram_on_node = {}
    for replica in replicas:
        info = infos.get(replica['name'])
        replica['reachable'] = bool(info and info.get('reachable'))
        replica['version'] = info.get('version') if info else None
        replica['error'] = info.get('error') if info else None
        replica['models'] = []
        if replica['terminating']:
            problem(WARNING, '%s is terminating' % replica['name'], replica=replica['name'])
        elif replica['phase'] != 'Running':
            problem(ERROR, '%s is %s, not Running' % (replica['name'], replica['phase']), replica=replica['name'])
        elif not replica['ready']:
            problem(ERROR, '%s is not Ready' % replica['name'], replica=replica['name'])
        if replica['restarts']:
            problem(WARNING, '%s restarted %d time(s)' % (replica['name'], replica['restarts']),
                    replica=replica['name'])
        if info is None:
            continue
        if not replica['reachable']:
            problem(ERROR, 'Ollama on %s did not answer: %s' % (replica['name'], info.get('error')),
                    replica=replica['name'])
            continue
        tags = dict((model_key(m.get('name') or ''), m) for m in info.get('models') or [])
        loaded = dict((model_key(m.get('name') or ''), m) for m in info.get('loaded') or [])
        for key, model in tags.items():
            if key and key not in model_names:
                model_names[key] = model.get('name')
        for key, shown in model_names.items():
            tag, load = tags.get(key), loaded.get(key)
            if tag is None and key not in declared_names:
                continue
            cell = _model_cell(tag.get('name') if tag else shown, key in declared_names, tag, load,
                               measured.get((replica['name'], key)))
            cell['key'] = key
            replica['models'].append(cell)
            if tag is None:
                problem(ERROR, '%s is missing on %s' % (shown, replica['name']), replica=replica['name'], model=shown)
                continue
            digests.setdefault(key, {}).setdefault(cell['digest'], []).append(replica['name'])
            if load is not None:
                vram_on_node[replica['node']] = vram_on_node.get(replica['node'], 0) + (load['size_vram'] or 0)
                if not load['fully_on_gpu']:
                    problem(WARNING if allow_cpu else ERROR,
                            '%s on %s is %s%% in GPU memory (%s): it runs at CPU speed%s'
                            % (cell['name'], replica['name'], load['gpu_percent'], load['processor'],
                               ' (accepted: allow_cpu)' if allow_cpu else ''),
                            replica=replica['name'], model=cell['name'])
    for key, by_digest in digests.items():
        if len(by_digest) > 1:
            shown = model_names.get(key, key)
            where = ['%s on %s' % (short_digest(digest), ', '.join(sorted(names)))
                     for digest, names in sorted(by_digest.items(), key=lambda item: item[0] or '')]
            problem(WARNING, '%s differs between replicas: %s' % (shown, '; '.join(where)), model=shown)

    node_rows = []
    for node in nodes:
        facts = node_facts(node, used.get((node.get('metadata') or {}).get('name'), 0))
        hosts = on_node.get(facts['name'], [])
        if not (is_gpu_node(facts) or hosts):
            continue
        per_card = facts['gpu_memory_mib']
        row = {
            'name': facts['name'], 'ready': facts['ready'], 'schedulable': facts['schedulable'],
            'gpu': is_gpu_node(facts), 'gpu_product': facts['gpu_product'],
            'gpu_allocatable': facts['gpu_allocatable'], 'gpu_used': facts['gpu_requested'],
            'gpu_memory_mib': per_card,
            'gpu_memory_bytes': per_card * 1024 * 1024 * facts['gpu_allocatable'] if per_card else None,
            'vram_used_bytes': vram_on_node.get(facts['name'], 0), 'replicas': hosts, 'zone': facts['zone'],
        }
        node_rows.append(row)
        if hosts and not row['ready']:
            problem(ERROR, 'node %s, which runs %s, is not Ready' % (row['name'], ', '.join(hosts)), node=row['name'])
        if hosts and not row['gpu']:
            problem(ERROR, '%s run(s) on %s, a node without GPUs' % (', '.join(hosts), row['name']), node=row['name'])
    for node_name, hosts in on_node.items():
        if node_name is None:
            problem(ERROR, '%s not scheduled on any node' % ', '.join(hosts))
    node_rows.sort(key=lambda r: (not r['replicas'], r['name'] or ''))
    problems.sort(key=lambda p: p['severity'] != ERROR)  # errors first, each kind in the order found
    hidden = max(0, len(node_rows) - max_nodes)
    if hidden:
        node_rows = node_rows[:max_nodes]

    models_shown = list(model_names.values())
    counts = {
        'replicas': len(replicas),
        'ready': len([r for r in replicas if r['ready'] and not r['terminating']]),
        'gpu_nodes': len([n for n in node_rows if n['gpu']]) + hidden,
        'models': len(models_shown),
        'errors': len([p for p in problems if p['severity'] == ERROR]),
        'warnings': len([p for p in problems if p['severity'] == WARNING]),
    }
    return {
        'namespace': namespace, 'name': name, 'generated_at': generated_at, 'nodes': node_rows,
        'nodes_hidden': hidden, 'replicas': replicas, 'models': models_shown, 'problems': problems,
        'counts': counts, 'ok': counts['errors'] == 0, 'notes': list(notes or []),
    }


# ---------------------------------------------------------------- the terminal table

def _yes(value):
    return 'yes' if value else 'NO'


def _columns(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = '  '.join('%%-%ds' % w for w in widths)
    return [(fmt % tuple(header)).rstrip()] + [(fmt % tuple(str(c) for c in row)).rstrip() for row in rows]


def _gpu_cell(cell):
    if not cell['present']:
        return 'MISSING'
    if not cell['loaded']:
        if cell['measured_gpu_percent'] is not None:
            return 'not loaded (%s%% GPU when measured)' % cell['measured_gpu_percent']
        return 'not loaded'
    return '%s%% GPU (%s)' % (cell['gpu_percent'], cell['processor'])


def _tps(cell):
    if cell['tokens_per_second'] is None:
        return '-'
    return '%.1f' % cell['tokens_per_second']


def render_table(report):
    """The report as lines of aligned text."""
    counts = report['counts']
    lines = ['Ollama %s/%s: %d of %d replica(s) Ready, %d model(s), %d problem(s)%s' % (
        report['namespace'], report['name'], counts['ready'], counts['replicas'], counts['models'],
        counts['errors'] + counts['warnings'], (' at %s' % report['generated_at']) if report['generated_at'] else '')]
    lines += ['', 'GPU nodes']
    lines += _columns(
        ['NODE', 'READY', 'GPUS USED/ALLOC', 'GPU MEMORY', 'OLLAMA VRAM', 'PRODUCT', 'REPLICAS'],
        [[n['name'], _yes(n['ready']), '%d/%d' % (n['gpu_used'], n['gpu_allocatable']),
          ('%s x %d MiB' % (n['gpu_allocatable'], n['gpu_memory_mib'])) if n['gpu_memory_mib'] else 'unknown',
          human_bytes(n['vram_used_bytes']), n['gpu_product'] or '-', ', '.join(n['replicas']) or '-']
         for n in report['nodes']])
    if report['nodes_hidden']:
        lines.append('(%d more GPU nodes without a replica not shown)' % report['nodes_hidden'])
    lines += ['', 'Replicas']
    lines += _columns(
        ['REPLICA', 'NODE', 'PHASE', 'READY', 'RESTARTS', 'OLLAMA'],
        [[r['name'], r['node'] or '-', r['phase'] + (' (terminating)' if r['terminating'] else ''), _yes(r['ready']),
          r['restarts'], r.get('version') or ('unreachable' if r.get('error') else '-')] for r in report['replicas']])
    lines += ['', 'Models']
    rows = []
    for replica in report['replicas']:
        for cell in replica.get('models') or []:
            rows.append([replica['name'], cell['name'], human_bytes(cell['size']) if cell['present'] else '-',
                         short_digest(cell['digest']), 'yes' if cell['loaded'] else 'no', _gpu_cell(cell), _tps(cell)])
    lines += _columns(['REPLICA', 'MODEL', 'SIZE', 'DIGEST', 'LOADED', 'IN GPU MEMORY', 'TOKENS/S'], rows)
    lines += ['', 'Problems' if report['problems'] else 'Problems: none']
    lines += ['%s: %s' % (p['severity'].upper(), p['text']) for p in report['problems']]
    lines += report.get('notes') or []
    return lines


# ---------------------------------------------------------------- the HTML page

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:24px;background:#f5f6f8;
color:#1d2330}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 10px}
.sub{color:#5b6475;margin-bottom:16px}
.badges span{display:inline-block;margin:0 8px 8px 0;padding:4px 10px;border-radius:12px;background:#e4e8ef}
.badges .bad{background:#fbd5d5;color:#8a1111}.badges .warn{background:#fde9c4;color:#7a4b00}
.badges .good{background:#d3f1dc;color:#135c2b}
.problems{list-style:none;padding:0;margin:0}
.problems li{padding:6px 10px;margin:4px 0;border-left:4px solid;border-radius:3px;background:#fff}
.problems .error{border-color:#d32f2f}.problems .warning{border-color:#e89b00}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:14px}
.node{background:#fff;border:1px solid #d6dbe4;border-radius:8px;padding:12px}
.node.bad{border-color:#d32f2f;box-shadow:0 0 0 1px #d32f2f inset}
.node h3{font-size:15px;margin:0 0 2px}.node .meta{color:#5b6475;font-size:12px;margin-bottom:8px}
.bar{height:10px;border-radius:5px;background:#e4e8ef;overflow:hidden;display:flex;margin:3px 0 8px}
.bar .gpu{background:#2e7d32}.bar .cpu{background:#d32f2f}.bar .used{background:#3559c7}
.label{font-size:12px;color:#3d4556}
.replica{border:1px solid #cfd5df;border-radius:6px;padding:6px 8px;margin-top:6px;background:#fafbfc}
.replica.bad{border-color:#d32f2f;background:#fff3f3}
.replica b{font-size:13px}.replica .meta{font-size:12px;color:#5b6475}
table{border-collapse:collapse;background:#fff;border:1px solid #d6dbe4;min-width:60%}
th,td{padding:6px 10px;border-bottom:1px solid #e4e8ef;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:13px}
td.cell{min-width:180px}td.missing{background:#fbd5d5;color:#8a1111;font-weight:600}
td.partial{background:#fff3f3}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.tag{font-size:11px;padding:1px 6px;border-radius:8px;background:#e4e8ef;margin-left:4px}
.tag.bad{background:#fbd5d5;color:#8a1111}.tag.good{background:#d3f1dc;color:#135c2b}
footer{margin-top:28px;color:#5b6475;font-size:12px}
"""


def _e(value):
    return html.escape('' if value is None else str(value), quote=True)


def _bar(parts, title):
    inner = ''.join('<div class="%s" style="width:%.1f%%"></div>' % (_e(cls), max(0.0, min(100.0, float(pct))))
                    for cls, pct in parts if pct)
    return '<div class="bar" title="%s">%s</div>' % (_e(title), inner)


def _model_html(cell):
    if not cell['present']:
        return '<td class="cell missing" data-model="%s">missing</td>' % _e(cell['name'])
    partial = cell['loaded'] and not cell.get('fully_on_gpu')
    out = ['<td class="cell%s" data-model="%s">' % (' partial' if partial else '', _e(cell['name']))]
    out.append('<div>%s <span class="mono" title="%s">%s</span></div>'
               % (_e(human_bytes(cell['size'])), _e(cell['digest']), _e(short_digest(cell['digest']))))
    if cell['loaded']:
        gpu = cell['gpu_percent'] or 0.0
        out.append('<div class="label">loaded: <span class="gpu-percent">%s%%</span> in GPU memory (%s)</div>'
                   % (_e(gpu), _e(cell['processor'])))
        out.append(_bar([('gpu', gpu), ('cpu', 100.0 - gpu)], '%s%% GPU, %s%% CPU' % (gpu, round(100.0 - gpu, 1))))
    elif cell['measured_gpu_percent'] is not None:
        gpu = cell['measured_gpu_percent']
        out.append('<div class="label">not loaded now; %s%% in GPU memory when measured</div>' % _e(gpu))
        out.append(_bar([('gpu', gpu), ('cpu', 100.0 - gpu)], 'when measured: %s%% GPU' % gpu))
    else:
        out.append('<div class="label">not loaded</div>')
    if cell['tokens_per_second'] is not None:
        out.append('<div class="label"><span class="tps">%s</span> tokens/s <span class="tag">%s</span></div>'
                   % (_e('%.1f' % cell['tokens_per_second']), _e(cell['tokens_source'])))
    out.append('</td>')
    return ''.join(out)


def render_html(report):
    """A self-contained page: inline CSS, no script, no external asset; every value escaped."""
    counts = report['counts']
    bad_replicas = set(p['replica'] for p in report['problems'] if p['severity'] == ERROR and p['replica'])
    bad_nodes = set(p['node'] for p in report['problems'] if p['severity'] == ERROR and p['node'])
    title = 'Ollama %s/%s' % (report['namespace'], report['name'])
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<title>%s</title><style>%s</style></head><body>' % (_e(title), CSS),
           '<h1 id="title">%s</h1>' % _e(title),
           '<div class="sub">generated %s by llmops.ollama (playbooks/status.yml)</div>' % _e(
               report['generated_at'] or '-')]
    out.append('<div class="badges">')
    out.append('<span class="%s" id="count-ready">%d of %d replicas Ready</span>' % (
        'good' if counts['ready'] == counts['replicas'] else 'bad', counts['ready'], counts['replicas']))
    out.append('<span>%d GPU node(s)</span><span>%d model(s)</span>' % (counts['gpu_nodes'], counts['models']))
    out.append('<span class="%s" id="count-errors">%d error(s)</span>' % ('bad' if counts['errors'] else 'good',
                                                                          counts['errors']))
    out.append('<span class="%s" id="count-warnings">%d warning(s)</span></div>' % (
        'warn' if counts['warnings'] else 'good', counts['warnings']))

    out.append('<h2>Problems</h2>')
    if report['problems']:
        out.append('<ul class="problems" id="problems">')
        out += ['<li class="%s"><b>%s</b> %s</li>' % (_e(p['severity']), _e(p['severity'].upper()), _e(p['text']))
                for p in report['problems']]
        out.append('</ul>')
    else:
        out.append('<p id="problems">None.</p>')

    replicas = dict((r['name'], r) for r in report['replicas'])
    out.append('<h2>GPU nodes and their replicas</h2><div class="grid" id="nodes">')
    for node in report['nodes']:
        used, alloc = node['gpu_used'], node['gpu_allocatable']
        cls = ' bad' if node['name'] in bad_nodes or (node['replicas'] and not node['ready']) else ''
        out.append('<div class="node%s" data-node="%s"><h3>%s</h3>' % (cls, _e(node['name']), _e(node['name'])))
        out.append('<div class="meta">%s%s%s</div>' % (
            _e(node['gpu_product'] or 'GPU product unknown'), (' &middot; zone %s' % _e(node['zone'])) if node['zone']
            else '', '' if node['ready'] else ' &middot; <b>NOT READY</b>'))
        out.append('<div class="label">GPUs: <span class="gpus">%d/%d</span> in use</div>' % (used, alloc))
        out.append(_bar([('used', 100.0 * used / alloc if alloc else 0)], '%d of %d GPUs requested' % (used, alloc)))
        if node['gpu_memory_bytes']:
            share = 100.0 * node['vram_used_bytes'] / node['gpu_memory_bytes']
            out.append('<div class="label">GPU memory: %s used by Ollama of %s (%d x %d MiB)</div>' % (
                _e(human_bytes(node['vram_used_bytes'])), _e(human_bytes(node['gpu_memory_bytes'])), alloc,
                node['gpu_memory_mib']))
            out.append(_bar([('gpu', share)], '%.1f%% of the GPU memory' % share))
        else:
            out.append('<div class="label">GPU memory: unknown (no nvidia.com/gpu.memory label)</div>')
        for name in node['replicas']:
            replica = replicas.get(name) or {}
            rcls = ' bad' if name in bad_replicas or not replica.get('ready') else ''
            out.append('<div class="replica%s" data-replica="%s"><b>%s</b> <span class="tag %s">%s</span>'
                       '<div class="meta">%s &middot; restarts <span class="restarts">%s</span> &middot; Ollama %s'
                       '</div></div>' % (
                           rcls, _e(name), _e(name), 'good' if replica.get('ready') else 'bad',
                           'Ready' if replica.get('ready') else 'not Ready', _e(replica.get('phase')),
                           _e(replica.get('restarts')), _e(replica.get('version') or '-')))
        if not node['replicas']:
            out.append('<div class="meta">no replica</div>')
        out.append('</div>')
    out.append('</div>')
    if report['nodes_hidden']:
        out.append('<p>%d more GPU nodes without a replica are not shown.</p>' % report['nodes_hidden'])
    lost = [r for r in report['replicas'] if r['node'] not in [n['name'] for n in report['nodes']]]
    if lost:
        out.append('<p>Not on a listed node: %s</p>' % _e(', '.join('%s (%s)' % (r['name'], r['node'] or 'unscheduled')
                                                                    for r in lost)))

    out.append('<h2>Models on each replica</h2><table id="models"><thead><tr><th>Model</th>')
    out += ['<th>%s</th>' % _e(r['name']) for r in report['replicas']]
    out.append('</tr></thead><tbody>')
    for model in report['models']:
        key = model_key(model)
        out.append('<tr><th class="mono">%s</th>' % _e(model))
        for replica in report['replicas']:
            cell = next((c for c in replica.get('models') or [] if c.get('key') == key), None)
            if cell is None:
                if replica.get('error'):
                    why = 'unreachable'
                elif replica.get('terminating') or replica.get('phase') != 'Running':
                    why = 'terminating' if replica.get('terminating') else replica.get('phase')
                else:
                    why = 'not declared' if replica.get('reachable') else 'not read'
                out.append('<td class="cell">%s</td>' % _e(why))
            else:
                out.append(_model_html(cell))
        out.append('</tr>')
    out.append('</tbody></table>')
    for note in report.get('notes') or []:
        out.append('<p class="label">%s</p>' % _e(note))
    out.append('<footer>Residency bars: green is the share of the loaded model in GPU memory (/api/ps size_vram / '
               'size), red the share on the CPU. GPUs in use count every pod\'s nvidia.com/gpu request on the node.'
               '</footer></body></html>')
    return '\n'.join(out) + '\n'


# ---------------------------------------------------------------- reading the cluster

class NoDeployment(Exception):
    """There is no Ollama deployment where the status was asked for."""


def admin_key_from_secret(api, namespace, name):
    """The gate's admin key from the Secret <name>-gate-admin, or None."""
    secret = api.get_or_none('/api/v1/namespaces/%s/secrets/%s-gate-admin' % (namespace, name))
    value = ((secret or {}).get('data') or {}).get('key')
    if not value:
        return None
    try:
        return base64.b64decode(value).decode('utf-8').strip() or None
    except (ValueError, UnicodeDecodeError):
        return None


def find_replicas(api, namespace, name, selector):
    """The Ollama pods; raises NoDeployment with what is missing and the fix."""
    from ansible_collections.llmops.ollama.plugins.module_utils.k8s import selector_text
    fix = ('converge it with playbooks/site.yml, or point ollama_namespace and ollama_name at the deployment '
           '(the pods carry the labels %s)' % selector_text(selector))
    if api.get_or_none('/api/v1/namespaces/%s' % namespace) is None:
        raise NoDeployment('there is no Ollama deployment: the namespace %s does not exist. Fix: %s' % (namespace, fix))
    pods = api.list_all('/api/v1/namespaces/%s/pods' % namespace, labelSelector=selector_text(selector))
    if not pods:
        workloads = [kind for kind, path in (('StatefulSet', '/apis/apps/v1/namespaces/%s/statefulsets/%s'),
                                             ('Deployment', '/apis/apps/v1/namespaces/%s/deployments/%s'))
                     if api.get_or_none(path % (namespace, name)) is not None]
        if workloads:
            raise NoDeployment('the %s %s/%s has no pods (scaled to 0, or its pods cannot be created: see `kubectl '
                               'describe %s -n %s %s`)' % (workloads[0], namespace, name, workloads[0].lower(),
                                                           namespace, name))
        raise NoDeployment('there is no Ollama deployment in the namespace %s: no pods with the labels %s and no '
                           'StatefulSet or Deployment %s. Fix: %s' % (namespace, selector_text(selector), name, fix))
    return pods


def collect(api, namespace, name, selector, admin_key=None, declared=(), measurements=(), measure=False,
            measure_num_predict=8, measure_timeout=120, allow_cpu=False, port=None, request_timeout=30,
            max_nodes=50, check_mode=False, now=time.time):
    """Read the cluster and every replica and return the report. Writes nothing; with measure (not in check mode)
    runs one short generation per replica and model present, which loads the model as any request would."""
    from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import ProxyEndpoint
    replica_pods = find_replicas(api, namespace, name, selector)
    if admin_key is None:
        admin_key = admin_key_from_secret(api, namespace, name)
    # Streamed page by page: build_report goes over each list once (thousands of nodes and pods).
    nodes = api.iter_all('/api/v1/nodes')
    pods = api.iter_all('/api/v1/pods', fieldSelector='status.phase!=Succeeded,status.phase!=Failed')
    notes = []
    if admin_key is None:
        notes.append('No admin key: the Secret %s-gate-admin was not found; the gate refuses the calls.' % name)
    infos, measured = {}, list(measurements or [])
    for pod in replica_pods:
        facts = replica_facts(pod)
        if facts['phase'] != 'Running' or facts['terminating']:
            continue
        endpoint = ProxyEndpoint(api, namespace, pod=facts['name'], port=port, admin_key=admin_key)
        info = endpoint_info(endpoint, request_timeout)
        if measure and not check_mode and info['reachable']:
            for model in info['models']:
                try:
                    result, _failures = generate_check(endpoint, model['name'], prompt='Say hello.',
                                                       num_predict=measure_num_predict, allow_cpu=True,
                                                       timeout=measure_timeout)
                    measured.append({'pod': facts['name'], 'model': model['name'], 'source': 'measured now',
                                     'tokens_per_second': result['tokens_per_second'],
                                     'residency': result['residency']})
                except OllamaError as exc:
                    notes.append('Measuring %s on %s failed: %s' % (model['name'], facts['name'], exc))
            try:
                info['loaded'] = loaded_models(endpoint.ps(timeout=request_timeout))
            except OllamaError as exc:
                notes.append('Reading /api/ps of %s again failed: %s' % (facts['name'], exc))
        infos[facts['name']] = info
    if measure and check_mode:
        notes.append('Check mode: no generation was run to measure tokens/s.')
    stamp = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now()))
    return build_report(namespace, name, nodes, pods, replica_pods, infos, declared=declared, measurements=measured,
                        allow_cpu=allow_cpu, max_nodes=max_nodes, generated_at=stamp, notes=notes)
