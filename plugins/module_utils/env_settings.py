# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama server settings (``ollama_workload_env`` over ``ollama_workload_env_defaults``), checked as Ollama reads them.

Ollama reads its settings from the environment (envconfig/config.go, v0.11.4 and the newest release) and, for a
value it cannot parse, quietly falls back to its default: ``OLLAMA_KEEP_ALIVE: forever`` becomes five minutes,
``OLLAMA_FLASH_ATTENTION: yes`` becomes true, a quantized ``OLLAMA_KV_CACHE_TYPE`` without flash attention becomes
f16. :func:`check_env` refuses each of those with the fix, and parses the durations for the decisions that need them.
Pure functions: no Ansible, no cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import re
from fractions import Fraction

# Merged under ollama_workload_env; the same as roles/ollama_workload/defaults/main.yml (a unit test keeps them equal).
DEFAULTS = {
    'OLLAMA_KEEP_ALIVE': '24h',
    'OLLAMA_NUM_PARALLEL': '2',
    'OLLAMA_MAX_LOADED_MODELS': '1',
    'OLLAMA_CONTEXT_LENGTH': '4096',
    'OLLAMA_FLASH_ATTENTION': '1',
    'OLLAMA_LOAD_TIMEOUT': '10m',
    'OLLAMA_MAX_QUEUE': '512',
}

# The role sets these itself (the listen address, the model store on the claim, a writable home).
RESERVED = ('OLLAMA_HOST', 'OLLAMA_MODELS', 'HOME')

DURATION, COUNT, BYTES, BOOL, DEBUG, KV_CACHE, TEXT = 'duration', 'count', 'bytes', 'bool', 'debug', 'kv', 'text'

# Every setting Ollama v0.11.4 or the newest release reads, by how it parses the value.
KNOWN = {
    'OLLAMA_KEEP_ALIVE': DURATION,
    'OLLAMA_LOAD_TIMEOUT': DURATION,
    'OLLAMA_NUM_PARALLEL': COUNT,
    'OLLAMA_MAX_LOADED_MODELS': COUNT,
    'OLLAMA_MAX_QUEUE': COUNT,
    'OLLAMA_MAX_TRANSFER_STREAMS': COUNT,
    'OLLAMA_CONTEXT_LENGTH': COUNT,
    'OLLAMA_GPU_OVERHEAD': BYTES,
    'OLLAMA_FLASH_ATTENTION': BOOL,
    'OLLAMA_NOPRUNE': BOOL,
    'OLLAMA_NOHISTORY': BOOL,
    'OLLAMA_SCHED_SPREAD': BOOL,
    'OLLAMA_INTEL_GPU': BOOL,
    'OLLAMA_MULTIUSER_CACHE': BOOL,
    'OLLAMA_NEW_ENGINE': BOOL,
    'OLLAMA_AUTH': BOOL,
    'OLLAMA_DEBUG_LOG_REQUESTS': BOOL,
    'OLLAMA_GO_TEMPLATE': BOOL,
    'OLLAMA_VULKAN': BOOL,
    'OLLAMA_IGPU_ENABLE': BOOL,
    'OLLAMA_NO_CLOUD': BOOL,
    'OLLAMA_DEBUG': DEBUG,
    'OLLAMA_KV_CACHE_TYPE': KV_CACHE,
    'OLLAMA_LLM_LIBRARY': TEXT,
    'OLLAMA_ORIGINS': TEXT,
    'OLLAMA_REMOTES': TEXT,
    'OLLAMA_EDITOR': TEXT,
    'OLLAMA_HOST': TEXT,
    'OLLAMA_MODELS': TEXT,
}

KV_CACHE_TYPES = ('f16', 'q8_0', 'q4_0')
# Up to this release a quantized K/V cache needs OLLAMA_FLASH_ATTENTION on, else Ollama uses f16 (a log line only).
KV_NEEDS_FLASH_ATTENTION_BEFORE = (0, 30, 0)

_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_UNSIGNED = re.compile(r'^[0-9]+$')
_SIGNED = re.compile(r'^[+-]?[0-9]+$')
# Go's strconv.ParseBool
_TRUE = ('1', 't', 'T', 'TRUE', 'true', 'True')
_FALSE = ('0', 'f', 'F', 'FALSE', 'false', 'False')

NANOSECOND = 1
_UNITS = {'ns': 1, 'us': 10 ** 3, u'\u00b5s': 10 ** 3, u'\u03bcs': 10 ** 3, 'ms': 10 ** 6, 's': 10 ** 9,
          'm': 60 * 10 ** 9, 'h': 3600 * 10 ** 9}
