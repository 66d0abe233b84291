"""What a ``@cached`` decoration declares, validated once at decoration time, and how one call
becomes its ``Located`` keys (memoised: the hit path computes no key text for repeated calls
with simple arguments)."""

from __future__ import annotations

import datetime as dt
import logging
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from freshcache import codecs
from freshcache._engine.keyspace import KeySpace, Located
from freshcache.keys import (
    SEGMENT_SEPARATOR,
    ArgumentBinder,
    BoundedMemo,
    Template,
    args_hash,
    escape,
    short_repr,
    validate_key_prefix,
)

log = logging.getLogger("freshcache")
#: A duration: seconds (int or float), a ``timedelta``, or text such as ``"90s"``, ``"5m"``,
#: ``"1h"``, ``"1d"`` or ``"1h30m"``.
Seconds = float | int | dt.timedelta | str
_TOKEN_KEY_MEMO_LIMIT = 10_000
_LOCATION_MEMO_LIMIT = 4096
# Bytes of key text (and of the arguments a memo key keeps alive) per table, per function.
_TOKEN_KEY_MEMO_BYTES = 4 * 1024 * 1024
_LOCATION_MEMO_BYTES = 4 * 1024 * 1024
# Argument types for which Python equality implies an identical key encoding. Not bool, float
# or Decimal: True == 1 == 1.0 == Decimal(1) would share one memo slot but not one key.
_MEMO_SAFE_TYPES = frozenset({str, int, dt.date, type(None)})


_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# Largest units first, each at most once: "1h30m", "2d", "1.5h", "250ms".
_DURATION = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?"
)
_DURATION_FORMS = (
    "seconds (int or float), a timedelta, or a string such as '90s', '5m', '1h', '1d' or '1h30m'"
)


def parse_duration(text: str, what: str) -> float:
    """Seconds in a duration string (``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``)."""
    compact = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(compact) if len(compact) <= 64 else None
    if not compact or match is None or not any(match.groups()):
        raise ValueError(
            f"freshcache: {what}={short_repr(text, 60)} is not a duration; use {_DURATION_FORMS}"
        )
    return sum(_DURATION_UNITS[unit] * float(n) for unit, n in match.groupdict().items() if n)


def to_ms(value: Seconds, what: str) -> int:
    """A duration (any ``Seconds`` form) in whole milliseconds; zero or negative raises."""
    if isinstance(value, str):
        value = parse_duration(value, what)
    elif isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"freshcache: {what} must be {_DURATION_FORMS}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"freshcache: {what} must be positive, got {value!r}")
    return max(1, int(value * 1000))


