# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The status report's pure logic: build_report over API objects and Ollama answers written here (the shapes of
/api/v1/nodes, /api/v1/pods, endpoint_info), and its two renderings. The integration test
(tests/integration/collection/test_status_report.py) reads a real deployment; these pin the problems that a
healthy simulator never shows (a replica not Ready, a model missing, a model partly on the CPU, a hostile name)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from html.parser import HTMLParser

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import status

DIGEST_A = 'sha256:' + 'a' * 64
DIGEST_A2 = 'sha256:' + 'c' * 64
DIGEST_B = 'sha256:' + 'b' * 64
MiB = 1024 * 1024


def node(name, gpus=1, memory_mib=24564, ready=True, product='NVIDIA-H200'):
    labels = {'kubernetes.io/hostname': name}
    if gpus:
        labels.update({'nvidia.com/gpu.memory': str(memory_mib), 'nvidia.com/gpu.product': product,
                       'nvidia.com/gpu.present': 'true'})
    alloc = {'nvidia.com/gpu': str(gpus)} if gpus else {}
    return {'metadata': {'name': name, 'labels': labels},
            'status': {'capacity': dict(alloc), 'allocatable': dict(alloc, memory='64Gi'),
                       'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'False'}]}}


def pod(name, node_name, gpus=1, phase='Running', ready=True, restarts=0):
    container = {'name': 'ollama', 'image': 'ollama/ollama:0.32.15'}
    if gpus:
        container['resources'] = {'limits': {'nvidia.com/gpu': str(gpus)}}
    return {'metadata': {'name': name, 'namespace': 'ai'},
            'spec': {'nodeName': node_name, 'containers': [container, {'name': 'gate', 'image': 'nginx'}]},
            'status': {'phase': phase, 'podIP': '10.0.0.1',
                       'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'False'}],
                       'containerStatuses': [{'name': 'ollama', 'restartCount': restarts},
                                             {'name': 'gate', 'restartCount': 0}]}}


def info(models, loaded=(), reachable=True, error=None):
    return {'reachable': reachable, 'version': '0.32.15' if reachable else None, 'error': error,
            'models': [{'name': n, 'digest': d, 'size': s} for n, d, s in models],
            'loaded': [{'name': n, 'size': s, 'size_vram': v, 'gpu_percent': round(100.0 * v / s, 1),
                        'fully_on_gpu': v >= s, 'processor': '100% GPU' if v >= s else 'mixed'}
                       for n, s, v in loaded]}


def healthy():
    nodes = [node('gpu-0'), node('gpu-1'), node('cpu-0', gpus=0)]
    replicas = [pod('ollama-0', 'gpu-0'), pod('ollama-1', 'gpu-1')]
    other = pod('trainer', 'gpu-1', gpus=0)
    infos = {
        'ollama-0': info([('tiny-a:latest', DIGEST_A, 330043), ('tiny-b:latest', DIGEST_B, 423259)],
                         loaded=[('tiny-a:latest', 500 * MiB, 500 * MiB)]),
        'ollama-1': info([('tiny-a:latest', DIGEST_A, 330043), ('tiny-b:latest', DIGEST_B, 423259)]),
    }
    return nodes, replicas + [other], replicas, infos


def report_of(nodes, pods, replicas, infos, **kwargs):
    kwargs.setdefault('declared', ['tiny-a', {'name': 'tiny-b:latest'}])
    return status.build_report('ai', 'ollama', nodes, pods, replicas, infos, generated_at='2026-12-01 12:00:00 UTC',
                               **kwargs)


def problems(report):
    return [p['text'] for p in report['problems']]


class Text(HTMLParser):
    """The page's text and its tags, as a browser would parse them (the integration test uses Chromium)."""

    def __init__(self):
        HTMLParser.__init__(self)
        self.text, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page):
    parser = Text()
    parser.feed(page)
    return ' '.join(parser.text), parser.tags


# ---------------------------------------------------------------- the report

def test_a_healthy_deployment_has_no_problem_and_counts_the_gpus_of_every_pod():
    report = report_of(*healthy())
    assert report['ok'] and report['problems'] == []
    assert [n['name'] for n in report['nodes']] == ['gpu-0', 'gpu-1']  # the CPU node runs no replica
    gpu0 = report['nodes'][0]
    assert (gpu0['gpu_allocatable'], gpu0['gpu_used'], gpu0['gpu_memory_mib']) == (1, 1, 24564)
    assert gpu0['gpu_memory_bytes'] == 24564 * MiB and gpu0['vram_used_bytes'] == 500 * MiB
    assert report['nodes'][1]['replicas'] == ['ollama-1']
    cells = dict((c['name'], c) for c in report['replicas'][0]['models'])
    assert cells['tiny-a:latest']['loaded'] and cells['tiny-a:latest']['gpu_percent'] == 100.0
    assert not cells['tiny-b:latest']['loaded'] and cells['tiny-b:latest']['digest'] == DIGEST_B
    assert report['counts'] == {'replicas': 2, 'ready': 2, 'gpu_nodes': 2, 'models': 2, 'errors': 0, 'warnings': 0}


def test_not_ready_missing_partly_on_cpu_restarts_and_differing_digests_are_problems():
    nodes, pods, replicas, infos = healthy()
    replicas[1] = pod('ollama-1', 'gpu-1', ready=False, restarts=3)
    infos['ollama-0'] = info([('tiny-a:latest', DIGEST_A, 330043)], loaded=[('tiny-a:latest', 1000, 640)])
    infos['ollama-1'] = info([('tiny-a:latest', DIGEST_A2, 330043), ('tiny-b:latest', DIGEST_B, 423259),
                              ('extra:7b', DIGEST_B, 99)])
    report = report_of(nodes, pods, replicas, infos)
    texts = problems(report)
    assert 'ollama-1 is not Ready' in texts
    assert 'ollama-1 restarted 3 time(s)' in texts
    assert 'tiny-b:latest is missing on ollama-0' in texts
    assert any(t.startswith('tiny-a:latest on ollama-0 is 64.0% in GPU memory') for t in texts)
    assert any(t.startswith('tiny-a:latest differs between replicas: aaaaaaaaaaaa on ollama-0; cccccccccccc on '
                            'ollama-1') for t in texts)
    assert not report['ok'] and report['counts']['errors'] == 3
    severities = [p['severity'] for p in report['problems']]
    assert severities == sorted(severities, key=lambda s: s != 'error')  # errors first
    # A model no one declared is listed where it is, and is not missing anywhere.
    assert report['models'] == ['tiny-a:latest', 'tiny-b:latest', 'extra:7b']
    assert 'extra:7b' not in [c['name'] for c in report['replicas'][0]['models']]
    assert not any('extra' in t for t in texts)


def test_allow_cpu_turns_cpu_residency_into_a_warning():
    nodes, pods, replicas, infos = healthy()
    infos['ollama-1'] = info([('tiny-a:latest', DIGEST_A, 330043), ('tiny-b:latest', DIGEST_B, 423259)],
                             loaded=[('tiny-b:latest', 1000, 0)])
    strict = report_of(nodes, pods, replicas, infos)
    assert [p['severity'] for p in strict['problems']] == ['error']
    allowed = report_of(nodes, pods, replicas, infos, allow_cpu=True)
    assert allowed['ok'] and [p['severity'] for p in allowed['problems']] == ['warning']
    assert 'accepted: allow_cpu' in allowed['problems'][0]['text']


def test_unreachable_replica_node_not_ready_and_a_replica_on_a_cpu_node():
    nodes, pods, replicas, infos = healthy()
    nodes[1] = node('gpu-1', ready=False)
    replicas.append(pod('ollama-2', 'cpu-0', gpus=0))
    infos['ollama-1'] = info([], reachable=False, error='pod ai/ollama-1 does not answer on port 8080')
    infos['ollama-2'] = info([('tiny-a:latest', DIGEST_A, 1), ('tiny-b:latest', DIGEST_B, 1)])
    report = report_of(nodes, pods + [replicas[-1]], replicas, infos)
    texts = problems(report)
    assert 'Ollama on ollama-1 did not answer: pod ai/ollama-1 does not answer on port 8080' in texts
    assert 'node gpu-1, which runs ollama-1, is not Ready' in texts
    assert 'ollama-2 run(s) on cpu-0, a node without GPUs' in texts
    assert [n['name'] for n in report['nodes']] == ['cpu-0', 'gpu-0', 'gpu-1']
    # An unreachable replica lists no model rather than "missing" ones.
    assert report['replicas'][1]['models'] == []


def test_pending_replica_and_node_limit():
    nodes = [node('gpu-%02d' % i) for i in range(12)]
    replicas = [pod('ollama-0', 'gpu-07'), pod('ollama-1', None, phase='Pending', ready=False)]
    report = report_of(nodes, replicas, replicas, {'ollama-0': info([('tiny-a:latest', DIGEST_A, 1),
                                                                     ('tiny-b:latest', DIGEST_B, 1)])}, max_nodes=3)
    assert [n['name'] for n in report['nodes']] == ['gpu-07', 'gpu-00', 'gpu-01']
    assert report['nodes_hidden'] == 9 and report['counts']['gpu_nodes'] == 12
    assert 'ollama-1 is Pending, not Running' in problems(report)
    assert 'ollama-1 not scheduled on any node' in problems(report)
    assert any('9 more GPU nodes' in line for line in status.render_table(report))


def test_measurements_from_generate_check_results_and_plain_dicts():
    nodes, pods, replicas, infos = healthy()
    measurements = [
        # a loop's results as verify.yml registers them
        {'item': ['ollama-0', 'tiny-a'], 'model': 'tiny-a', 'endpoint': {'pod': 'ollama-0'}, 'tokens_per_second': 42.5},
        {'item': ['ollama-1', 'tiny-a'], 'failed': True, 'msg': 'no figure'},
        {'pod': 'ollama-1', 'model': 'tiny-b:latest', 'tokens_per_second': 7, 'source': 'measured now'},
        {'pod': 'ollama-1', 'model': 'tiny-b', 'tokens_per_second': True},  # not a figure
        'not a dict',
        # measured, then unloaded again (one model loaded at a time): its residency at the measurement stays
        {'pod': 'ollama-0', 'model': 'tiny-b', 'tokens_per_second': 3.0, 'residency': {'gpu_percent': 55.5}},
    ]
    report = report_of(nodes, pods, replicas, infos, measurements=measurements)
    cells = dict(((r['name'], c['name']), c) for r in report['replicas'] for c in r['models'])
    assert cells[('ollama-0', 'tiny-a:latest')]['tokens_per_second'] == 42.5
    assert cells[('ollama-0', 'tiny-a:latest')]['tokens_source'] == 'verification'
    assert cells[('ollama-1', 'tiny-b:latest')]['tokens_per_second'] == 7.0
    assert cells[('ollama-1', 'tiny-a:latest')]['tokens_per_second'] is None
    assert cells[('ollama-0', 'tiny-b:latest')]['measured_gpu_percent'] == 55.5
    assert any(re.search(r'^ollama-0\s+tiny-b:latest .* not loaded \(55\.5% GPU when measured\)\s+3\.0$', line)
               for line in status.render_table(report))
    assert 'not loaded now; 55.5% in GPU memory when measured' in status.render_html(report)


# ---------------------------------------------------------------- the table

def test_table_shows_nodes_replicas_models_and_problems_in_columns():
    nodes, pods, replicas, infos = healthy()
    replicas[1] = pod('ollama-1', 'gpu-1', ready=False)
    lines = status.render_table(report_of(nodes, pods, replicas, infos,
                                          measurements=[{'pod': 'ollama-0', 'model': 'tiny-a', 'tokens_per_second': 12.34}]))
    text = '\n'.join(lines)
    assert lines[0] == 'Ollama ai/ollama: 1 of 2 replica(s) Ready, 2 model(s), 1 problem(s) at 2026-12-01 12:00:00 UTC'
    header = next(line for line in lines if line.startswith('NODE '))
    row = next(line for line in lines if line.startswith('gpu-0 '))
    # Columns line up: each value starts where its header does.
    assert row.index('1/1') == header.index('GPUS USED/ALLOC')
    assert row.index('1 x 24564 MiB') == header.index('GPU MEMORY')
    assert row.index('500.0 MiB') == header.index('OLLAMA VRAM')
    assert re.search(r'^ollama-1\s+gpu-1\s+Running\s+NO\s+0\s+0\.32\.15$', text, re.M)
    assert re.search(r'^ollama-0\s+tiny-a:latest\s+322\.3 KiB\s+aaaaaaaaaaaa\s+yes\s+100\.0% GPU \(100% GPU\)\s+12\.3$',
                     text, re.M)
    assert re.search(r'^ollama-0\s+tiny-b:latest\s+413\.3 KiB\s+bbbbbbbbbbbb\s+no\s+not loaded\s+-$', text, re.M)
    assert lines[-1] == 'ERROR: ollama-1 is not Ready'


def test_human_bytes():
    assert [status.human_bytes(v) for v in (None, 0, 1023, 1024, 330043, 501827328, 2 * 1024 ** 4)] == \
        ['-', '0 B', '1023 B', '1.0 KiB', '322.3 KiB', '478.6 MiB', '2.0 TiB']


# ---------------------------------------------------------------- the page

def test_page_is_self_contained_and_highlights_problems():
    nodes, pods, replicas, infos = healthy()
    replicas[1] = pod('ollama-1', 'gpu-1', ready=False)
    infos['ollama-0'] = info([('tiny-a:latest', DIGEST_A, 330043)], loaded=[('tiny-a:latest', 1000, 640)])
    page = status.render_html(report_of(nodes, pods, replicas, infos))
    text, tags = parse(page)
    # Nothing to fetch: no script, no link, no image, no url() in the CSS, no external reference at all.
    assert not [t for t, _attrs in tags if t in ('script', 'link', 'img', 'iframe', 'object', 'embed')]
    assert 'url(' not in page and 'http://' not in page and 'https://' not in page and '@import' not in page
    assert "default-src 'none'" in page
    assert 'ollama-1 is not Ready' in text and 'tiny-b:latest is missing on ollama-0' in text
    classes = [a.get('class', '') for _tag, a in tags]
    assert 'cell missing' in classes and 'cell partial' in classes and 'replica bad' in classes
    # The residency bar: 64% green, 36% red.
    assert '<div class="gpu" style="width:64.0%"></div><div class="cpu" style="width:36.0%"></div>' in page
    assert 'aaaaaaaaaaaa' in text and DIGEST_A in page  # the short digest shown, the full one in its title


@pytest.mark.parametrize('hostile', ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "a'b&c"])
def test_every_value_from_the_cluster_is_escaped(hostile):
    nodes, pods, replicas, infos = healthy()
    nodes[0]['metadata']['labels']['nvidia.com/gpu.product'] = hostile
    infos['ollama-0'] = info([('tiny-a:latest', DIGEST_A, 1), ('tiny-b:latest', DIGEST_B, 1), (hostile, DIGEST_B, 1)],
                             loaded=[(hostile, 10, 5)])
    infos['ollama-1'] = info([], reachable=False, error=hostile)
    report = status.build_report(hostile, hostile, nodes, pods, replicas, infos, declared=['tiny-a', 'tiny-b'])
    page = status.render_html(report)
    tags = parse(page)[1]
    assert hostile not in page
    assert not [t for t, _attrs in tags if t in ('script', 'img')]
    assert not [a for _tag, a in tags if any(k.startswith('on') for k in a)]
    assert page.count(status.html.escape(hostile, quote=True)) >= 4


def test_a_terminating_replica_on_a_lost_node_is_highlighted_and_not_read():
    nodes, pods, replicas, infos = healthy()
    nodes[1] = node('gpu-1', ready=False)
    replicas[1] = pod('ollama-1', 'gpu-1', ready=False)
    replicas[1]['metadata']['deletionTimestamp'] = '2026-12-01T12:00:00Z'
    del infos['ollama-1']  # collect() reads no terminating replica
    report = report_of(nodes, pods, replicas, infos)
    assert problems(report) == ['node gpu-1, which runs ollama-1, is not Ready', 'ollama-1 is terminating']
    page = status.render_html(report)
    assert '<div class="replica bad" data-replica="ollama-1">' in page
    assert '<div class="node bad" data-node="gpu-1">' in page
    assert page.count('<td class="cell">terminating</td>') == 2
