"""Value encoding: typed JSON that follows the return annotation; pickle only when signed.

A hit must return a value of the same type and equal to what the miss returned. With a return
annotation, pydantic's ``TypeAdapter`` encodes and validates (models, dataclasses, datetime,
date, Decimal, UUID, enums and containers of those). Without one, plain JSON via orjson. The
cache verifies each encoding by decoding it once before storing, so a value that would come
back different (a ``datetime`` under no annotation comes back a ``str``) is never cached.
"""

from __future__ import annotations

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
