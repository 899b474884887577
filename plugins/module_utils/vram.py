# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU memory a model takes once Ollama loads it: weights, KV cache and compute graph.

Pure functions that mirror Ollama 0.11.4, so the plan can tell before anything is pulled whether a
model stays on the GPU or spills layers onto the CPU:

- the context: ``num_ctx`` is the model's own parameter (its Modelfile) or ``OLLAMA_CONTEXT_LENGTH``;
  the runner gets ``num_ctx x OLLAMA_NUM_PARALLEL`` tokens of KV cache, each request capped at the
  model's trained context length (llm/server.go, server/sched.go);
- the KV cache per layer: tokens x (key length + value length) x KV heads x the cache type's width;
  ``OLLAMA_KV_CACHE_TYPE`` counts only with ``OLLAMA_FLASH_ATTENTION`` on and a model that supports it;
- the compute graph by architecture (fs/ggml GraphSize), the CUDA minimum of 457 MiB per GPU, one
  layer held back as a buffer, and the layer-by-layer placement over the pod's GPUs
  (llm/memory.go EstimateGPULayers): the model fits when every layer and the output layer land on GPUs.

The model's architecture comes from its GGUF header (:func:`parse_gguf`, which reads the header only,
through a ``fetch(offset, length)`` callable such as HTTP range requests on the registry blob) or from
fields declared on the model entry (:func:`declared_architecture`). docs/gpu.md holds the calibration
against a real GPU.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

MIB = 1024 * 1024
GIB = 1024 * MIB
# discover/gpu.go: cudaMinimumMemory, what Ollama keeps free on each CUDA GPU.
CUDA_MINIMUM_BYTES = 457 * MIB
# What a card's label (nvidia.com/gpu.memory, the total) holds that CUDA does not report free to Ollama on
# an idle GPU: 143771 MiB labelled, 142629 MiB free on the H200 (docs/gpu.md).
DRIVER_RESERVED_BYTES = 1143 * MIB
# What a runner process really holds beyond its weights, KV cache and compute buffers (CUDA context, cuBLAS,
# kernels), measured on the H200: 625 MiB, 755 MiB with flash attention. Ollama counts 457 MiB plus one
# layer instead, which falls short for small layers; the estimate takes the larger (docs/gpu.md).
RUNNER_FIXED_BYTES = {False: 626 * MIB, True: 756 * MIB}
OLLAMA_DEFAULTS = {
    'OLLAMA_CONTEXT_LENGTH': 4096,
    'OLLAMA_NUM_PARALLEL': 1,
    'OLLAMA_FLASH_ATTENTION': False,
    'OLLAMA_KV_CACHE_TYPE': '',
    'OLLAMA_GPU_OVERHEAD': 0,
}
# roles/ollama_workload/defaults/main.yml ollama_workload_env_defaults, for the keys the estimate reads
# (a unit test keeps them equal): the plan runs before that role's defaults are loaded.
WORKLOAD_ENV_DEFAULTS = {
    'OLLAMA_NUM_PARALLEL': '2',
    'OLLAMA_CONTEXT_LENGTH': '4096',
    'OLLAMA_FLASH_ATTENTION': '1',
}
NUM_BATCH = 512
# Bytes per cached element: ggml's block sizes (q8_0 holds 32 values in 34 bytes, q4_0 in 18). Ollama's own
# estimate counts 1 and 0.5; the card holds the blocks.
KV_CACHE_WIDTH = {'f16': 2.0, 'q8_0': 34.0 / 32, 'q4_0': 18.0 / 32}
HEADER_LIMIT = 64 * MIB

# ---------------------------------------------------------------- GGUF header

