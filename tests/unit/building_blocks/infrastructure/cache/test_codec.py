"""The cache codec on its own: the stored form, what it refuses to write, and that anything it did
not write — or a damaged value — is a ``CacheDecodeError``, never another exception or an object."""

from __future__ import annotations

import math
import pickle
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from app.building_blocks.infrastructure.cache.codec import (
    HEADER,
    CacheDecodeError,
    CacheEncodeError,
    decode,
    encode,
)


class Point(BaseModel):
    x: int
    y: int


class RenamedPoint(BaseModel):
    x: int
    y: int


class Tagged(str):
    pass


def test_values_carry_the_header_and_ints_are_written_as_redis_counters() -> None:
    """Everything but an int64 starts with ``kit1:``; an int is plain digits (INCR works on it)."""
    assert encode(42) == b"42"
    assert encode(-(2**63)) == b"-9223372036854775808"
    assert encode(2**63 - 1) == b"9223372036854775807"
    for value in (2**63, True, "42", 4.2, None, [1], Point(x=1, y=2)):
        assert encode(value).startswith(HEADER), value


@pytest.mark.parametrize("value", [0, -7, 2**63 - 1, 2**63, -(2**64), 10**40])
def test_ints_round_trip_inside_and_outside_the_counter_range(value: int) -> None:
    assert decode(encode(value)) == value
    assert type(decode(encode(value))) is int


def test_a_counter_written_by_redis_reads_as_an_int() -> None:
    assert decode(b"17") == 17
    assert decode(b"-3") == -3


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, -0.0, 1e-300, 5e300], ids=["inf", "-inf", "-0", "tiny", "huge"]
)
def test_floats_json_cannot_hold_round_trip(value: float) -> None:
    got = decode(encode(value))
    assert type(got) is float
    assert got == value
    assert math.copysign(1, got) == math.copysign(1, value)


def test_nan_round_trips() -> None:
    got = decode(encode(math.nan))
    assert type(got) is float
    assert math.isnan(got)


def test_a_model_reads_as_the_class_asked_for() -> None:
    """``model=`` wins over the stored name (a renamed class still reads old entries)."""
    stored = encode(Point(x=1, y=2))

    assert decode(stored) == Point(x=1, y=2)
    assert decode(stored, RenamedPoint) == RenamedPoint(x=1, y=2)
    assert decode(encode({"x": 3, "y": 4}), Point) == Point(x=3, y=4)


def test_a_model_not_reachable_by_its_name_reads_only_when_named() -> None:
    """A class defined in a function cannot be looked up by its stored name: refused, unless the
    reader names it with ``model=``."""

    class Local(BaseModel):
        a: int

    stored = encode(Local(a=1))

    with pytest.raises(CacheDecodeError, match="is not a BaseModel"):
        decode(stored)
    assert decode(stored, Local) == Local(a=1)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param(Tagged("x"), id="str-subclass"),
        pytest.param({"k": object()}, id="nested-object"),
        pytest.param({1: [2, {3: complex(1, 2)}]}, id="deep-complex"),
        pytest.param(Decimal, id="a-class"),
    ],
)
def test_what_the_codec_cannot_keep_is_refused_when_written(value: Any) -> None:
    """Never a lossy write: an unknown type is a ``CacheEncodeError`` (also a ``TypeError``)."""
    with pytest.raises(CacheEncodeError):
        encode(value)
    with pytest.raises(TypeError):
        encode(value)


def test_a_circular_value_is_refused_when_written() -> None:
    circular: list[Any] = []
    circular.append(circular)

    with pytest.raises(CacheEncodeError):
        encode(circular)


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("raise SystemExit('unpickled')",))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(pickle.dumps(_Boom()), id="pickle"),
        pytest.param(pickle.dumps(42), id="pickled-int"),
        pytest.param(b"", id="empty"),
        pytest.param(b"hello", id="plain-text"),
        pytest.param(b"1.5", id="plain-float"),
        pytest.param(b"123456789012345678901", id="21-digits"),
        pytest.param(b'{"a":1}', id="plain-json"),
        pytest.param(HEADER + b"x:1", id="unknown-format"),
        pytest.param(HEADER + b"v:{not json", id="bad-json"),
        pytest.param(HEADER + b"v:\xff\xfe", id="not-utf8"),
        pytest.param(HEADER + b'v:{"$t":"pickle","v":"gASV"}', id="unknown-tag"),
        pytest.param(HEADER + b'v:{"$t":["list"],"v":1}', id="unhashable-tag"),
        pytest.param(HEADER + b'v:{"$t":"model","v":{}}', id="model-without-name"),
        pytest.param(HEADER + b'v:{"$t":"model","n":5,"v":{}}', id="model-name-not-a-string"),
        pytest.param(HEADER + b'v:{"$t":"uuid","v":5}', id="uuid-not-a-string"),
        pytest.param(HEADER + b'v:{"$t":"decimal","v":"abc"}', id="decimal-not-a-number"),
        pytest.param(HEADER + b'v:{"$t":"timedelta","v":[1e308,0,0]}', id="timedelta-overflow"),
        pytest.param(HEADER + b'v:{"$t":"timedelta","v":[1]}', id="timedelta-short"),
        pytest.param(HEADER + b'v:{"$t":"bytes","v":"!!"}', id="bytes-not-base64"),
        pytest.param(HEADER + b'v:{"$t":"set","v":[[1]]}', id="set-of-lists"),
        pytest.param(HEADER + b'v:{"$t":"dict","v":[[[1],2]]}', id="dict-with-list-key"),
        pytest.param(HEADER + b'v:{"$t":"datetime","v":"yesterday"}', id="bad-datetime"),
        pytest.param(HEADER + b'v:{"$t":"enum","n":"enum:Enum","v":1}', id="enum-without-members"),
        pytest.param(HEADER + b"v:" + b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
        pytest.param(HEADER + b"m:" + Point.__module__.encode() + b':Point\n{"x":"no"}', id="invalid-model"),
        pytest.param(HEADER + b"m:" + Point.__module__.encode() + b":Point", id="model-without-body"),
    ],
)
def test_anything_not_written_by_the_codec_or_damaged_is_a_decode_error(raw: bytes) -> None:
    """Foreign or damaged bytes are refused with ``CacheDecodeError`` (what callers catch to fall
    back), never unpickled and never another exception type."""
    with pytest.raises(CacheDecodeError):
        decode(raw)