_MAX_NS = 2 ** 63 - 1
# A duration that means forever (a negative keep-alive, a load timeout of 0 or less), in seconds.
FOREVER = -1

DURATION_FIX = ('write a Go duration such as "24h", "30m" or "90s", a whole number of seconds such as "3600", or '
                '"-1" for forever')


class SettingError(ValueError):
    pass


def ollama_value(value):
    """The string a container gets for this YAML value (as the role's template renders it), trimmed of spaces and
    quotes as Ollama's envconfig.Var does."""
    text = value if isinstance(value, str) else str(value)
    return text.strip().strip('"\'')


def parse_go_duration(text):
    """Nanoseconds of a Go duration (time.ParseDuration): "1h30m", "1.5h", "-2m", "300ms", "0"."""
    s = text
    negative = False
    if s[:1] in ('-', '+'):
        negative = s[0] == '-'
        s = s[1:]
    if s == '0':
        return 0
    if not s:
        raise SettingError('invalid duration %r' % text)
    total = Fraction(0)
    while s:
        match = re.match(r'([0-9]*)(?:\.([0-9]*))?', s)
        whole, fraction = match.group(1), match.group(2)
        if not whole and not fraction:
            raise SettingError('invalid duration %r' % text)
        s = s[match.end():]
        unit = re.match(r'[^0-9.]*', s).group(0)
        if not unit:
            raise SettingError('missing unit in duration %r' % text)
        if unit not in _UNITS:
            raise SettingError('unknown unit %r in duration %r' % (unit, text))
        s = s[len(unit):]
        number = Fraction(int(whole or '0'))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * _UNITS[unit]
        if total > _MAX_NS:
            raise SettingError('invalid duration %r (too long)' % text)
    nanoseconds = int(total)
    return -nanoseconds if negative else nanoseconds


def parse_ollama_duration(text):
    """Seconds of OLLAMA_KEEP_ALIVE or OLLAMA_LOAD_TIMEOUT as Ollama reads them: a Go duration, else a whole number
    of seconds. Raises SettingError where Ollama would quietly use its default."""
    try:
        return parse_go_duration(text) / 1e9
    except SettingError:
        if not _SIGNED.match(text):
            raise
    seconds = int(text)
    if abs(seconds) * 10 ** 9 > _MAX_NS:
        raise SettingError('%s seconds is too long' % text)
    return float(seconds)


def closest(name):
    found = difflib.get_close_matches(name.upper(), sorted(KNOWN), n=1, cutoff=0.6)
    return found[0] if found else None


def _version_below(version, floor):
    return version is None or tuple(version) < floor