# gguf value types -> struct format (8: string, 9: array)
_SCALARS = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q', 12: '<d'}
_INTEGERS = frozenset([0, 1, 2, 3, 4, 5, 10, 11])
_STRING, _ARRAY = 8, 9
# ggml tensor type -> (block size, bytes per block), as fs/ggml/ggml.go counts a tensor's size.
_BLOCK_32 = frozenset([2, 3, 4, 6, 7, 8, 9, 20])
_TYPE_BYTES = {
    0: 4, 1: 2, 2: 18, 3: 20, 4: 17, 6: 22, 7: 24, 8: 34, 9: 36,
    10: 84, 11: 110, 12: 144, 13: 176, 14: 210, 15: 292,
    16: 66, 17: 74, 18: 98, 19: 50, 20: 18, 21: 110, 22: 82, 23: 136,
    24: 1, 25: 2, 26: 4, 27: 8, 28: 8, 29: 56, 30: 2,
}
_ONE = frozenset([0, 1, 24, 25, 26, 27, 28, 30])


class GGUFError(ValueError):
    """The bytes are not a GGUF header this module can read."""


class _Cursor(object):
    """Sequential reads over ``fetch(offset, length)``; skipped bytes are never fetched. Fetches grow
    (64 KiB, doubling up to 4 MiB) so a header of a few MiB takes a handful of requests."""

    def __init__(self, fetch, limit, first=64 * 1024):
        self.fetch = fetch
        self.limit = limit
        self.pos = 0
        self.buf_start = 0
        self.buf = b''
        self.chunk = first
        self.fetched = 0
        self.requests = 0

    def read(self, n):
        end = self.pos + n
        if end > self.limit:
            raise GGUFError('the header runs past %d MiB' % (self.limit // MIB))
        buf_end = self.buf_start + len(self.buf)
        if not (self.buf_start <= self.pos and end <= buf_end):
            # keep what the buffer already holds of this read, so fetches only ever move forward
            tail = self.buf[self.pos - self.buf_start:] if self.buf_start <= self.pos < buf_end else b''
            start = self.pos + len(tail)
            data = self.fetch(start, max(n - len(tail), self.chunk)) or b''
            self.requests += 1
            self.fetched += len(data)
            self.chunk = min(self.chunk * 2, 4 * MIB)
            if len(tail) + len(data) < n:
                raise GGUFError('the file ends inside its header (at byte %d)' % (start + len(data)))
            self.buf_start, self.buf = self.pos, tail + data
        start = self.pos - self.buf_start
        self.pos = end
        return self.buf[start:start + n]

    def skip(self, n):
        self.pos += n

    def unpack(self, fmt):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self):
        length = self.unpack('<Q')
        if length > self.limit:
            raise GGUFError('a string of %d bytes in the header' % length)
        return self.read(length).decode('utf-8', 'replace')


def _value(cur, kind, keep):
    """A metadata value; arrays come back as ``(count, values or None)``, values kept only when ``keep``."""
    if kind in _SCALARS:
        return cur.unpack(_SCALARS[kind])
    if kind == _STRING:
        return cur.string()
    if kind != _ARRAY:
        raise GGUFError('unknown metadata value type %d' % kind)
    item, count = cur.unpack('<I'), cur.unpack('<Q')
    if item in _SCALARS:
        size = struct.calcsize(_SCALARS[item])
        if keep and item in _INTEGERS and count <= 4096:
            return count, list(struct.unpack('<%d%s' % (count, _SCALARS[item][1]), cur.read(size * count)))
        cur.skip(size * count)
        return count, None
    if item == _STRING:
        for dummy in range(count):
            cur.skip(cur.unpack('<Q'))
        return count, None
    raise GGUFError('arrays of type %d are not read' % item)


def tensor_bytes(kind, shape):
    """A tensor's size as Ollama counts it (elements x type size / block size); None for an unknown type."""
    elements = 1
    for dim in shape:
        elements *= dim
    if kind not in _TYPE_BYTES:
        return None
    block = 1 if kind in _ONE else 32 if kind in _BLOCK_32 else 256
    return elements * _TYPE_BYTES[kind] // block


def _group(name):
    """fs/ggml Tensors.GroupLayers: ``blk.3.attn_q.weight`` -> (``blk.3``, ``attn_q.weight``)."""
    parts = name.split('.')
    for index, part in enumerate(parts):
        if part in ('blk', 'mm'):
            if len(parts) > index + 2:
                parts = ['.'.join(parts[:index + 2])] + parts[index + 2:]
            break
    return parts[0], '.'.join(parts[1:])


def parse_gguf(fetch, limit=HEADER_LIMIT):
    """The architecture of a GGUF model from its header alone.

    ``fetch(offset, length)`` returns up to ``length`` bytes from ``offset`` (a file read, an HTTP range
    request). Returns the dict :func:`estimate` takes, plus ``header_bytes`` (the header's length),
    ``fetched_bytes`` and ``requests``. Raises :class:`GGUFError`."""
    cur = _Cursor(fetch, limit)
    if cur.read(4) != b'GGUF':
        raise GGUFError('not a GGUF file (no GGUF magic at its start)')
    version = cur.unpack('<I')
    if version not in (2, 3):
        raise GGUFError('GGUF version %d is not supported (2 and 3 are)' % version)
    n_tensors, n_kv = cur.unpack('<Q'), cur.unpack('<Q')
    if n_tensors > 1000000 or n_kv > 100000:
        raise GGUFError('implausible counts in the header (%d tensors, %d keys)' % (n_tensors, n_kv))
    meta = {}
    for dummy in range(n_kv):
        key = cur.string()
        kind = cur.unpack('<I')
        keep = not key.startswith('tokenizer.')
        meta[key] = _value(cur, kind, keep)
    arch = meta.get('general.architecture')
    if not isinstance(arch, str) or not arch:
        raise GGUFError('the header names no general.architecture')
    groups = {}
    expert_gate = 0
    for dummy in range(n_tensors):
        name = cur.string()
        dims = cur.unpack('<I')
        if dims > 8:
            raise GGUFError('tensor %s has %d dimensions' % (name, dims))
        shape = [cur.unpack('<Q') for dummy in range(dims)]
        kind = cur.unpack('<I')
        cur.unpack('<Q')  # offset in the data section
        size = tensor_bytes(kind, shape)
        if size is None:
            raise GGUFError('tensor %s has ggml type %d, which Ollama 0.11.4 does not size' % (name, kind))
        layer, rest = _group(name)
        groups[layer] = groups.get(layer, 0) + size
        if layer == 'blk.0' and rest == 'ffn_gate_exps.weight':
            expert_gate = size
    alignment = meta.get('general.alignment')
    alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
    header_bytes = -(-cur.pos // alignment) * alignment

    def number(key, default=None):
        value = meta.get('%s.%s' % (arch, key))
        if isinstance(value, bool) or value is None:
            return default
        if isinstance(value, tuple):
            values = value[1]
            return (min(values), max(values)) if values else default
        return value if isinstance(value, int) else default

    def pair(key, default):
        value = number(key, default)
        return value if isinstance(value, tuple) else (value, value)

    blocks = number('block_count', 0)
    heads_min, heads = pair('attention.head_count', 1)
    kv_min, kv_heads = pair('attention.head_count_kv', 1)
    embedding = number('embedding_length', 0)
    tokens = meta.get('tokenizer.ggml.tokens')
    result = {
        'family': arch,
        'layers': blocks,
        'context_length': number('context_length', 0),
        'embedding_length': embedding,
        'heads': heads,
        'heads_min': heads_min,
        'kv_heads': kv_heads,
        'kv_heads_min': kv_min,
        'head_size': number('attention.key_length', embedding // heads_min if heads_min else 0),
        'value_size': number('attention.value_length', embedding // heads_min if heads_min else 0),
        'vocab_size': tokens[0] if isinstance(tokens, tuple) else 0,
        'feed_forward_length': number('feed_forward_length', 0),
        'sliding_window': number('attention.sliding_window', 0),
        'embedding_model': '%s.pooling_type' % arch in meta,
        'vision': bool(number('vision.block_count', 0)),
        'layer_bytes': [groups.get('blk.%d' % i, 0) for i in range(blocks)],
        'output_bytes': groups.get('output_norm', 0) + groups.get('output', groups.get('token_embd', 0)),
        'expert_gate_bytes': expert_gate,
        'weights_bytes': sum(groups.values()),
        'header_bytes': header_bytes,
        'fetched_bytes': cur.fetched,
        'requests': cur.requests,
        'source': 'gguf header',
    }
    if not blocks:
        raise GGUFError('the header has no %s.block_count' % arch)
    return result


def file_fetch(path):
    """A ``fetch`` over a local file, for :func:`parse_gguf`."""
    def fetch(offset, length):
        with open(path, 'rb') as handle:
            handle.seek(offset)
            return handle.read(length)
    return fetch


# ---------------------------------------------------------------- declared architecture

DECLARED_KEYS = {
    'layers': 'transformer blocks (GGUF <arch>.block_count)',
    'kv_heads': 'KV attention heads (<arch>.attention.head_count_kv)',
    'head_size': 'size of one key head (<arch>.attention.key_length, else embedding_length / head_count)',
    'context_length': 'trained context length (<arch>.context_length)',
}
OPTIONAL_KEYS = ('heads', 'embedding_length', 'vocab_size', 'value_size', 'num_ctx', 'family')


def declared_architecture(declared, size_bytes):
    """``(architecture, problem)`` from the fields a model entry declares: ``layers``, ``kv_heads``,
    ``head_size``, ``context_length`` (and optionally ``heads``, ``embedding_length``, ``vocab_size``,
    ``value_size``, ``num_ctx``, ``family``). Weights spread evenly over the layers and the output from
    the file size."""
    if not isinstance(declared, dict):
        return None, 'architecture must be a mapping with %s, got %r' % (', '.join(DECLARED_KEYS), declared)
    if declared.get('source') == 'gguf header' and isinstance(declared.get('layer_bytes'), list):
        return dict(declared), None  # read by parse_gguf
    unknown = sorted(k for k in declared if k not in DECLARED_KEYS and k not in OPTIONAL_KEYS
                     and k not in ARCH_FIELDS)
    if unknown:
        return None, 'architecture has unknown key(s) %s (known: %s)' % (
            ', '.join(unknown), ', '.join(list(DECLARED_KEYS) + list(OPTIONAL_KEYS)))
    values = {}
    for key in list(DECLARED_KEYS) + [k for k in OPTIONAL_KEYS if k != 'family']:
        value = declared.get(key)
        if value is None and key not in DECLARED_KEYS:
            continue
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return None, 'architecture.%s must be a whole number >= 1 (%s), got %r' % (
                key, DECLARED_KEYS.get(key, key), value)
        values[key] = value
    layers = values['layers']
    weights = int(size_bytes or 0)
    per_layer = weights // (layers + 1)
    embedding = values.get('embedding_length', 0)
    heads = values.get('heads', 0)
    result = {
        'family': str(declared.get('family') or 'unknown'),
        'layers': layers,
        'context_length': values['context_length'],
        'embedding_length': embedding,
        'heads': heads or 1,
        'heads_min': heads or 1,
        'kv_heads': values['kv_heads'],
        'kv_heads_min': values['kv_heads'],
        'head_size': values['head_size'],
        'value_size': values.get('value_size', values['head_size']),
        'vocab_size': values.get('vocab_size', 0),
        'feed_forward_length': 0,
        'sliding_window': 0,
        'embedding_model': False,
        'vision': False,
        'layer_bytes': [per_layer] * layers,
        'output_bytes': weights - per_layer * layers,
        'expert_gate_bytes': 0,
        'weights_bytes': weights,
        'source': 'declared',
    }
    if 'num_ctx' in values:
        result['num_ctx'] = values['num_ctx']
    return result, None


# Keys of an architecture dict (what parse_gguf returns and the plan passes through).
ARCH_FIELDS = ('family', 'layers', 'context_length', 'embedding_length', 'heads', 'heads_min', 'kv_heads',
               'kv_heads_min', 'head_size', 'value_size', 'vocab_size', 'feed_forward_length', 'sliding_window',
               'embedding_model', 'vision', 'layer_bytes', 'output_bytes', 'expert_gate_bytes', 'weights_bytes',
               'header_bytes', 'fetched_bytes', 'requests', 'source', 'num_ctx')


# ---------------------------------------------------------------- server settings

def _env_bool(value):
    """envconfig.Bool: empty is false, an unparsable value is true (strconv.ParseBool)."""
    text = str(value).strip().strip('"\'')
    if isinstance(value, bool):
        return value
    if text == '':
        return False
    if text in ('1', 't', 'T', 'TRUE', 'true', 'True'):
        return True
    if text in ('0', 'f', 'F', 'FALSE', 'false', 'False'):
        return False
    return True


def server_settings(env_defaults=None, env=None):
    """``(settings, warnings)``: what the estimate reads of Ollama's environment. ``env_defaults``
    replaces the ollama_workload role's defaults when given (as a variable of the same name does);
    ``env`` is merged over them; Ollama's own defaults fill the rest."""
    merged = dict(WORKLOAD_ENV_DEFAULTS if env_defaults is None else env_defaults or {})
    merged.update(env or {})
    warnings = []
    settings = {}
    for key in ('OLLAMA_CONTEXT_LENGTH', 'OLLAMA_NUM_PARALLEL', 'OLLAMA_GPU_OVERHEAD'):
        raw = merged.get(key)
        text = '' if raw is None else str(raw).strip().strip('"\'')
        if text == '':
            settings[key] = OLLAMA_DEFAULTS[key]
        elif text.isdigit():
            settings[key] = int(text)
        else:
            # envconfig.Uint: Ollama logs a warning and uses its default
            settings[key] = OLLAMA_DEFAULTS[key]
            warnings.append('%s=%r is not a whole number; Ollama ignores it and uses %d'
                            % (key, raw, OLLAMA_DEFAULTS[key]))
    if settings['OLLAMA_NUM_PARALLEL'] < 1:
        settings['OLLAMA_NUM_PARALLEL'] = 1  # server/sched.go: 0 means defaultParallel, which is 1
    settings['OLLAMA_CONTEXT_LENGTH'] = max(settings['OLLAMA_CONTEXT_LENGTH'], 4)
    settings['OLLAMA_FLASH_ATTENTION'] = _env_bool(merged.get('OLLAMA_FLASH_ATTENTION', ''))
    kv_type = str(merged.get('OLLAMA_KV_CACHE_TYPE') or '').strip().strip('"\'').lower()
    if kv_type and kv_type not in KV_CACHE_WIDTH:
        warnings.append('OLLAMA_KV_CACHE_TYPE=%r is not f16, q8_0 or q4_0; Ollama keeps an f16 cache' % kv_type)
        kv_type = ''
    settings['OLLAMA_KV_CACHE_TYPE'] = kv_type
    return settings, warnings


# ---------------------------------------------------------------- the estimate

def _graph(arch, context, batch, kv_total):
    """fs/ggml GraphSize: (partial offload, full offload) bytes of the compute graph."""
    family = arch.get('family')
    embedding = arch.get('embedding_length') or 0
    heads = arch.get('heads') or 1
    heads_kv = arch.get('kv_heads') or 1
    vocab = arch.get('vocab_size') or 0
    embedding_heads = embedding // (arch.get('heads_min') or 1)
    full = partial = 0
    if embedding and vocab and family in ('llama', 'llama4'):
        full = max(4 * batch * (1 + 4 * embedding + context * (1 + heads)), 4 * batch * (embedding + vocab))
        partial = 4 * batch * embedding + max(
            4 * batch * (1 + embedding + max(context, embedding)) + embedding * embedding * 9 // 16
            + 4 * context * (batch * heads + embedding_heads * heads_kv),
            4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128)
        if arch.get('expert_gate_bytes'):
            ff = arch.get('feed_forward_length') or 0
            partial = max(
                3 * arch['expert_gate_bytes'] + 4 * batch * (2 * ff + heads_kv + embedding + context
                                                             + embedding_heads * heads_kv),
                4 * (context * batch * heads + context * embedding_heads * heads_kv + batch * 1024
                     + embedding_heads * heads_kv * batch))
    elif embedding and vocab and family in ('gemma', 'gemma2', 'gemma3', 'gemma3n'):
        head_k = arch.get('head_size') or embedding_heads
        full = max(4 * batch * (embedding + vocab),
                   4 * batch * (2 + context + context * heads + 2 * embedding + 2 * head_k * heads))
        partial = max(4 * embedding * batch + embedding * vocab * 105 // 128 + 4 * vocab * batch,
                      4 * batch * (2 * embedding + 1 + 2 * head_k * heads + context + context * heads)
                      + 4 * head_k * context * 8 + embedding * head_k * heads * 9 // 16)
        if family == 'gemma3n':
            full, partial = full * 4, partial * 4
    elif embedding and vocab and family == 'qwen2':
        full = max(4 * batch * (embedding + vocab), 4 * batch * (1 + 2 * embedding + context + context * heads))
        partial = max(4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * (batch * (1 + 2 * embedding + context * (1 + heads)) + embedding * (1 + context)))
    elif embedding and vocab and family == 'command-r':
        full = max(4 * batch * (embedding + vocab), 4 * batch * (2 + 4 * embedding + context * (1 + heads)))
        partial = max(4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * batch * (1 + 2 * embedding + context * (1 + heads)) + 4 * embedding * context
                      + embedding * embedding * 9 // 16)
    elif embedding and vocab and family == 'phi2':
        full = max(4 * batch * (embedding + vocab), 4 * batch * (1 + 4 * embedding + context + context * heads))
        partial = max(4 * batch * (2 * embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * batch * (2 + 3 * embedding + context + context * heads))
    if partial == 0:
        # memory.go: the rule for architectures GraphSize does not know
        partial = heads // max(arch.get('kv_heads_min') or 1, 1) * kv_total // 6
    if full == 0:
        full = partial
    return partial, full


def context_for(arch, settings):
    """``(num_ctx per request, parallel, notes)`` as server/sched.go and llm/server.go settle them."""
    notes = []
    parallel = settings['OLLAMA_NUM_PARALLEL']
    if arch.get('embedding_model'):
        parallel = 1
        notes.append('an embedding model runs with parallel 1')
    num_ctx = arch.get('num_ctx') or settings['OLLAMA_CONTEXT_LENGTH']
    source = "the model's num_ctx" if arch.get('num_ctx') else 'OLLAMA_CONTEXT_LENGTH'
    trained = arch.get('context_length') or 0
    if trained and num_ctx > trained:
        notes.append('%s %d capped at the trained context %d' % (source, num_ctx, trained))
        num_ctx = trained
    return max(num_ctx, 4), parallel, notes


def flash_attention(arch, settings):
    """Whether Ollama runs the model with flash attention (llm/server.go; CUDA GPUs all support it)."""
    return bool(settings.get('OLLAMA_FLASH_ATTENTION') and not arch.get('embedding_model')
                and arch.get('family') != 'gptoss' and arch.get('head_size')
                and arch.get('head_size') == arch.get('value_size'))


# Head sizes ggml's CUDA flash-attention kernels have (ggml-cuda/fattn.cu); on other sizes a runner on a card
# with tensor cores aborts (measured on the H200 with heads of 16, docs/gpu.md).
FLASH_ATTENTION_HEAD_SIZES = (64, 80, 96, 112, 128, 256)


def flash_attention_problem(arch, settings):
    """Why flash attention would abort this model's runner on an NVIDIA GPU, or None."""
    if not flash_attention(arch, settings) or arch.get('head_size') in FLASH_ATTENTION_HEAD_SIZES:
        return None
    return ('its attention heads are %d wide and the CUDA flash-attention kernels of Ollama 0.11.4 know %s only: '
            'with OLLAMA_FLASH_ATTENTION on, its runner aborts on the GPU (ggml-cuda/fattn.cu: fatal error)'
            % (arch.get('head_size'), ', '.join(str(h) for h in FLASH_ATTENTION_HEAD_SIZES)))


def kv_cache_type(arch, settings):
    """The cache type Ollama uses: the requested one only with flash attention on a model that has it."""
    requested = settings.get('OLLAMA_KV_CACHE_TYPE') or ''
    return (requested or 'f16') if flash_attention(arch, settings) else 'f16'


def estimate(arch, settings, gpus=1, free_bytes=None, calibrated=True):
    """What a model takes once loaded under the server settings, placed over ``gpus`` GPUs with ``free_bytes``
    free each (None: unlimited). Returns ``{num_ctx, parallel, context_total, kv_cache_type, flash_attention,
    weights_bytes, kv_bytes, graph_bytes, overhead_bytes, total_bytes, vram_bytes, gpu_bytes, layers,
    layers_on_gpu, fits, notes}``: ``total_bytes`` is what the model needs on one pod's GPUs, ``vram_bytes``
    what lands on them, ``fits`` whether every layer does.

    ``calibrated=False`` is Ollama's own estimate (what /api/ps reports as size and size_vram); the default
    also counts the runner's fixed memory as measured (:data:`RUNNER_FIXED_BYTES`) where Ollama's 457 MiB
    and one layer fall short, as if each GPU had that much less free."""
    num_ctx, parallel, notes = context_for(arch, settings)
    cache = kv_cache_type(arch, settings)
    if settings.get('OLLAMA_KV_CACHE_TYPE') and cache != settings['OLLAMA_KV_CACHE_TYPE']:
        notes.append('OLLAMA_KV_CACHE_TYPE=%s needs OLLAMA_FLASH_ATTENTION=1 and a model that supports it; '
                     'the cache stays f16' % settings['OLLAMA_KV_CACHE_TYPE'])
    context = num_ctx * parallel
    batch = min(context, NUM_BATCH)
    per_token = (arch.get('head_size') or 0) + (arch.get('value_size') or 0)
    kv_layer = int(context * per_token * (arch.get('kv_heads') or 1) * KV_CACHE_WIDTH[cache])
    layers = int(arch.get('layers') or 0)
    kv = [kv_layer] * layers
    if arch.get('family') == 'gemma3' and arch.get('sliding_window'):
        window = parallel * arch['sliding_window'] + batch
        local = int(window * per_token * (arch.get('kv_heads') or 1) * KV_CACHE_WIDTH[cache])
        kv = [kv_layer if (i + 1) % 6 == 0 else local for i in range(layers)]
    kv_total = sum(kv)
    partial, full = _graph(arch, context, batch, kv_total)
    if gpus > 1:
        full = partial  # memory.go: several GPUs always take the partial graph
    overhead = settings.get('OLLAMA_GPU_OVERHEAD') or 0
    layer_bytes = list(arch.get('layer_bytes') or [0] * layers)
    buffer = (layer_bytes[0] if layer_bytes else 0) + (kv[0] if kv else 0)
    output = arch.get('output_bytes') or 0
    fa = flash_attention(arch, settings)
    # the runner's real fixed memory beyond what Ollama counts, per GPU it uses
    extra = max(RUNNER_FIXED_BYTES[fa] - CUDA_MINIMUM_BYTES - buffer, 0) if calibrated else 0
    free = float('inf') if free_bytes is None else free_bytes - extra

    # llm/memory.go EstimateGPULayers, for identical GPUs
    graph = max(partial, full)
    allocations = [0] * gpus
    counts = [0] * gpus
    with_space = [i for i in range(gpus) if not free < overhead + graph + CUDA_MINIMUM_BYTES + 2 * buffer]
    for i in with_space:
        allocations[i] += CUDA_MINIMUM_BYTES + buffer
    placed = 0
    overflow = 0
    for i in range(layers - 1, -1, -1):
        size = (layer_bytes[i] if i < len(layer_bytes) else 0) + kv[i]
        j = len(with_space)
        while j > 0:
            g = with_space[i % j]
            if free > overhead + allocations[g] + graph + size:
                allocations[g] += size
                counts[g] += 1
                placed += 1
                break
            with_space.pop(i % j)
            j -= 1
        if not with_space:
            overflow += size
    fully = placed >= layers
    if output:
        for j in range(len(with_space), 0, -1):
            g = with_space[placed % j]
            if free > overhead + allocations[g] + graph + output:
                allocations[g] += output
                counts[g] += 1
                placed += 1
                break
        if placed < layers + 1:
            fully = False
            overflow += output
    for i in range(gpus):
        if counts[i] > 0:
            allocations[i] += (full if fully else partial) + extra
    used = max(sum(1 for c in counts if c), 1)
    vram = sum(allocations) if placed else 0
    return {
        'num_ctx': num_ctx,
        'parallel': parallel,
        'context_total': context,
        'kv_cache_type': cache,
        'flash_attention': fa,
        'weights_bytes': sum(layer_bytes) + output,
        'kv_bytes': kv_total,
        'graph_bytes': full if fully else partial,
        'overhead_bytes': (CUDA_MINIMUM_BYTES + extra) * used + buffer,
        'total_bytes': sum(allocations) + overflow,
        'vram_bytes': vram,
        'gpu_bytes': allocations,
        'layers': layers + 1,
        'layers_on_gpu': placed,
        'fits': placed >= layers + 1,
        'notes': notes,
    }


def usable_bytes(memory_mib):
    """Free memory of an idle GPU whose label (nvidia.com/gpu.memory) says ``memory_mib``."""
    return max(int(memory_mib) * MIB - DRIVER_RESERVED_BYTES, 0)


def fix_settings(arch, settings, gpus, free_bytes, max_gpus):
    """Settings that each alone make the model fit, as ``[(variable, value, estimate)]``: a smaller
    context, fewer parallel requests, a q8_0 (or q4_0) KV cache, more GPUs per pod."""
    fixes = []
    num_ctx, parallel = context_for(arch, settings)[:2]

    def fits(changes, g=gpus):
        trial = dict(settings, **changes)
        if 'num_ctx' in changes:
            trial.pop('num_ctx')
            trial['OLLAMA_CONTEXT_LENGTH'] = changes['num_ctx']
            probe = dict(arch, num_ctx=changes['num_ctx'])
        else:
            probe = arch
        result = estimate(probe, trial, g, free_bytes)
        return result if result['fits'] else None

    # the largest context that fits, in steps of 1024 tokens (of 256 below 2048)
    low, high = 0, num_ctx - 1
    while low < high:
        mid = (low + high + 1) // 2
        if fits({'num_ctx': mid}):
            low = mid
        else:
            high = mid - 1
    step = 1024 if low >= 2048 else 256
    best = low // step * step
    if best >= 256:
        fixes.append(('OLLAMA_CONTEXT_LENGTH', best, fits({'num_ctx': best})))
    for p in range(parallel - 1, 0, -1):
        result = fits({'OLLAMA_NUM_PARALLEL': p})
        if result:
            fixes.append(('OLLAMA_NUM_PARALLEL', p, result))
            break
    if kv_cache_type(arch, settings) == 'f16':
        for cache in ('q8_0', 'q4_0'):
            result = fits({'OLLAMA_FLASH_ATTENTION': True, 'OLLAMA_KV_CACHE_TYPE': cache})
            if result and kv_cache_type(arch, dict(settings, OLLAMA_FLASH_ATTENTION=True,
                                                   OLLAMA_KV_CACHE_TYPE=cache)) == cache:
                fixes.append(('OLLAMA_KV_CACHE_TYPE', cache, result))
                break
    for g in range(gpus + 1, max_gpus + 1):
        result = fits({}, g)
        if result:
            fixes.append(('gpus_per_pod', g, result))
            break
    return fixes


def format_bytes(value):
    """``1.5 GiB``, ``512 MiB``: binary units as nvidia-smi and Ollama's log print them."""
    value = int(value or 0)
    if value >= GIB:
        return '%.1f GiB' % (value / float(GIB))
    if value >= MIB:
        return '%d MiB' % round(value / float(MIB))
    return '%d KiB' % round(value / 1024.0)
