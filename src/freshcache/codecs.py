"""Value encoding: typed JSON that follows the return annotation; pickle only when signed.

A hit must return a value of the same type and equal to what the miss returned. With a return
annotation, pydantic's ``TypeAdapter`` encodes and validates (models, dataclasses, datetime,
date, Decimal, UUID, enums and containers of those). Without one, plain JSON via orjson.

``encode_checked`` is what the store path calls: it encodes, refuses a payload larger than the
limit before any further work (``ValueTooLarge``), then decodes once and requires the result
to equal the value *with the same types, recursively* (``faithful``). Equality alone is not
enough: ``-> float`` returning ``1`` would hit as ``1.0``, ``-> int`` returning ``True`` as
``1``, an ``IntEnum`` as a plain ``int``. A value that fails is an ``EncodeError``: returned
uncached and counted, never cached as something else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import pickle
from typing import Any, Protocol

import orjson
import pydantic
import pydantic_core


class EncodeError(Exception):
    """The value cannot be encoded faithfully; it is returned uncached."""


class DecodeError(Exception):
    """Stored bytes cannot be decoded (corrupt, tampered, or from an incompatible version)."""


class ValueTooLarge(EncodeError):
    """The encoded value is larger than the limit: not stored (and not verified: no point)."""

    def __init__(self, size: int, limit: int, *, at_least: bool = False) -> None:
        bound = "at least " if at_least else ""
        super().__init__(f"the encoded value is {bound}{size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class Codec(Protocol):
    name: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


_UNTYPED = (Any, object, None)


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Only values JSON gives back as they were: exact dict (str keys), list, str, int, float,
    bool, None. A StrEnum or a tuple would come back as a str or a list and, comparing equal,
    slip past the round-trip check."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


class PlainJsonCodec:
    """JSON for JSON-native values (dict, list, str, int, float, bool, None)."""

    name = "json"

    def encode(self, value: Any) -> bytes:
        if not _plain(value):
            raise EncodeError(
                "not plain JSON data; annotate the return type so it can be encoded faithfully"
            )
        try:
            return orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise EncodeError(str(exc)) from None

    def decode(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(str(exc)) from None


class TypedJsonCodec:
    """JSON validated against a type: the decoded value has the annotated type."""

    name = "json"

    def __init__(self, annotation: Any) -> None:
        try:
            self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
        except pydantic.PydanticSchemaGenerationError as exc:
            raise TypeError(
                f"freshcache: the return annotation {annotation!r} has no JSON encoding "
                f"({exc.__class__.__name__}); annotate a supported type, or use "
                "serializer='pickle' with a signing_key"
            ) from None

    def encode(self, value: Any) -> bytes:
        try:
            return self._adapter.dump_json(value, warnings="error")
        except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
            raise EncodeError(str(exc)) from None

    def decode(self, data: bytes) -> Any:
        try:
            return self._adapter.validate_json(data)
        except (pydantic.ValidationError, ValueError) as exc:
            raise DecodeError(str(exc)) from None


class SignedPickleCodec:
    """Pickle behind an HMAC-SHA256 signature: unsigned or tampered bytes are never unpickled."""

    name = "pickle"
    _DIGEST = 32

    def __init__(self, signing_key: bytes) -> None:
        if len(signing_key) < 16:
            raise ValueError("freshcache: signing_key must be at least 16 bytes")
        self._key = signing_key

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def encode(self, value: Any) -> bytes:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickling can fail with any exception type
            raise EncodeError(f"{type(exc).__name__}: {exc}") from None
        return self._sign(data) + data

    def decode(self, data: bytes) -> Any:
        signature, body = data[: self._DIGEST], data[self._DIGEST :]
        if len(signature) != self._DIGEST or not hmac.compare_digest(signature, self._sign(body)):
            raise DecodeError("signature mismatch: entry not written with this signing key")
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise DecodeError(f"{type(exc).__name__}: {exc}") from None


class UnusableCodec:
    """Stands in when a function's return type has no encoding: every value is uncached."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def encode(self, value: Any) -> bytes:
        raise EncodeError(self.reason)

    def decode(self, data: bytes) -> Any:
        raise DecodeError(self.reason)


def make_codec(annotation: Any, serializer: str, signing_key: bytes | str | None) -> Codec:
    """The codec for one cached function."""
    if serializer == "pickle":
        if signing_key is None:
            raise ValueError(
                "freshcache: serializer='pickle' requires signing_key=...: unsigned pickle lets "
                "anyone who can write to the cache run code in this process"
            )
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        return SignedPickleCodec(key)
    if serializer != "json":
        raise ValueError(f"freshcache: unknown serializer {serializer!r}; use 'json' or 'pickle'")
    if annotation in _UNTYPED or annotation is type(None):
        return PlainJsonCodec()
    if annotation in (dict, list, str):
        return PlainJsonCodec()  # orjson is faster than validating an unparametrised container
    return TypedJsonCodec(annotation)


# ---------------------------------------------------------------------------------------------
# The store path's check: size first, then a type-strict round trip
# ---------------------------------------------------------------------------------------------


