"""Values in Redis as tagged JSON: what goes in comes out with its type, and nothing is executed.

A cached ``"123"`` comes back as the string ``"123"``, ``123`` as an int, ``None`` as ``None``, a
``datetime`` as a ``datetime`` and a pydantic model as that model. Types JSON lacks travel as
``{"$t": tag, "v": value}``. Every value starts with a header (``kit1:``); anything else under a
key (a pickle another program left there, say) is refused with :class:`CacheDecodeError`, never
unpickled. Model classes are looked up among modules already imported, never imported on the
say-so of the data, and must be pydantic models.

The one header-less form is a plain integer, as Redis keeps its own counters (``INCR``): an ``int``
in Redis's 64-bit range is written so too, so a counter started with ``set`` counts with ``incr``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError

HEADER = b"kit1:"
_MODEL = b"m:"  # a top-level model: "m:<module>:<qualname>\n<the model's JSON>" (the fast path)
_VALUE = b"v:"  # anything else: tagged JSON
_TAG = "$t"
_INTEGER = re.compile(rb"-?\d{1,20}")
_INT64 = range(-(2**63), 2**63)

M = TypeVar("M", bound=BaseModel)


class CacheCodecError(ValueError):
    """A value cannot be cached, or what is stored cannot be read back."""


class CacheEncodeError(CacheCodecError, TypeError):
    pass


class CacheDecodeError(CacheCodecError):
    pass


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str, base: type) -> Any:
    """The class named ``module:qualname``, if its module is loaded and it is a ``base``."""
    module_name, _, qualname = name.partition(":")
    target: Any = sys.modules.get(module_name)
    if target is None:
        raise CacheDecodeError(f"unknown type {name!r}: its module is not loaded (never imported from data)")
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if not (isinstance(target, type) and issubclass(target, base)):
        raise CacheDecodeError(f"{name!r} is not a {base.__name__} subclass")
    return target


def _pack(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if kind is list:
        return [_pack(item) for item in value]
    if kind is dict:
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: _pack(item) for key, item in value.items()}
        return {_TAG: "dict", "v": [[_pack(key), _pack(item)] for key, item in value.items()]}
    if isinstance(value, BaseModel):
        return {_TAG: "model", "n": _name(kind), "v": value.model_dump(mode="json")}
    if isinstance(value, Enum):
        return {_TAG: "enum", "n": _name(kind), "v": _pack(value.value)}
    packer = _PACKERS.get(kind)
    if packer is None:
        raise CacheEncodeError(f"cannot cache a {kind.__qualname__}: not JSON, not a known type")
    tag, packed = packer(value)
    return {_TAG: tag, "v": packed}


_PACKERS: dict[type, Callable[[Any], tuple[str, Any]]] = {
    tuple: lambda v: ("tuple", [_pack(item) for item in v]),
    set: lambda v: ("set", [_pack(item) for item in v]),
    frozenset: lambda v: ("frozenset", [_pack(item) for item in v]),
    datetime: lambda v: ("datetime", v.isoformat()),
    date: lambda v: ("date", v.isoformat()),
    time: lambda v: ("time", v.isoformat()),
    timedelta: lambda v: ("timedelta", [v.days, v.seconds, v.microseconds]),
    UUID: lambda v: ("uuid", str(v)),
    Decimal: lambda v: ("decimal", str(v)),
    bytes: lambda v: ("bytes", base64.b64encode(v).decode("ascii")),
}

_UNPACKERS: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda v: tuple(_unpack(item) for item in v),
    "set": lambda v: {_unpack(item) for item in v},
    "frozenset": lambda v: frozenset(_unpack(item) for item in v),
    "dict": lambda v: {_unpack(key): _unpack(item) for key, item in v},
    "float": float,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": UUID,
    "decimal": Decimal,
    "bytes": lambda v: base64.b64decode(v, validate=True),
}


def _unpack(value: Any) -> Any:
    if isinstance(value, list):
        return [_unpack(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {key: _unpack(item) for key, item in value.items()}
    if tag == "model":
        return _resolve(value["n"], BaseModel).model_validate(value["v"])
    if tag == "enum":
        return _resolve(value["n"], Enum)(_unpack(value["v"]))
    unpacker = _UNPACKERS.get(tag)
    if unpacker is None:
        raise CacheDecodeError(f"unknown type tag {tag!r}")
    return unpacker(value["v"])


def encode(value: Any) -> bytes:
    """The bytes stored for ``value``; :class:`CacheEncodeError` for a type this codec cannot keep."""
    if type(value) is int and value in _INT64:
        return str(value).encode()  # as Redis writes a counter: INCRBY works on it
    if isinstance(value, BaseModel):
        return HEADER + _MODEL + _name(type(value)).encode() + b"\n" + value.model_dump_json().encode()
    try:
        body = json.dumps(_pack(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError) as error:
        raise CacheEncodeError(f"cannot cache this value: {error}") from error
    return HEADER + _VALUE + body.encode()


def decode(raw: bytes, model: type[M] | None = None) -> Any:
    """The value ``raw`` encodes. ``model``: validate a stored model as this class (it wins over
    the stored name, so a renamed class still reads its entries)."""
    if not raw.startswith(HEADER):
        if _INTEGER.fullmatch(raw):
            return int(raw)  # a Redis counter (INCR/INCRBY)
        raise CacheDecodeError("the value was not written by this codec: refused (never unpickled)")
    body = memoryview(raw)[len(HEADER) :]
    try:
        if body[:2] == _MODEL:
            name, _, payload = bytes(body[2:]).partition(b"\n")
            cls = model or _resolve(name.decode(), BaseModel)
            return cls.model_validate_json(payload)
        if body[:2] == _VALUE:
            value = _unpack(json.loads(bytes(body[2:])))
            return (
                model.model_validate(value) if model is not None and not isinstance(value, model) else value
            )
    except CacheDecodeError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,  # a name or value of the wrong JSON type ({"$t": "uuid", "v": 5})
        ArithmeticError,  # decimal.InvalidOperation, OverflowError (a huge timedelta)
        RecursionError,  # nesting deeper than json/_unpack can follow
        ValidationError,
    ) as error:
        raise CacheDecodeError(f"a damaged cached value: {error}") from error
    raise CacheDecodeError("an unknown cached value format")
