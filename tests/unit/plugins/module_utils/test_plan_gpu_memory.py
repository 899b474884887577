# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan's GPU memory check: the KV cache and the compute graph counted before anything is pulled, a
model that does not fit named with the node type, the numbers and the settings that make it fit, and the
fallback to the file size when no architecture is known. Also the header read from a registry blob by
range requests (an in-memory registry: pure logic; tests/integration/collection/test_gpu_memory.py reads the
simulator's)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import re

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import ollama_client as oc
from ansible_collections.llmops.ollama.plugins.module_utils import vram
from ansible_collections.llmops.ollama.plugins.module_utils.plan import compute_plan

from test_plan import eks_facts, gpu_node
from test_vram import H200, SPEC, write_model

A10G = {'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.product': 'NVIDIA-A10G'}
LLAMA_8B = {'layers': 32, 'kv_heads': 8, 'head_size': 128, 'context_length': 131072, 'heads': 32,
            'embedding_length': 4096, 'vocab_size': 128256, 'family': 'llama'}


def a10g_facts(gpus=4):
    return eks_facts(nodes=[gpu_node('g5-a', gpus=gpus, memory=23028, labels=A10G, zone='a'),
                            gpu_node('g5-b', gpus=gpus, memory=23028, labels=A10G, zone='b')])


def llama(**env):
    return {'models': [{'name': 'llama3.1:8b', 'size': '4.9GB', 'architecture': dict(LLAMA_8B)}],
            'workload_env': dict(env)}


def errors_of(plan, variable='ollama_models'):
    return [e for e in plan['errors'] if e['variable'] == variable]


def test_a_model_that_fits_by_size_but_not_with_its_kv_cache():
    plan = compute_plan(a10g_facts(), llama(OLLAMA_CONTEXT_LENGTH='65536', OLLAMA_NUM_PARALLEL='4'))
    [error] = errors_of(plan)
    message = error['message']
    assert 'model llama3.1:8b needs 54.7 GiB of GPU memory once loaded' in message
    assert 'KV cache 32.0 GiB for 4 x 65536 tokens at f16' in message
    assert 'NVIDIA-A10G nodes (g5-a, g5-b: 1 x 23028 MiB per pod, 21.4 GiB free)' in message
    assert 'keep 1 of its 33 layers on the GPU' in message
    fix = error['fix']
    assert fix.startswith('any one of: OLLAMA_CONTEXT_LENGTH: "') and 'in ollama_workload_env' in fix
    assert 'OLLAMA_NUM_PARALLEL: "1"' in fix and 'ollama_allow_cpu_offload: true' in fix
    assert plan['models'][0]['vram']['fits'] is False and plan['models'][0]['vram']['source'] == 'declared'


def suggestions(fix):
    """The settings a fix text names: ({env var: value}, gpus_per_pod)."""
    env = dict(re.findall(r'(OLLAMA_[A-Z_]+): "?([0-9a-z_]+)"?', fix))
    gpus = re.search(r'ollama_gpus_per_pod: (\d+)', fix)
    return env, int(gpus.group(1)) if gpus else None


def test_each_suggested_setting_alone_makes_it_fit():
    """Every setting the fix names is real: the plan with it applied has no GPU memory error."""
    config = llama(OLLAMA_CONTEXT_LENGTH='32768', OLLAMA_NUM_PARALLEL='4')
    fix = errors_of(compute_plan(a10g_facts(), config))[0]['fix']
    # q8_0 is not enough here; q4_0 is
    assert 'OLLAMA_FLASH_ATTENTION: "1" and OLLAMA_KV_CACHE_TYPE: q4_0 in ollama_workload_env' in fix
    assert 'ollama_gpus_per_pod: 2 (needs 40.3 GiB over 2 GPUs)' in fix
    env, gpus = suggestions(fix)
    assert set(env) == {'OLLAMA_CONTEXT_LENGTH', 'OLLAMA_NUM_PARALLEL', 'OLLAMA_FLASH_ATTENTION',
                        'OLLAMA_KV_CACHE_TYPE'} and gpus == 2
    for name in ('OLLAMA_CONTEXT_LENGTH', 'OLLAMA_NUM_PARALLEL', 'OLLAMA_KV_CACHE_TYPE'):
        changed = dict(config['workload_env'], **{name: env[name]})
        if name == 'OLLAMA_KV_CACHE_TYPE':
            changed['OLLAMA_FLASH_ATTENTION'] = env['OLLAMA_FLASH_ATTENTION']
        assert errors_of(compute_plan(a10g_facts(), dict(config, workload_env=changed))) == [], name
    assert errors_of(compute_plan(a10g_facts(), dict(config, gpus_per_pod=gpus))) == []
    # and the context it names is the largest that fits, in steps of 1024 tokens
    longer = dict(config['workload_env'], OLLAMA_CONTEXT_LENGTH=str(int(env['OLLAMA_CONTEXT_LENGTH']) + 1024))
    assert errors_of(compute_plan(a10g_facts(), dict(config, workload_env=longer)))


def test_more_gpus_are_named_only_up_to_what_a_node_has():
    config = llama(OLLAMA_CONTEXT_LENGTH='32768', OLLAMA_NUM_PARALLEL='4')
    fix = errors_of(compute_plan(a10g_facts(gpus=1), config))[0]['fix']
    assert 'ollama_gpus_per_pod' not in fix


def test_cpu_offload_still_accepts_it_with_a_warning():
    config = dict(llama(OLLAMA_CONTEXT_LENGTH='65536', OLLAMA_NUM_PARALLEL='4'), allow_cpu_offload=True)
    plan = compute_plan(a10g_facts(), config)
    assert plan['ok'], plan['errors']
    assert any('llama3.1:8b needs 54.7 GiB' in w and 'allowed by ollama_allow_cpu_offload' in w
               for w in plan['warnings'])


def test_the_collection_defaults_fit_and_each_node_type_is_checked():
    facts = eks_facts(nodes=[gpu_node('h100', memory=81559), gpu_node('t4', memory=15360, labels={
        'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.product': 'Tesla-T4'})])
    config = {'models': [{'name': 'llama3.1:70b', 'size': '40GB', 'architecture': dict(
        LLAMA_8B, layers=80, heads=64, embedding_length=8192)}], 'anti_affinity': 'soft'}
    plan = compute_plan(facts, config)
    [error] = errors_of(plan)
    assert 'Tesla-T4 nodes (t4:' in error['message'] and 'H100' not in error['message']
    assert 'select larger GPUs with ollama_node_selector' in error['fix'] or 'any one of' in error['fix']
    big = compute_plan(eks_facts(nodes=[gpu_node('h100', memory=81559)]), config)
    assert big['ok'], big['errors']
    vram_plan = big['models'][0]['vram']
    assert (vram_plan['num_ctx'], vram_plan['parallel'], vram_plan['kv_cache_type']) == (4096, 2, 'f16')


def test_the_h200_medium_model_fits_its_card():
    facts = eks_facts(nodes=[gpu_node('h200', memory=H200['gpu']['memory_total_mib'], labels={
        'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.product': 'NVIDIA-H200'})])
    arch = dict(H200['architectures']['gpu-medium'])
    plan = compute_plan(facts, {'models': [{'name': 'gpu-medium', 'size': 1706044864, 'architecture': arch}],
                                'workload_env_defaults': {}})
    assert plan['ok'] and plan['models'][0]['vram']['total_bytes'] >= 2274 * vram.MIB  # the runner held 2274 MiB


def test_without_an_architecture_the_file_size_is_compared_and_the_plan_says_so():
    plan = compute_plan(eks_facts(), {'models': [{'name': 'm:1', 'size': '1GB',
                                                  'architecture_error': 'the registry has no manifest at http://r/x'}]})
    assert plan['ok']
    [warning] = [w for w in plan['warnings'] if 'm:1' in w]
    assert 'the registry has no manifest at http://r/x, so the GPU memory check compares its file size only' in warning
    assert 'declare architecture: {layers, kv_heads, head_size, context_length}' in warning
    assert plan['models'][0]['vram'] == {'source': 'file size', 'total_bytes': 10 ** 9, 'fits': True} or \
        plan['models'][0]['vram']['source'] == 'file size'
    plain = compute_plan(eks_facts(), {'models': [{'name': 'm:1', 'size': '1GB'}]})
    assert any('no GGUF header was read and it declares no architecture' in w for w in plain['warnings'])


@pytest.mark.parametrize('architecture, fragment', [
    ({'layers': 32}, 'architecture.kv_heads must be a whole number'),
    ({'layers': -1, 'kv_heads': 8, 'head_size': 128, 'context_length': 8192}, 'architecture.layers'),
    ('llama', 'must be a mapping'),
    (dict(LLAMA_8B, n_layers=32), 'unknown key(s) n_layers'),
])
def test_a_bad_declared_architecture_names_the_model_and_the_fix(architecture, fragment):
    plan = compute_plan(eks_facts(), {'models': [{'name': 'm:1', 'size': '1GB', 'architecture': architecture}]})
    [error] = errors_of(plan)
    assert error['message'].startswith('model m:1: ') and fragment in error['message']
    assert 'ollama show --verbose' in error['fix']


def test_heads_without_a_flash_attention_kernel_warn():
    arch = dict(H200['architectures']['tiny-a'])
    plan = compute_plan(eks_facts(), {'models': [{'name': 'tiny-a', 'size': 329408, 'architecture': arch}]})
    assert plan['ok']
    [warning] = [w for w in plan['warnings'] if 'tiny-a' in w]
    assert 'heads are 16 wide' in warning and 'OLLAMA_FLASH_ATTENTION: "0" in ollama_workload_env' in warning
    off = compute_plan(eks_facts(), {'models': [{'name': 'tiny-a', 'size': 329408, 'architecture': arch}],
                                     'workload_env': {'OLLAMA_FLASH_ATTENTION': '0'}})
    assert not [w for w in off['warnings'] if 'tiny-a' in w]


def test_bad_server_settings_warn():
    plan = compute_plan(a10g_facts(), dict(llama(OLLAMA_NUM_PARALLEL='many'), workload_env_defaults='x'))
    warnings = ' '.join(plan['warnings'])
    assert "ollama_workload_env: OLLAMA_NUM_PARALLEL='many' is not a whole number" in warnings
    assert 'ollama_workload_env_defaults is not a mapping' in warnings


def test_the_check_can_be_switched_off():
    config = dict(llama(OLLAMA_CONTEXT_LENGTH='65536', OLLAMA_NUM_PARALLEL='4'), gpu_memory_check=False)
    assert compute_plan(a10g_facts(), config)['ok']


# ---------------------------------------------------------------- the header from a registry blob

class Blob(object):
    def __init__(self, data, status, url):
        self.stream = io.BytesIO(data)
        self.status = status
        self.url = url

    def read(self, n=-1):
        return self.stream.read(n)

    def geturl(self):
        return self.url

    def close(self):
        pass


class Registry(object):
    """Answers manifests, a 307 to its storage for blobs (as the simulator's and Ollama's registries do),
    and Range requests there unless ``ranges`` is false."""

    def __init__(self, blobs, ranges=True):
        self.blobs = blobs
        self.ranges = ranges
        self.requests = []

    def __call__(self, url, method='GET', headers=None, timeout=None, **kwargs):
        headers = headers or {}
        self.requests.append((url, headers.get('Range')))
        digest = url.rsplit('/', 1)[1]
        data = self.blobs[digest]
        final = 'http://storage/%s' % digest
        if headers.get('Range') and self.ranges:
            start, end = [int(x) for x in headers['Range'][len('bytes='):].split('-')]
            return Blob(data[start:end + 1], 206, final)
        return Blob(data, 200, final)


def manifest(model_digest, params_digest, model_size):
    return {'layers': [{'mediaType': oc.MODEL_MEDIA_TYPE, 'digest': model_digest, 'size': model_size},
                       {'mediaType': oc.PARAMS_MEDIA_TYPE, 'digest': params_digest, 'size': 20}]}


@pytest.mark.parametrize('ranges', [True, False], ids=['range', 'no-range'])
def test_the_header_is_read_from_the_model_blob(tmp_path, ranges):
    data = write_model(tmp_path / 'm.gguf', dict(SPEC, vocab=20000)).read_bytes()
    registry = Registry({'sha256:m': data, 'sha256:p': json.dumps({'num_ctx': 4096}).encode()}, ranges)
    arch = oc.fetch_architecture('r:5000/library/m:1', manifest('sha256:m', 'sha256:p', len(data)), ['r:5000'],
                                 timeout=5, opener=registry)
    assert arch['layers'] == 3 and arch['num_ctx'] == 4096 and arch['blob_bytes'] == len(data)
    assert arch['range_statuses'] == ([206] if ranges else [200])
    assert registry.requests[0] == ('http://r:5000/v2/library/m/blobs/sha256:m', 'bytes=0-65535')
    if ranges:
        # later ranges go straight to the storage the registry redirected to
        assert len(registry.requests) > 2 and registry.requests[1][0] == 'http://storage/sha256:m'
        assert arch['fetched_bytes'] < len(data) / 2
    else:
        assert len(registry.requests) == 2  # one GET of the blob, read only as far as the header, and the params


def test_resolve_model_sizes_carries_the_architecture_or_why_not(tmp_path):
    data = write_model(tmp_path / 'm.gguf', SPEC).read_bytes()
    body = json.dumps(manifest('sha256:m', 'sha256:p', len(data))).encode()

    class Opener(Registry):
        def __call__(self, url, **kwargs):
            if '/manifests/' in url:
                if 'missing' in url:
                    raise OSError('connection refused')
                return Blob(body, 200, url)
            return Registry.__call__(self, url, **kwargs)

    opener = Opener({'sha256:m': data, 'sha256:p': b'{}'})
    models, details = oc.resolve_model_sizes(
        ['r:5000/library/m:1', {'name': 'r:5000/library/missing:1', 'size': '1GB'},
         {'name': 'r:5000/library/missing:2', 'architecture': {'layers': 2}}], ['r:5000'], timeout=5, opener=opener)
    assert models[0]['architecture']['layers'] == 3 and details[0]['architecture_source'] == 'gguf header'
    assert details[0]['range_statuses'] == [206] and details[0]['header_bytes'] < len(data)
    assert 'connection refused' in models[1]['architecture_error']
    assert details[2]['architecture_source'] == 'declared' and 'architecture_error' not in models[2]


def test_a_blob_that_is_not_gguf(tmp_path):
    registry = Registry({'sha256:m': b'PK\x03\x04' + b'\0' * 100, 'sha256:p': b'{}'})
    with pytest.raises(oc.OllamaError) as caught:
        oc.fetch_architecture('r:5000/library/m:1', manifest('sha256:m', 'sha256:p', 104), ['r:5000'], opener=registry)
    assert 'the GGUF header of r:5000/library/m:1 cannot be read: not a GGUF file' in str(caught.value)
    with pytest.raises(oc.OllamaError) as caught:
        oc.fetch_architecture('r:5000/library/m:1', {'layers': []}, ['r:5000'], opener=registry)
    assert 'no model layer' in str(caught.value)
