# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The VRAM estimate against what an NVIDIA H200 measured (tests/unit/fixtures/gpu/, written by gpu/run.sh),
and the GGUF header reader on models written with the gguf package here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import struct

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import vram

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
with open(os.path.join(REPO, 'tests', 'unit', 'fixtures', 'gpu', 'h200-ollama-0.11.4.json')) as handle:
    H200 = json.load(handle)
MIB = vram.MIB
LOADED = [c for c in H200['cases'] if 'ps' in c]
# Ollama 0.11.4 counts a q8_0 element as 1 byte and q4_0 as 0.5 (fs/ggml kvCacheBytesPerElement)
OLLAMA_WIDTH = {'f16': 2.0, 'q8_0': 1.0, 'q4_0': 0.5}


def arch_of(case):
    return dict(H200['architectures'][case['model']])


def settings_of(case):
    settings, warnings = vram.server_settings({}, case['env'])
    assert warnings == []
    return settings


def free():
    return H200['gpu']['cuda_free_bytes']


# ---------------------------------------------------------------- against the H200

@pytest.mark.parametrize('case', LOADED, ids=[c['label'] for c in LOADED])
def test_ollamas_own_estimate_is_mirrored_to_the_byte(case, monkeypatch):
    """With Ollama's KV widths the mirror gives /api/ps's size and size_vram exactly, and the same layer
    count Ollama's offload log shows (the 1.2 GiB case offloads 3 of 17 layers)."""
    monkeypatch.setattr(vram, 'KV_CACHE_WIDTH', OLLAMA_WIDTH)
    est = vram.estimate(arch_of(case), settings_of(case), 1, free(), calibrated=False)
    assert (est['total_bytes'], est['vram_bytes']) == (case['ps']['size'], case['ps']['size_vram'])
    assert est['layers_on_gpu'] == case['offload_layers']
    assert est['context_total'] == case['measured']['n_ctx']
    assert est['num_ctx'] == case['ps']['context_length'] or est['notes']


@pytest.mark.parametrize('case', LOADED, ids=[c['label'] for c in LOADED])
def test_the_kv_cache_is_what_llama_cpp_allocates(case):
    """K and V at the cache type's block width: f16 2 bytes, q8_0 34/32, q4_0 18/32 (on the GPU and the CPU)."""
    est = vram.estimate(arch_of(case), settings_of(case), 1, None)
    measured = (case['measured']['kv_mib'] or 0) + (case['measured']['cpu_kv_mib'] or 0)
    assert est['kv_bytes'] == measured * MIB


@pytest.mark.parametrize('case', [c for c in LOADED if c['ps']['size'] == c['ps']['size_vram']],
                         ids=[c['label'] for c in LOADED if c['ps']['size'] == c['ps']['size_vram']])
def test_the_plans_estimate_covers_what_the_runner_really_holds(case):
    """The runner process's memory (nvidia-smi) is at most the plan's estimate, and near it without flash
    attention, whose graph Ollama still counts in full."""
    est = vram.estimate(arch_of(case), settings_of(case), 1, free())
    assert est['fits']
    held = case['measured']['process_mib'] * MIB
    assert est['total_bytes'] >= held
    if not est['flash_attention']:
        assert est['total_bytes'] - held < 200 * MIB
        # weights, KV cache and the compute graph as llama.cpp lists its buffers, plus the runner's fixed part
        buffers = case['measured']['model_mib'] + case['measured']['kv_mib'] + case['measured']['compute_mib']
        assert abs(case['measured']['process_mib'] - buffers - 625) < 3


def test_ollamas_own_estimate_falls_short_for_small_layers_and_flash_attention():
    """Why the plan counts the runner's fixed memory: Ollama's 457 MiB + one layer is below what it holds."""
    short = [c['label'] for c in LOADED if c['ps']['size'] == c['ps']['size_vram']
             and c['ps']['size'] < c['measured']['process_mib'] * MIB]
    assert 'tiny-a P1 (model num_ctx)' in short and 'P1 ctx 2048 FA f16' in short and 'P1 ctx 2048' in short


def test_the_settings_rules_ollama_applies():
    by = dict((c['label'], c) for c in LOADED)
    capped = vram.estimate(arch_of(by['P1 ctx 65536 (capped)']), settings_of(by['P1 ctx 65536 (capped)']))
    assert capped['num_ctx'] == 32768 and 'capped at the trained context 32768' in capped['notes'][0]
    no_fa = vram.estimate(arch_of(by['P4 ctx 32768 q8_0 no FA']), settings_of(by['P4 ctx 32768 q8_0 no FA']))
    assert no_fa['kv_cache_type'] == 'f16' and 'needs OLLAMA_FLASH_ATTENTION=1' in no_fa['notes'][0]
    tiny = vram.estimate(arch_of(by['tiny-a P1 (model num_ctx)']), settings_of(by['tiny-a P1 (model num_ctx)']))
    assert tiny['num_ctx'] == 2048  # the model's PARAMETER num_ctx wins over OLLAMA_CONTEXT_LENGTH 8192
    parallel = vram.estimate(arch_of(by['P4 ctx 8192']), settings_of(by['P4 ctx 8192']))
    assert (parallel['parallel'], parallel['context_total']) == (4, 32768)


