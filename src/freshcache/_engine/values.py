"""Single values under the token rules: ``cache.get / set / delete`` for the odd value that is
not the result of a decorated function.

A value's key is written relative to the namespace, one literal segment per ``:`` (template
fields such as ``"user:{user_id}:avatar"`` are filled from keyword arguments and escaped, as in
``key_prefix``). Its entry is stamped with the tokens of every prefix of the key (the namespace,
``user``, ``user:42``), exactly like a decorated read's, so ``invalidate("user:*")`` or
``invalidate("user:42:*")`` drops it too; ``delete`` is an exact-key invalidation (it replaces
the value's own token), never a bare delete. A backend that is down, or invalidations still
waiting to be replayed, make ``get`` a miss and ``set`` a no-op (``False``): never a stale
value, never an exception.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from typing import Any

from freshcache import codecs
from freshcache import entry as envelope
from freshcache._engine import flows
from freshcache._engine.engine import Engine
from freshcache._engine.keyspace import Located
from freshcache._engine.ops import CreateTokens, Flow, GetMany, SetValue, call
from freshcache._engine.rules import MIN_TOKEN_TTL_MS, NO_VALUE
from freshcache._engine.spec import Seconds, to_ms
from freshcache.backends.base import BackendError
from freshcache.keys import GLOB_CHARACTERS, RESERVED_PREFIX, SEGMENT_SEPARATOR, Template
from freshcache.keys import short_repr as _short
from freshcache.metrics import Counters

#: Keys longer than this are refused (a key is typed by a programmer, not built from data).
MAX_KEY_LENGTH = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class ValueKey:
    """One value's keys, and the stats prefix it counts under (the key as written, minus
    its last segment: ``user:{user_id}`` for ``user:{user_id}:avatar``)."""

    loc: Located
    label: str


class Values:
    """``get`` / ``set`` / ``delete`` of single values on one engine."""

    __slots__ = ("_codecs", "engine")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._codecs: dict[Any, codecs.Codec] = {}

    # ------------------------------------------------------------------ keys and codecs

    def locate(self, key: str, fields: Mapping[str, Any], what: str) -> ValueKey:
        """Validate ``key`` (a literal key or a template over ``fields``) and place it."""
        if not isinstance(key, str):
            raise TypeError(
                f"freshcache: {what} key must be a string, got {type(key).__qualname__}"
            )
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValueError(
                f"freshcache: {what} key must be 1 to {MAX_KEY_LENGTH} characters, got "
                f"{_short(key)}"
            )
        template = Template(key, fields, f"{what} key")
        unused = set(fields) - {f.root for f in template.fields}
        if unused:
            raise TypeError(
                f"freshcache: {what} got {', '.join(sorted(unused))}=, which the key "
                f"{_short(key)} does not use"
            )
        literal = "".join(text for text, *_ in string.Formatter().parse(key))
        bad = GLOB_CHARACTERS.intersection(literal)
        if bad:
            raise ValueError(
                f"freshcache: {what} key {_short(key)} contains {''.join(sorted(bad))!r}; "
                "wildcards belong in invalidation patterns, not in keys"
            )
        if any(not s for s in key.split(SEGMENT_SEPARATOR)):
            raise ValueError(f"freshcache: {what} key {_short(key)} has an empty segment")
        if key.startswith(RESERVED_PREFIX):
            raise ValueError(
                f"freshcache: {what} key {_short(key)}: keys starting with "
                f"{RESERVED_PREFIX!r} are reserved for freshcache's own"
            )
        # Filled values are escaped: the separators in the result are the template's.
        relative = template.fill(fields)
        segments = relative.split(SEGMENT_SEPARATOR)
        space = self.engine.keys
        loc = space.located(relative, space.token_keys(segments[:-1]))
        label = key.rsplit(SEGMENT_SEPARATOR, 1)[0] if SEGMENT_SEPARATOR in key else key
        return ValueKey(loc, label)

    def codec(self, annotation: Any) -> codecs.Codec:
        """The JSON codec of ``annotation`` (a model, dataclass, ``list[int]``...), kept."""
        try:
            codec = self._codecs.get(annotation)
        except TypeError:  # an unhashable annotation: build it each time
            return _make_codec(annotation)
        if codec is None:
            codec = self._codecs[annotation] = _make_codec(annotation)
        return codec

    def decoder(self, annotation: Any, what: str) -> codecs.Codec:
        """The codec a ``get`` decodes with; an unusable ``type=`` raises ``TypeError``."""
        try:
            return self.codec(annotation)
        except codecs.EncodeError as exc:
            raise TypeError(f"freshcache: {what} type=: {exc}") from None

    def encode(self, value: Any, annotation: Any, ttl: Seconds | None) -> tuple[bytes, int]:
        """The payload and TTL (ms) of a ``set``; bad input raises here, before any I/O."""
        rules = self.engine.rules
        ttl_ms = rules.default_ttl_ms if ttl is None else to_ms(ttl, "ttl")
        try:
            codec = self.codec(type(value) if annotation is None else annotation)
            payload = codecs.encode_checked(
                codec, value, max_bytes=rules.max_value_bytes, verify=rules.verify_encoding
            )
        except codecs.ValueTooLarge as exc:
            raise ValueError(f"freshcache: cache.set: {exc}") from None
        except codecs.EncodeError as exc:
            raise TypeError(
                f"freshcache: cache.set cannot store a {type(value).__qualname__} as JSON "
                f"({str(exc)[:300]}); pass type= (e.g. type=list[Model])"
            ) from None
        return payload, ttl_ms

    def counters(self, key: ValueKey) -> Counters:
        return self.engine.ledger.metrics.for_prefix(key.label)

    # ------------------------------------------------------------------ the procedures

    def read(self, key: ValueKey, codec: codecs.Codec) -> Flow[Any]:
        """The value at ``key`` if its entry carries the current tokens, else ``NO_VALUE``."""
        engine, counters = self.engine, self.counters(key)
        health = engine.health
        if not (yield from flows.recover(engine.invalidations)):
            counters.bypasses[health.bypass_reason()] += 1
            return NO_VALUE
        try:
            values = yield from call(GetMany(key.loc))
        except BackendError as exc:
            health.failed(exc, counters)
            return NO_VALUE
        health.succeeded()
        raw, tokens = values[0], values[1:]
        parsed = envelope.parse(raw) if raw is not None else None
        if parsed is None or None in tokens:
            counters.misses += 1
            return NO_VALUE
        if list(parsed.tokens) != tokens:
            counters.stale += 1  # stored under tokens that have since been replaced
            return NO_VALUE
        try:
            value = codec.decode(parsed.payload)
        except codecs.DecodeError:
            counters.errors["decode"] += 1
            counters.misses += 1
            return NO_VALUE
        counters.hits += 1
        return value

    def write(self, key: ValueKey, payload: bytes, ttl_ms: int) -> Flow[bool]:
        """Store ``payload`` under the current tokens of the key's prefixes (created if
        missing). A plain write: the last ``set`` wins, over an earlier ``delete`` too."""
        engine, counters = self.engine, self.counters(key)
        health, rules = engine.health, engine.rules
        if not (yield from flows.recover(engine.invalidations)):
            counters.bypasses[health.bypass_reason()] += 1
            return False
        loc = key.loc
        try:
            values = yield from call(GetMany(loc))
            missing, fresh = rules.missing_tokens(loc, values)
            created = (
                (yield from call(CreateTokens(loc, missing, fresh, MIN_TOKEN_TTL_MS)))
                if missing
                else []
            )
            stamp = rules.merged_stamp(loc, values, missing, created)
            expiry_ms = int(rules.wall_clock() * 1000) + ttl_ms
            entry = envelope.pack(stamp, 0, expiry_ms, payload)
            yield from call(SetValue(loc.entry, entry, ttl_ms))
        except BackendError as exc:
            health.failed(exc, counters)
            return False
        health.succeeded()
        counters.sets += 1
        return True


def _make_codec(annotation: Any) -> codecs.Codec:
    try:
        return codecs.make_codec(annotation, "json", None)
    except TypeError:
        shown = getattr(annotation, "__qualname__", None) or repr(annotation)[:120]
        raise codecs.EncodeError(f"{shown} has no JSON encoding") from None