def check_env(defaults, overrides, report, ollama_version=None, variable='ollama_workload_env',
              defaults_variable='ollama_workload_env_defaults'):
    """The merged settings (names -> the strings the container gets), checked.

    ``report`` takes ``error(variable, message, fix)`` and ``warn(message)``. ``ollama_version`` (a tuple, or None
    when unknown) decides the version-dependent rules. Returns ``{'values': {...}, 'others': [...], 'seconds':
    {name: seconds}}``: the settings Ollama reads (as strings), the names of the other variables, and the
    durations, where forever is ``FOREVER`` (-1) and a duration that did not parse is left out."""
    values, origin = {}, {}
    for source, mapping in ((defaults_variable, defaults), (variable, overrides)):
        if mapping in (None, ''):
            continue
        if not isinstance(mapping, dict):
            report.error(source, '%s must be a mapping of variable names to values, got %r' % (source, mapping),
                         'set %s: {OLLAMA_KEEP_ALIVE: "1h"}' % source)
            continue
        for name, value in mapping.items():
            values[name] = value
            origin[name] = source
    result, seconds = {}, {}
    for name in sorted(values, key=str):
        where = '%s.%s' % (origin[name], name)
        value = values[name]
        if not isinstance(name, str) or not _NAME.match(name):
            report.error(origin[name], '%s key %r is not an environment variable name' % (origin[name], name),
                         'use names like OLLAMA_NUM_PARALLEL')
            continue
        if name in RESERVED:
            report.error(origin[name], '%s sets %s, which the role sets itself (the listen address behind the '
                         'Service, the models on the claim, HOME on a writable volume)' % (origin[name], name),
                         'remove %s from %s (move the claim mount with ollama_workload_data_path)'
                         % (name, origin[name]))
            continue
        if isinstance(value, (dict, list, tuple)) or value is None:
            report.error(origin[name], '%s must be a string or a number, got %r' % (where, value),
                         'quote it, e.g. %s: "1"' % name)
            continue
        result[name] = value if isinstance(value, str) else str(value)
        if name not in KNOWN:
            if name.upper().startswith('OLLAMA_'):
                guess = closest(name)
                report.warn('%s sets %s, which Ollama does not read%s' % (
                    origin[name], name, ' (did you mean %s?)' % guess if guess else ''))
            continue
        text = ollama_value(value)
        if text == '':
            continue  # an empty value is Ollama's own default
        problem = _check_value(KNOWN[name], name, text)
        if problem:
            report.error(origin[name], '%s %r %s' % (where, value, problem[0]), problem[1])
        elif KNOWN[name] == DURATION:
            parsed = parse_ollama_duration(text)
            # Ollama: a negative keep-alive, and a load timeout of zero or less, mean forever.
            forever = parsed < 0 or (name == 'OLLAMA_LOAD_TIMEOUT' and parsed == 0)
            seconds[name] = FOREVER if forever else parsed
    kv = ollama_value(result.get('OLLAMA_KV_CACHE_TYPE', '')).lower()
    flash = ollama_value(result.get('OLLAMA_FLASH_ATTENTION', ''))
    needs_flash = _version_below(ollama_version, KV_NEEDS_FLASH_ATTENTION_BEFORE)
    if kv in ('q8_0', 'q4_0') and flash not in _TRUE and needs_flash:
        report.error(origin['OLLAMA_KV_CACHE_TYPE'],
                     '%s.OLLAMA_KV_CACHE_TYPE is %s but OLLAMA_FLASH_ATTENTION is %s: Ollama%s uses a quantized '
                     'K/V cache only with flash attention on, and would run with f16 (the GPU memory the setting '
                     'should save is not saved)' % (
                         origin['OLLAMA_KV_CACHE_TYPE'], kv, repr(result['OLLAMA_FLASH_ATTENTION'])
                         if 'OLLAMA_FLASH_ATTENTION' in result else 'not set',
                         ' %s' % '.'.join(str(p) for p in ollama_version) if ollama_version else ''),
                     'set OLLAMA_FLASH_ATTENTION: "1" in %s, or OLLAMA_KV_CACHE_TYPE: f16' % variable)
    # Other variables (a proxy URL may carry credentials) are named, not repeated.
    known = dict((name, value) for name, value in result.items() if name in KNOWN)
    return {'values': known, 'others': sorted(name for name in result if name not in KNOWN), 'seconds': seconds}


def _check_value(kind, name, text):
    """``(what is wrong, fix)`` or None."""
    if kind == DURATION:
        try:
            parse_ollama_duration(text)
        except SettingError as exc:
            return ('is not a duration Ollama reads (%s); Ollama would quietly use its default of 5m'
                    % exc, 'for %s %s' % (name, DURATION_FIX))
        return None
    if kind in (COUNT, BYTES):
        minimum = 1 if kind == COUNT else 0
        if not _UNSIGNED.match(text) or int(text) < minimum:
            what = ('a whole number of at least 1' if kind == COUNT else 'a whole number of bytes')
            zero = ''
            if kind == COUNT and _UNSIGNED.match(text) and name in ('OLLAMA_MAX_LOADED_MODELS', 'OLLAMA_NUM_PARALLEL'):
                zero = ' (0 leaves the choice to Ollama; say so with "" instead)'
            return ('is not %s%s' % (what, zero),
                    'set %s to %s, e.g. "%s", or "" for Ollama\'s own default'
                    % (name, what, '4096' if name == 'OLLAMA_CONTEXT_LENGTH' else '1' if kind == COUNT else '0'))
        return None
    if kind == BOOL:
        if text not in _TRUE + _FALSE:
            return ('is not a boolean Ollama reads; it would take any other value as true',
                    'set %s to "1" or "0" ("true" or "false")' % name)
        return None
    if kind == DEBUG:
        if text not in _TRUE + _FALSE and not _SIGNED.match(text):
            return ('is not a boolean or a log level', 'set %s to "1" (debug), "2" (trace) or "0"' % name)
        return None
    if kind == KV_CACHE:
        if text.lower() not in KV_CACHE_TYPES:
            return ('is not a K/V cache type (%s); Ollama would quietly use f16' % ', '.join(KV_CACHE_TYPES),
                    'set %s to f16, q8_0 (half the K/V memory) or q4_0 (a third)' % name)
        return None
    return None