def test_a_partial_fit_is_predicted_as_ollama_places_it():
    case = [c for c in LOADED if c['ps']['size_vram'] < c['ps']['size']][0]
    settings = settings_of(case)
    est = vram.estimate(arch_of(case), settings, 1, free())
    assert not est['fits'] and 0 < est['layers_on_gpu'] < est['layers']


def test_the_known_failures_are_recorded():
    crashed = [c for c in H200['cases'] if 'known_failure' in c]
    assert crashed and 'fattn.cu' in ' '.join(crashed[0]['crash'])
    checks = H200['generate_check']
    assert not checks['generate_gpu']['failed'] and checks['generate_gpu']['processor'] == '100% GPU'
    assert checks['generate_partial']['failed'] and checks['generate_cpu']['failed']


def test_usable_memory_from_the_node_label():
    assert vram.usable_bytes(H200['gpu']['memory_total_mib']) <= H200['gpu']['cuda_free_bytes']
    assert H200['gpu']['cuda_free_bytes'] - vram.usable_bytes(H200['gpu']['memory_total_mib']) < 2 * MIB


# ---------------------------------------------------------------- settings

def test_server_settings_merge_like_the_workload_role():
    settings, warnings = vram.server_settings()
    assert (settings['OLLAMA_NUM_PARALLEL'], settings['OLLAMA_CONTEXT_LENGTH'], settings['OLLAMA_FLASH_ATTENTION']) \
        == (2, 4096, True)
    settings = vram.server_settings(None, {'OLLAMA_NUM_PARALLEL': 4, 'OLLAMA_KV_CACHE_TYPE': 'Q8_0'})[0]
    assert settings['OLLAMA_NUM_PARALLEL'] == 4 and settings['OLLAMA_KV_CACHE_TYPE'] == 'q8_0'
    settings = vram.server_settings({'OLLAMA_KEEP_ALIVE': '1h'}, {})[0]
    assert settings == dict(vram.OLLAMA_DEFAULTS, OLLAMA_KV_CACHE_TYPE='')
    settings = vram.server_settings({}, {'OLLAMA_NUM_PARALLEL': '0', 'OLLAMA_FLASH_ATTENTION': 'yes'})[0]
    assert settings['OLLAMA_NUM_PARALLEL'] == 1 and settings['OLLAMA_FLASH_ATTENTION'] is True  # ParseBool fails: on
    settings, warnings = vram.server_settings({}, {'OLLAMA_CONTEXT_LENGTH': '8k', 'OLLAMA_KV_CACHE_TYPE': 'q5_1'})
    assert settings['OLLAMA_CONTEXT_LENGTH'] == 4096 and settings['OLLAMA_KV_CACHE_TYPE'] == ''
    assert len(warnings) == 2 and "OLLAMA_CONTEXT_LENGTH='8k' is not a whole number" in warnings[0]


