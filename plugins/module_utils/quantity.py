# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kubernetes resource quantities and user-given model sizes.

Pure functions, no Kubernetes client: they take what the API returns
(``"10Gi"``, ``"500M"``, ``"100m"``, ``"4"``) or what a user writes in a
model list (``"4.7GB"``, ``"4.7 GiB"``, ``5000000000``) and return numbers.
Exact arithmetic through :class:`decimal.Decimal`, so ``"1.5Ti"`` is exactly
1649267441664 bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import decimal
import math
import re

KI = 1024
MI = KI ** 2
GI = KI ** 3
TI = KI ** 4

# Kubernetes suffixes (k8s.io/apimachinery/pkg/api/resource): binary SI,
# decimal SI, and a decimal exponent ("1e3", "1E3").
_BINARY = {
    'Ki': 2 ** 10, 'Mi': 2 ** 20, 'Gi': 2 ** 30, 'Ti': 2 ** 40, 'Pi': 2 ** 50, 'Ei': 2 ** 60,
}
_DECIMAL_EXP = {
    'n': -9, 'u': -6, 'm': -3, '': 0, 'k': 3, 'M': 6, 'G': 9, 'T': 12, 'P': 15, 'E': 18,
}
_QUANTITY_RE = re.compile(
    r'^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))'
    r'(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?[0-9]+)|(?P<dec>[numkMGTPE]?))$'
)

# Sizes as users write them for models: case-insensitive, optional space,
# optional trailing "B". "GB"/"G" are decimal (as ollama and Hugging Face
# print them), "GiB"/"Gi" binary.
_SIZE_UNITS = {
    '': 1, 'b': 1,
    'k': 10 ** 3, 'kb': 10 ** 3, 'ki': 2 ** 10, 'kib': 2 ** 10,
    'm': 10 ** 6, 'mb': 10 ** 6, 'mi': 2 ** 20, 'mib': 2 ** 20,
    'g': 10 ** 9, 'gb': 10 ** 9, 'gi': 2 ** 30, 'gib': 2 ** 30,
    't': 10 ** 12, 'tb': 10 ** 12, 'ti': 2 ** 40, 'tib': 2 ** 40,
}
_SIZE_RE = re.compile(r'^(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-zA-Z]*)$')


class QuantityError(ValueError):
    """A value that is not a valid quantity or size."""


def _ceil(value):
    return int(value.to_integral_value(rounding=decimal.ROUND_CEILING))


def _floor(value):
    return int(value.to_integral_value(rounding=decimal.ROUND_FLOOR))


def parse_quantity(value):
    """Parse a Kubernetes quantity into an exact :class:`decimal.Decimal`.

    ``"10Gi"`` -> 10737418240, ``"500M"`` -> 500000000, ``"100m"`` -> 0.1,
    ``"2"`` -> 2, ``"1e3"`` -> 1000. Integers and floats pass through
    (booleans are refused: ``True`` is not a quantity).
    """
    if isinstance(value, bool) or value is None:
        raise QuantityError('not a quantity: %r' % (value,))
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise QuantityError('not a quantity: %r' % (value,))
        return decimal.Decimal(repr(value))
    if not isinstance(value, str):
        raise QuantityError('not a quantity: %r' % (value,))
    text = value.strip()
    match = _QUANTITY_RE.match(text)
    if not match:
        raise QuantityError('not a Kubernetes quantity: %r' % (value,))
    number = decimal.Decimal(match.group('num'))
    if match.group('bin'):
        return number * _BINARY[match.group('bin')]
    if match.group('exp'):
        return number.scaleb(int(match.group('exp')[1:]))
    return number.scaleb(_DECIMAL_EXP[match.group('dec') or ''])


def quantity_to_bytes(value):
    """Bytes in a quantity, rounded up to a whole byte (``"1.5Ti"`` -> 1649267441664)."""
    return _ceil(parse_quantity(value))


def quantity_to_int(value, default=None):
    """Whole units in a count-like quantity (``"4"`` -> 4, ``"1500m"`` -> 1).

    Extended resources such as ``nvidia.com/gpu`` are whole numbers; a
    fraction is floored because that is all a scheduler can hand out. With
    ``default`` given, a missing or malformed value returns ``default``
    instead of raising.
    """
    if value is None or value == '':
        if default is not None:
            return default
        raise QuantityError('not a quantity: %r' % (value,))
    try:
        return _floor(parse_quantity(value))
    except QuantityError:
        if default is not None:
            return default
        raise


def quantity_to_millis(value):
    """Milli-units (CPU style): ``"100m"`` -> 100, ``"2"`` -> 2000, rounded up."""
    return _ceil(parse_quantity(value) * 1000)


def format_gi(num_bytes, minimum_gi=0):
    """Format bytes as a whole number of Gi, rounding up: 13.1 GiB -> ``"14Gi"``."""
    if isinstance(num_bytes, bool) or num_bytes is None:
        raise QuantityError('not a byte count: %r' % (num_bytes,))
    count = _ceil(decimal.Decimal(num_bytes) / GI) if num_bytes else 0
    return '%dGi' % max(count, int(minimum_gi), 0)


def gi_to_bytes(gi):
    return int(gi) * GI


def parse_size(value):
    """Bytes in a size as users write it: ``5000000000``, ``"4.7GB"``, ``"4.7 GiB"``,
    ``"500MiB"``, ``"10Gi"``, ``"2T"``. Decimal units (GB, G) are powers of 1000,
    binary units (GiB, Gi) powers of 1024; rounded up to a whole byte.
    """
    if isinstance(value, bool) or value is None:
        raise QuantityError('not a size: %r' % (value,))
    if isinstance(value, (int, float)):
        if value < 0:
            raise QuantityError('a size cannot be negative: %r' % (value,))
        return _ceil(parse_quantity(value))
    if not isinstance(value, str):
        raise QuantityError('not a size: %r' % (value,))
    text = value.strip()
    match = _SIZE_RE.match(text)
    if not match:
        raise QuantityError('not a size: %r (write it like "4.7GB", "4.7 GiB" or 5000000000)' % (value,))
    unit = match.group('unit').lower()
    if unit not in _SIZE_UNITS:
        raise QuantityError('unknown unit %r in size %r (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)'
                            % (match.group('unit'), value))
    return _ceil(decimal.Decimal(match.group('num')) * _SIZE_UNITS[unit])


# The name the brief and the roles use for model sizes.
parse_model_size = parse_size


def format_size(num_bytes):
    """Human size in decimal units, as ``ollama list`` prints them: ``"4.7 GB"``."""
    if num_bytes is None:
        return None
    value = decimal.Decimal(num_bytes)
    for unit, factor in (('TB', 10 ** 12), ('GB', 10 ** 9), ('MB', 10 ** 6), ('KB', 10 ** 3)):
        if value >= factor:
            shown = (value / factor).quantize(decimal.Decimal('0.1'), rounding=decimal.ROUND_HALF_UP)
            return '%s %s' % (int(shown) if shown == shown.to_integral_value() else shown, unit)
    return '%d B' % num_bytes
