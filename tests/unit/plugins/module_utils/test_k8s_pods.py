# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pod summaries shared by pod_info and ollama_info. A terminating pod, which the simulator removes within
seconds, is the shape the integration tests rarely catch, so it is pinned here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.module_utils import k8s


def pod(name, phase='Running', ready=True, deleting=False, node='gpu-0'):
    meta = {'name': name, 'namespace': 'ai', 'uid': 'u-' + name}
    if deleting:
        meta['deletionTimestamp'] = '2026-11-27T00:00:00Z'
    return {'metadata': meta, 'spec': {'nodeName': node, 'containers': [{'image': 'ollama/ollama:0.11.4'}]},
            'status': {'phase': phase, 'podIP': '10.244.0.5',
                       'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'False'}]}}


class ListingApi(object):
    def __init__(self, items):
        self.items, self.queries = items, []

    def list_all(self, path, **query):
        self.queries.append((path, query))
        return self.items


def test_selector_text():
    assert k8s.selector_text({'b': '2', 'a': '1'}) == 'a=1,b=2'
    assert k8s.selector_text('app=x') == 'app=x'


def test_only_running_pods_that_are_not_terminating_count_as_running():
    api = ListingApi([pod('c', deleting=True), pod('b', phase='Pending', ready=False, node=None), pod('a')])
    pods, running = k8s.read_pods(api, 'ai', {'app': 'ollama'})
    assert api.queries == [('/api/v1/namespaces/ai/pods', {'labelSelector': 'app=ollama'})]
    assert [p['name'] for p in pods] == ['a', 'b', 'c'] and running == ['a']
    assert pods[0]['line'] == 'a on gpu-0 (Running, ready, ollama/ollama:0.11.4)'
    assert pods[1]['node'] == '(not scheduled)' and not pods[1]['ready']
    assert pods[2]['terminating'] and ', terminating' in pods[2]['line']


def test_an_init_container_that_failed_twice_is_reported_with_its_message():
    from ansible_collections.llmops.ollama.plugins.module_utils.k8s import init_error
    failed = {'exitCode': 1, 'message': 'fetching\ncannot fetch library/x:latest from http://r:5000. Fix: y'}
    once = {'initContainerStatuses': [{'name': 'warm', 'restartCount': 0, 'state': {'terminated': failed}}]}
    assert init_error(once) == ''  # one failure: the kubelet retries it
    twice = {'initContainerStatuses': [{'name': 'registry-0', 'restartCount': 0, 'state': {'running': {}}},
                                       {'name': 'warm', 'restartCount': 2, 'state': {'waiting': {}},
                                        'lastState': {'terminated': failed}}]}
    assert init_error(twice) == 'warm: cannot fetch library/x:latest from http://r:5000. Fix: y'
    done = {'initContainerStatuses': [{'name': 'warm', 'restartCount': 3, 'state': {'terminated': {'exitCode': 0}},
                                       'lastState': {'terminated': failed}}]}
    assert init_error(done) == ''  # it ended well at last


def test_a_panic_is_the_telling_line_not_its_stack_trace():
    from ansible_collections.llmops.ollama.plugins.module_utils.k8s import init_error
    message = ('time="..." level=info msg="redis not configured"\npanic: Get "http://10.0.0.9:5000/v2/": dial tcp '
               '10.0.0.9:5000: i/o timeout\n\ngoroutine 1 [running]:\nmain.main()\n\tmain.go:26 +0x1a')
    status = {'initContainerStatuses': [{'name': 'registry-0', 'restartCount': 2, 'state': {'waiting': {}},
                                         'lastState': {'terminated': {'exitCode': 2, 'message': message}}}]}
    assert init_error(status) == ('registry-0: panic: Get "http://10.0.0.9:5000/v2/": dial tcp 10.0.0.9:5000: '
                                  'i/o timeout')
