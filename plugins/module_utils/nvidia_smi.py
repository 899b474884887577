# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host GPU facts: parse ``nvidia-smi`` output and k3s's containerd config.

Pure text parsing; the caller runs the commands on the GPU host:

* ``nvidia-smi --query-gpu=index,uuid,name,memory.total,driver_version,persistence_mode
  --format=csv,noheader,nounits`` -> :func:`parse_query_gpu`
* plain ``nvidia-smi`` -> :func:`parse_header` (driver and CUDA versions)
* ``/var/lib/rancher/k3s/agent/etc/containerd/config.toml`` ->
  :func:`containerd_has_nvidia_runtime`
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

QUERY_FIELDS = ('index', 'uuid', 'name', 'memory.total', 'driver_version', 'persistence_mode')
QUERY_COMMAND = [
    'nvidia-smi', '--query-gpu=%s' % ','.join(QUERY_FIELDS), '--format=csv,noheader,nounits',
]
_NOT_AVAILABLE = ('[N/A]', 'N/A', '[Not Supported]', '[Unknown Error]', '')
# nvidia-smi prints these instead of data when the driver or device is broken.
_FAILURES = (
    "couldn't communicate with the nvidia driver",
    'no devices were found',
    'nvidia-smi: command not found',
    'failed to initialize nvml',
    'unable to determine the device handle',
    'gpu is lost',
)
_DRIVER_RE = re.compile(r'Driver Version:\s*([0-9][0-9.]*)')
_CUDA_RE = re.compile(r'CUDA Version:\s*([0-9][0-9.]*)')
_SMI_RE = re.compile(r'NVIDIA-SMI\s+([0-9][0-9.]*)')
# A TOML table header: [a."b.c".d] / [a.'b.c'.d]; bare keys, "basic" or 'literal' strings.
_TABLE_RE = re.compile(r'^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$')
_KEY_PART_RE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(?:\.|$)')
# config version 1 named the CRI plugin "cri"; version 2 io.containerd.grpc.v1.cri; version 3 io.containerd.cri.v1.runtime
CRI_PLUGINS = ('cri', 'io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.runtime')


class NvidiaSmiError(ValueError):
    """nvidia-smi printed an error, or text that is not its output."""


def failure_message(text):
    """The line of a known nvidia-smi failure in ``text``, or None."""
    for line in (text or '').splitlines():
        lowered = line.strip().lower()
        if any(mark in lowered for mark in _FAILURES):
            return line.strip()
    return None


def _int_or_none(value):
    value = value.strip()
    if value in _NOT_AVAILABLE:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_query_gpu(text):
    """GPUs from the query above: ``[{index, uuid, name, memory_total_mib, driver_version,
    persistence_mode}]``, ordered by index. Raises :class:`NvidiaSmiError` on a known
    failure message or a line that does not have the six fields."""
    failure = failure_message(text)
    if failure:
        raise NvidiaSmiError(failure)
    gpus = []
    for number, line in enumerate((text or '').splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(',')]
        if len(fields) > len(QUERY_FIELDS):
            # a GPU name with a comma in it: the name is everything between uuid and memory
            extra = len(fields) - len(QUERY_FIELDS)
            fields = fields[:2] + [', '.join(fields[2:3 + extra])] + fields[3 + extra:]
        if len(fields) != len(QUERY_FIELDS):
            raise NvidiaSmiError('line %d is not index,uuid,name,memory.total,driver_version,persistence_mode: %r'
                                 % (number, line))
        index = _int_or_none(fields[0])
        if index is None:
            raise NvidiaSmiError('line %d: GPU index %r is not a number' % (number, fields[0]))
        gpus.append({
            'index': index,
            'uuid': fields[1],
            'name': fields[2],
            'memory_total_mib': _int_or_none(fields[3]),
            'driver_version': None if fields[4] in _NOT_AVAILABLE else fields[4],
            'persistence_mode': fields[5].lower() in ('enabled', 'on', '1', 'true'),
        })
    return sorted(gpus, key=lambda g: g['index'])


def parse_header(text):
    """``{nvidia_smi_version, driver_version, cuda_version}`` from plain ``nvidia-smi``
    output (its banner: ``| NVIDIA-SMI 550.90.07  Driver Version: 550.90.07  CUDA Version: 12.4 |``)."""
    failure = failure_message(text)
    if failure:
        raise NvidiaSmiError(failure)
    text = text or ''
    found = {}
    for key, regex in (('nvidia_smi_version', _SMI_RE), ('driver_version', _DRIVER_RE),
                       ('cuda_version', _CUDA_RE)):
        match = regex.search(text)
        found[key] = match.group(1) if match else None
    return found


def parse_cuda_version(text):
    return parse_header(text)['cuda_version']


def gpu_facts(query_text, header_text=None):
    """Everything the host role reports: ``{gpus, gpu_count, driver_version, cuda_version,
    memory_total_mib (sum), memory_min_mib, products, persistence_mode_all}``."""
    gpus = parse_query_gpu(query_text)
    header = parse_header(header_text) if header_text is not None else {}
    drivers = sorted(set(g['driver_version'] for g in gpus if g['driver_version']))
    memories = [g['memory_total_mib'] for g in gpus if g['memory_total_mib'] is not None]
    return {
        'gpus': gpus,
        'gpu_count': len(gpus),
        'driver_version': header.get('driver_version') or (drivers[0] if drivers else None),
        'cuda_version': header.get('cuda_version'),
        'memory_total_mib': sum(memories) if memories else None,
        'memory_min_mib': min(memories) if memories else None,
        'products': sorted(set(g['name'] for g in gpus)),
        'persistence_mode_all': bool(gpus) and all(g['persistence_mode'] for g in gpus),
    }


def _split_dotted_key(text):
    parts = []
    pos = 0
    while pos < len(text):
        match = _KEY_PART_RE.match(text, pos)
        if not match or match.end() == pos:
            return None
        if match.group(1) is not None:
            parts.append(match.group(1).replace('\\"', '"').replace('\\\\', '\\'))
        elif match.group(2) is not None:
            parts.append(match.group(2))
        else:
            parts.append(match.group(3))
        pos = match.end()
    return parts


def containerd_runtimes(config_toml_text):
    """Names of the runtimes a containerd config declares under the CRI plugin, for
    both config version 2 (``plugins."io.containerd.grpc.v1.cri".containerd.runtimes.X``)
    and version 3 (``plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.X``)."""
    names = []
    for line in (config_toml_text or '').splitlines():
        match = _TABLE_RE.match(line)
        if not match or line.strip().startswith('[['):
            continue
        parts = _split_dotted_key(match.group(1))
        if (parts and len(parts) >= 5 and parts[0] == 'plugins' and parts[1] in CRI_PLUGINS
                and parts[2:4] == ['containerd', 'runtimes'] and parts[4] not in names):
            names.append(parts[4])
    return names


def containerd_has_nvidia_runtime(config_toml_text):
    """True when k3s's generated containerd config registers the ``nvidia`` runtime
    (k3s adds it when it finds the NVIDIA container toolkit on the host)."""
    return 'nvidia' in containerd_runtimes(config_toml_text)