def encode_checked(
    codec: Codec, value: Any, *, max_bytes: int | None = None, verify: bool = True
) -> bytes:
    """``value`` encoded for storage, or an ``EncodeError`` saying why it must not be cached.

    The size is checked against ``max_bytes`` first from a lower bound that needs no encoding
    (``size_floor``: a 100 MB string is refused at once), then right after encoding, so an
    oversize value costs at most one encode and never a decode (``ValueTooLarge``, a
    subclass of ``EncodeError``). With
    ``verify``, the payload is decoded once and must give back ``value`` with the same types
    all the way down (``faithful``).
    """
    if max_bytes is not None:
        floor = size_floor(value, max_bytes)
        if floor > max_bytes:  # certainly too large: not even encoded
            raise ValueTooLarge(floor, max_bytes, at_least=True)
    payload = codec.encode(value)
    if max_bytes is not None and len(payload) > max_bytes:
        raise ValueTooLarge(len(payload), max_bytes)
    if verify:
        try:
            decoded = codec.decode(payload)
        except DecodeError as exc:
            raise EncodeError(f"the encoded value does not decode: {exc}") from None
        problem = round_trip_problem(value, decoded)
        if problem is not None:
            raise EncodeError(f"the value does not survive a round trip: {problem}")
    return payload


#: Containers ``size_floor`` looks into before settling for the floor found so far.
_FLOOR_NODES = 10_000


def size_floor(value: Any, limit: int) -> int:
    """A lower bound of the encoded size of ``value`` in any codec here, found without
    encoding: every character of a ``str`` and every byte of a ``bytes`` inside plain lists,
    tuples, sets and dicts is in the encoding at least once. Stops once past ``limit`` or
    after ``_FLOOR_NODES`` containers (still a lower bound). Models and dataclasses count
    nothing: a serializer may leave fields out."""
    floor = 0
    stack = [value]
    nodes = 0
    while stack and floor <= limit and nodes < _FLOOR_NODES:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes or kind is bytearray:
            floor += len(item)
        elif kind is list or kind is tuple or kind is set or kind is frozenset:
            nodes += 1
            stack.extend(item)
        elif kind is dict:
            nodes += 1
            stack.extend(item.keys())
            stack.extend(item.values())
    return floor


#: How deep ``faithful`` compares before giving up (and calling the value unfaithful).
MAX_COMPARE_DEPTH = 256


def faithful(original: Any, decoded: Any) -> bool:
    """True when ``decoded`` equals ``original`` and has the same type at every level."""
    return round_trip_problem(original, decoded) is None


def round_trip_problem(original: Any, decoded: Any) -> str | None:
    """None if ``decoded`` is a faithful copy of ``original``, else what differs (short)."""
    try:
        if not bool(decoded == original):
            return "the decoded value is not equal to the original"
    except Exception as exc:  # an __eq__ that raises: cannot show they are the same
        return f"comparing the decoded value raised {type(exc).__name__}"
    # Equal: now the types, iteratively (no recursion limit to hit on deep values).
    stack: list[tuple[Any, Any, int]] = [(original, decoded, 0)]
    while stack:
        a, b, depth = stack.pop()
        if type(a) is not type(b):
            return f"a {type(a).__qualname__} comes back as a {type(b).__qualname__}"
        if depth >= MAX_COMPARE_DEPTH:
            return f"nested more than {MAX_COMPARE_DEPTH} levels deep"
        inner = depth + 1
        if isinstance(a, list | tuple):
            if len(a) != len(b):
                return "a sequence changes length"
            stack.extend((x, y, inner) for x, y in zip(a, b, strict=True))
        elif isinstance(a, dict):
            pairs = _dict_pairs(a, b)
            if pairs is None:
                return "a mapping changes its keys"
            for (ka, va), (kb, vb) in pairs:
                stack.append((ka, kb, inner))
                stack.append((va, vb, inner))
        elif isinstance(a, set | frozenset):
            members = {m: m for m in b}
            if len(members) != len(a):
                return "a set changes size"
            for m in a:
                if m not in members:
                    return "a set changes its members"
                stack.append((m, members[m], inner))
        elif isinstance(a, pydantic.BaseModel):
            names = [*type(a).model_fields, *(a.model_extra or {})]
            stack.extend((getattr(a, n), getattr(b, n, None), inner) for n in names)
        elif dataclasses.is_dataclass(a) and not isinstance(a, type):
            stack.extend(
                (getattr(a, f.name), getattr(b, f.name, None), inner) for f in dataclasses.fields(a)
            )
        elif isinstance(a, dt.datetime | dt.time) and a.utcoffset() != b.utcoffset():
            return "a time comes back in another UTC offset"
    return None


def _dict_pairs(a: dict[Any, Any], b: dict[Any, Any]) -> list[tuple[Any, Any]] | None:
    """Items of ``a`` paired with the items of ``b`` under equal keys (None if the keys differ)."""
    if len(a) != len(b):
        return None
    keys_of_b = {k: k for k in b}
    pairs = []
    for key, value in a.items():
        if key not in keys_of_b:
            return None
        other = keys_of_b[key]
        pairs.append(((key, value), (other, b[other])))
    return pairs
