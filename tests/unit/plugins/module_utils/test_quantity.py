# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import decimal

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.quantity import (
    GI,
    QuantityError,
    format_gi,
    format_size,
    parse_model_size,
    parse_quantity,
    quantity_to_bytes,
    quantity_to_int,
    quantity_to_millis,
)


@pytest.mark.parametrize('text, expected', [
    ('10Gi', 10 * 2 ** 30),
    ('500M', 500 * 10 ** 6),
    ('1.5Ti', 1649267441664),
    ('2', 2),
    ('128974848', 128974848),
    ('129e6', 129000000),
    ('129E6', 129000000),
    ('123Mi', 123 * 2 ** 20),
    ('1k', 1000),
    ('1Ki', 1024),
    ('0.5Gi', 2 ** 29),
    ('  4Gi ', 4 * 2 ** 30),
    (4, 4),
    (2.5, 3),  # rounded up to a whole byte
    ('100m', 1),
])
def test_quantity_to_bytes(text, expected):
    assert quantity_to_bytes(text) == expected


@pytest.mark.parametrize('text, expected', [
    ('100m', decimal.Decimal('0.1')),
    ('1500m', decimal.Decimal('1.5')),
    ('250u', decimal.Decimal('0.00025')),
    ('-1', decimal.Decimal(-1)),
    ('+2', decimal.Decimal(2)),
    ('.5', decimal.Decimal('0.5')),
])
def test_parse_quantity_exact(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize('text', ['', 'Gi', '10GB', '10 Gi', '1.2.3', 'ten', '10gi', '5K', True, None, [1], float('nan')])
def test_parse_quantity_invalid(text):
    with pytest.raises(QuantityError):
        parse_quantity(text)


@pytest.mark.parametrize('text, expected', [('4', 4), ('8', 8), ('1500m', 1), ('0', 0), (2, 2)])
def test_quantity_to_int_floors(text, expected):
    assert quantity_to_int(text) == expected


@pytest.mark.parametrize('text', [None, '', 'bogus'])
def test_quantity_to_int_default(text):
    assert quantity_to_int(text, default=0) == 0


def test_quantity_to_int_raises_without_default():
    with pytest.raises(QuantityError):
        quantity_to_int('bogus')


@pytest.mark.parametrize('text, expected', [('100m', 100), ('2', 2000), ('1.5', 1500), ('1u', 1)])
def test_quantity_to_millis(text, expected):
    assert quantity_to_millis(text) == expected


@pytest.mark.parametrize('num_bytes, minimum, expected', [
    (0, 0, '0Gi'),
    (1, 0, '1Gi'),
    (GI, 0, '1Gi'),
    (GI + 1, 0, '2Gi'),
    (13 * GI, 0, '13Gi'),
    (int(12.2 * GI), 0, '13Gi'),
    (GI, 10, '10Gi'),
    (11 * GI, 10, '11Gi'),
])
def test_format_gi_rounds_up(num_bytes, minimum, expected):
    assert format_gi(num_bytes, minimum_gi=minimum) == expected


@pytest.mark.parametrize('value, expected', [
    ('4.7GB', 4700000000),
    ('4.7 GB', 4700000000),
    ('4.7gb', 4700000000),
    ('4.7G', 4700000000),
    ('4.7 GiB', 5046586573),
    ('4.7Gi', 5046586573),
    ('500MB', 500000000),
    ('512 MiB', 512 * 2 ** 20),
    ('1.2 TB', 1200000000000),
    ('2TiB', 2 * 2 ** 40),
    ('800 KB', 800000),
    ('5000000000', 5000000000),
    ('5000000000 B', 5000000000),
    (5000000000, 5000000000),
    (4.5, 5),
    ('.5GB', 500000000),
])
def test_parse_model_size(value, expected):
    assert parse_model_size(value) == expected


@pytest.mark.parametrize('value', ['', 'big', '4.7 XB', '-4GB', -1, True, None, '4.7 G B', {'size': 1}])
def test_parse_model_size_invalid(value):
    with pytest.raises(QuantityError):
        parse_model_size(value)


@pytest.mark.parametrize('num_bytes, expected', [
    (4700000000, '4.7 GB'),
    (5 * 10 ** 9, '5 GB'),
    (10 ** 10, '10 GB'),
    (1200000000000, '1.2 TB'),
    (640 * 10 ** 6, '640 MB'),
    (999, '999 B'),
    (None, None),
])
def test_format_size(num_bytes, expected):
    assert format_size(num_bytes) == expected