def test_the_workload_defaults_are_the_roles():
    import yaml
    with open(os.path.join(REPO, 'roles', 'ollama_workload', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)['ollama_workload_env_defaults']
    for key, value in vram.WORKLOAD_ENV_DEFAULTS.items():
        assert str(defaults[key]) == value, key


# ---------------------------------------------------------------- declared fields and fixes

LLAMA_70B = {'layers': 80, 'kv_heads': 8, 'head_size': 128, 'context_length': 131072}


def test_declared_architecture():
    arch, problem = vram.declared_architecture(dict(LLAMA_70B, heads=64, embedding_length=8192, vocab_size=128256,
                                                    family='llama'), 42 * 10 ** 9)
    assert problem is None and arch['weights_bytes'] == 42 * 10 ** 9 and len(arch['layer_bytes']) == 80
    est = vram.estimate(arch, vram.server_settings({}, {'OLLAMA_NUM_PARALLEL': '2'})[0])
    assert est['kv_bytes'] == 80 * 2 * 4096 * 256 * 8 * 2


@pytest.mark.parametrize('declared, fragment', [
    ('big', 'must be a mapping'),
    ({'layers': 80, 'kv_heads': 8, 'head_size': 128}, 'architecture.context_length must be a whole number'),
    (dict(LLAMA_70B, layers=0), 'architecture.layers must be a whole number >= 1'),
    (dict(LLAMA_70B, kv_heads='eight'), "got 'eight'"),
    (dict(LLAMA_70B, heads_kv=8), 'unknown key(s) heads_kv'),
])
def test_declared_architecture_bad_input(declared, fragment):
    arch, problem = vram.declared_architecture(declared, 10 ** 9)
    assert arch is None and fragment in problem


def test_each_fix_alone_makes_the_model_fit():
    arch = vram.declared_architecture(dict(LLAMA_70B, heads=64, embedding_length=8192, vocab_size=128256,
                                           family='llama'), 20 * 10 ** 9)[0]
    settings = vram.server_settings({}, {'OLLAMA_NUM_PARALLEL': '4', 'OLLAMA_CONTEXT_LENGTH': '16384'})[0]
    free_bytes = vram.usable_bytes(46068)  # an L40S
    assert not vram.estimate(arch, settings, 1, free_bytes)['fits']
    fixes = vram.fix_settings(arch, settings, 1, free_bytes, 4)
    names = [f[0] for f in fixes]
    assert names == ['OLLAMA_CONTEXT_LENGTH', 'OLLAMA_NUM_PARALLEL', 'OLLAMA_KV_CACHE_TYPE', 'gpus_per_pod']
    for name, value, result in fixes:
        assert result['fits'], name
    context = dict((f[0], f[1]) for f in fixes)['OLLAMA_CONTEXT_LENGTH']
    assert context % 1024 == 0 and not vram.estimate(
        arch, dict(settings, OLLAMA_CONTEXT_LENGTH=context + 2048), 1, free_bytes)['fits']


def test_more_gpus_split_the_layers():
    arch = vram.declared_architecture(dict(LLAMA_70B, heads=64, embedding_length=8192, vocab_size=128256,
                                           family='llama'), 42 * 10 ** 9)[0]
    settings = vram.server_settings()[0]
    one = vram.estimate(arch, settings, 1, vram.usable_bytes(23028))
    four = vram.estimate(arch, settings, 4, vram.usable_bytes(23028))
    assert not one['fits'] and four['fits'] and len([b for b in four['gpu_bytes'] if b]) == 4


# ---------------------------------------------------------------- the GGUF header

def write_model(path, spec, tensor_type=None):
    """A small llama GGUF with the gguf package; optionally its weight matrices quantized."""
    gguf = pytest.importorskip('gguf')
    np = pytest.importorskip('numpy')
    writer = gguf.GGUFWriter(str(path), 'llama')
    writer.add_context_length(spec['ctx'])
    writer.add_embedding_length(spec['embd'])
    writer.add_block_count(spec['layers'])
    writer.add_feed_forward_length(spec['ff'])
    writer.add_head_count(spec['heads'])
    writer.add_head_count_kv(spec['kv_heads'])
    if spec.get('key_length'):
        writer.add_key_length(spec['key_length'])
        writer.add_value_length(spec['key_length'])
    writer.add_tokenizer_model('llama')
    writer.add_token_list(['t%d' % i for i in range(spec['vocab'])])
    writer.add_token_scores([0.0] * spec['vocab'])
    rng = np.random.default_rng(1)
    head = spec.get('key_length') or spec['embd'] // spec['heads']

    def tensor(name, shape, matrix=True):
        data = rng.standard_normal(shape).astype(np.float32)
        if matrix and tensor_type is not None:
            writer.add_tensor(name, gguf.quants.quantize(data, tensor_type), raw_dtype=tensor_type)
        elif matrix:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, data)

    tensor('token_embd.weight', (spec['vocab'], spec['embd']))
    for i in range(spec['layers']):
        tensor('blk.%d.attn_norm.weight' % i, (spec['embd'],), matrix=False)
        tensor('blk.%d.attn_q.weight' % i, (spec['heads'] * head, spec['embd']))
        tensor('blk.%d.attn_k.weight' % i, (spec['kv_heads'] * head, spec['embd']))
        tensor('blk.%d.attn_v.weight' % i, (spec['kv_heads'] * head, spec['embd']))
        tensor('blk.%d.attn_output.weight' % i, (spec['embd'], spec['heads'] * head))
        tensor('blk.%d.ffn_gate.weight' % i, (spec['ff'], spec['embd']))
        tensor('blk.%d.ffn_up.weight' % i, (spec['ff'], spec['embd']))
        tensor('blk.%d.ffn_down.weight' % i, (spec['embd'], spec['ff']))
    tensor('output_norm.weight', (spec['embd'],), matrix=False)
    tensor('output.weight', (spec['vocab'], spec['embd']))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


SPEC = dict(ctx=8192, embd=128, layers=3, ff=320, heads=4, kv_heads=2, vocab=300)