class FunctionSpec:
    """A cached function: its key layout, TTL, codec and stampede options."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        ttl: Seconds | None,
        key_prefix: str | None,
        exclude: Sequence[str],
        key: Callable[..., object] | None,
        version: str | int | None,
        serializer: str,
        signing_key: bytes | str | None,
        lock: bool,
        lock_timeout: Seconds,
        early_refresh: bool,
        early_refresh_beta: float,
        single_flight: bool,
        condition: Callable[[Any], object] | None = None,
        near: bool = True,
    ) -> None:
        self.func = func
        self.qualname: str = getattr(func, "__qualname__", getattr(func, "__name__", "fn"))
        self.function_segment = escape(self.qualname)
        if isinstance(exclude, str):
            exclude = (exclude,)
        self.binder = ArgumentBinder(func, exclude)
        prefix_text = key_prefix if key_prefix is not None else getattr(func, "__module__", "fn")
        validate_key_prefix(prefix_text)
        self.prefix_label = prefix_text
        self.prefix = Template(prefix_text, self.binder.names, "key_prefix")
        self.ttl_ms = None if ttl is None else to_ms(ttl, "ttl")
        self.custom_key = key
        if key is not None and not callable(key):
            raise TypeError("freshcache: key= must be a callable taking the function's arguments")
        self.version_segment = None if version is None else escape(version)
        self.serializer = serializer
        self.signing_key = signing_key
        # Validate the serializer now; the annotation is resolved on first use (forward refs).
        codecs.make_codec(None, serializer, signing_key)
        self._codec: codecs.Codec | None = None
        self.lock = lock
        self.lock_timeout_ms = to_ms(lock_timeout, "lock_timeout")
        self.early_refresh = early_refresh
        if early_refresh_beta <= 0:
            raise ValueError("freshcache: early_refresh_beta must be positive")
        self.early_refresh_beta = early_refresh_beta
        self.single_flight = single_flight
        if condition is not None and not callable(condition):
            raise TypeError("freshcache: condition= must be a callable taking the result")
        #: ``condition(result)`` false: the result is returned, not stored.
        self.condition = condition
        #: Whether hits may be served from the cache's near table (when it has one).
        self.near = near
        self._token_keys: BoundedMemo[tuple[str, str], tuple[str, ...]] = BoundedMemo(
            _TOKEN_KEY_MEMO_LIMIT, _TOKEN_KEY_MEMO_BYTES
        )
        # Memo of positional calls with simple argument types -> Located, per namespace. The
        # instance (self/cls) is left out of the memo key exactly as it is left out of the key.
        self._skip_first = bool(self.binder.names) and self.binder.names[0] in (
            self.binder.excluded - set(self._template_roots())
        )
        self._memoizable = key is None and "self" not in self._template_roots()
        self._locations: BoundedMemo[tuple[str, tuple[Any, ...]], Located] = BoundedMemo(
            _LOCATION_MEMO_LIMIT, _LOCATION_MEMO_BYTES
        )

    def _template_roots(self) -> set[str]:
        return {f.root for f in self.prefix.fields}

    @property
    def codec(self) -> codecs.Codec:
        codec = self._codec
        if codec is None:
            try:
                codec = codecs.make_codec(
                    self.return_annotation(), self.serializer, self.signing_key
                )
            except TypeError as exc:
                # Resolved at the first call (annotations may be forward references), when
                # raising would reach the caller after the body ran: run uncached instead.
                log.error("freshcache: %s is not cached: %s", self.qualname, exc)
                codec = codecs.UnusableCodec(str(exc))
            self._codec = codec
        return codec

    def return_annotation(self) -> Any:
        try:
            hints = typing.get_type_hints(self.func, include_extras=False)
        except Exception as exc:  # unresolvable forward reference, etc.
            raise TypeError(
                f"freshcache: cannot resolve the return annotation of {self.qualname}: {exc}"
            ) from None
        return hints.get("return")

    def args_segment(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any]
    ) -> str:
        if self.custom_key is not None:
            return escape(self.custom_key(*args, **kwargs))
        return args_hash(self.binder.key_part(bound))

    def locate(self, space: KeySpace, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Located:
        if kwargs or not self._memoizable:
            return self._locate(space, args, kwargs)
        memo_args = args[1:] if self._skip_first else args
        for value in memo_args:
            if type(value) not in _MEMO_SAFE_TYPES:
                return self._locate(space, args, kwargs)
        memo_key = (space.namespace, memo_args)
        located = self._locations.get(memo_key)
        if located is None:
            located = self._locate(space, args, kwargs)
            size = sum(len(k) for k in located.fetch) + sum(_memo_size(v) for v in memo_args)
            self._locations.put(memo_key, located, size)
        return located

    def _locate(self, space: KeySpace, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Located:
        bound = self.binder.bind(args, kwargs)
        prefix = self.prefix.fill(bound)
        tail = self.args_segment(args, kwargs, bound)
        if self.version_segment is not None:
            tail = f"{self.version_segment}{SEGMENT_SEPARATOR}{tail}"
        relative = SEGMENT_SEPARATOR.join((prefix, self.function_segment, tail))
        memo_key = (space.namespace, prefix)
        token_keys = self._token_keys.get(memo_key)
        if token_keys is None:
            # The prefix was filled from escaped values: its separators are the template's.
            segments = [*prefix.split(SEGMENT_SEPARATOR), self.function_segment]
            token_keys = space.token_keys(segments)
            self._token_keys.put(memo_key, token_keys, len(prefix) + sum(map(len, token_keys)))
        return space.located(relative, token_keys)


def _memo_size(value: object) -> int:
    """Roughly the bytes a memo key keeps alive for one argument of a _MEMO_SAFE_TYPES type."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 8 + 8
    return 16