def tensor_data_sizes(path):
    """Each layer group's bytes as the file stores them (gguf's own reader), for comparison."""
    gguf = pytest.importorskip('gguf')
    sizes = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        group = vram._group(t.name)[0]
        sizes[group] = sizes.get(group, 0) + int(t.n_bytes)
    return sizes


class CountingFetch(object):
    def __init__(self, path):
        self.data = open(path, 'rb').read()
        self.ranges = []

    def __call__(self, offset, length):
        self.ranges.append((offset, length))
        return self.data[offset:offset + length]


@pytest.mark.parametrize('quantized', [False, True], ids=['f16', 'q8_0'])
def test_the_header_gives_the_architecture_and_layer_sizes(tmp_path, quantized):
    gguf = pytest.importorskip('gguf')
    path = write_model(tmp_path / 'm.gguf', dict(SPEC, key_length=48),
                       gguf.GGMLQuantizationType.Q8_0 if quantized else None)
    fetch = CountingFetch(path)
    arch = vram.parse_gguf(fetch)
    assert (arch['family'], arch['layers'], arch['context_length'], arch['embedding_length']) == ('llama', 3, 8192, 128)
    assert (arch['heads'], arch['kv_heads'], arch['head_size'], arch['value_size'], arch['vocab_size']) == (4, 2, 48, 48, 300)
    sizes = tensor_data_sizes(path)
    assert arch['layer_bytes'] == [sizes['blk.%d' % i] for i in range(3)]
    assert arch['output_bytes'] == sizes['output_norm'] + sizes['output']
    assert arch['weights_bytes'] == sum(sizes.values())
    # the header alone: the reader stops where the tensor data starts
    assert arch['header_bytes'] == gguf.GGUFReader(str(path)).data_offset
    assert arch['fetched_bytes'] < len(fetch.data) / 4 and fetch.ranges[0] == (0, 65536)


def test_fixed_size_arrays_are_skipped_not_fetched(tmp_path):
    """An 8 MB float array in the metadata is stepped over: no request reads it."""
    gguf = pytest.importorskip('gguf')
    path = tmp_path / 'm.gguf'
    writer = gguf.GGUFWriter(str(path), 'llama')
    writer.add_block_count(1)
    writer.add_array('llama.padding', [0.5] * 2000000)
    writer.add_token_list(['a', 'b'])
    np = pytest.importorskip('numpy')
    writer.add_tensor('blk.0.attn_q.weight', np.zeros((8, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    fetch = CountingFetch(path)
    arch = vram.parse_gguf(fetch)
    assert arch['layer_bytes'] == [128] and arch['header_bytes'] > 8000000
    assert arch['fetched_bytes'] < 200000 and len(fetch.ranges) == 2


def test_the_simulators_tiny_model_reads_as_on_the_gpu_machine(tmp_path):
    import sys
    sys.path.insert(0, os.path.join(REPO, 'sim'))
    from sim import models
    models.write_gguf(tmp_path / 'tiny-a.gguf', 'tiny-a', models.MODELS['tiny-a'])
    arch = vram.parse_gguf(vram.file_fetch(str(tmp_path / 'tiny-a.gguf')))
    measured = H200['architectures']['tiny-a']
    for key, value in arch.items():
        if key not in ('fetched_bytes', 'requests'):
            assert measured[key] == value, key


@pytest.mark.parametrize('data, fragment', [
    (b'', 'ends inside its header'),
    (b'GGML' + b'\0' * 60, 'not a GGUF file'),
    (b'GGUF' + struct.pack('<I', 1) + b'\0' * 60, 'version 1 is not supported'),
    (b'GGUF' + struct.pack('<IQQ', 3, 10 ** 9, 1), 'implausible counts'),
    (b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + struct.pack('<Q', 3) + b'abc' + struct.pack('<I', 77),
     'unknown metadata value type 77'),
    (b'GGUF' + struct.pack('<IQQ', 3, 0, 0), 'names no general.architecture'),
    (b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + struct.pack('<Q', 2 ** 40), 'a string of'),
])
def test_bad_headers(data, fragment):
    with pytest.raises(vram.GGUFError) as caught:
        vram.parse_gguf(lambda offset, length: data[offset:offset + length])
    assert fragment in str(caught.value)


def test_a_truncated_file(tmp_path):
    path = write_model(tmp_path / 'm.gguf', SPEC)
    data = open(path, 'rb').read()[:2000]
    with pytest.raises(vram.GGUFError) as caught:
        vram.parse_gguf(lambda offset, length: data[offset:offset + length])
    assert 'ends inside its header' in str(caught.value)


def test_a_header_above_the_limit(tmp_path):
    path = write_model(tmp_path / 'm.gguf', SPEC)
    with pytest.raises(vram.GGUFError) as caught:
        vram.parse_gguf(vram.file_fetch(str(path)), limit=1024)
    assert 'runs past' in str(caught.value)
