"""Cache keys: signature binding, canonical argument encoding, templates and escaping.

A key is ``{namespace}:{key_prefix}:{function_qualname}:{args_hash}``. Everything here is pure:
no backend, no I/O. The rules that make keys trustworthy:

* arguments are bound to the signature with defaults applied, so ``f(1)``, ``f(x=1)`` and ``f()``
  (default 1) share one key;
* values are encoded canonically and type-tagged, never through ``repr`` (memory addresses) or
  ``str`` (``f("a b")`` vs ``f("a", "b")``); a type without a canonical encoding is an error at
  the call, naming the parameter;
* every value placed into a key prefix or a pattern is escaped, so it can never add a segment
  (``:``) or a glob wildcard (``*``, ``?``, ``[``, ``]``, ``\\``);
* hostile input stays small and never fails from deep inside: an escaped segment longer than
  ``MAX_SEGMENT_LENGTH`` characters is replaced by ``%#`` and a 128-bit hash of it (so keys and
  token keys stay short whatever a template value holds), lone surrogates are percent-encoded
  as the bytes ``surrogatepass`` gives them, integers past Python's decimal digit limit are
  written in hex, and arguments nested deeper than ``MAX_NESTING`` (or containing themselves)
  are a ``TypeError`` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import inspect
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Generic, TypeVar

import pydantic

SEGMENT_SEPARATOR = ":"
WILDCARD = "*"
#: An escaped value longer than this (in characters) becomes ``%#`` + 32 hex digits of its
#: BLAKE2b hash. ``%`` is always escaped in values, so ``%#`` never starts anything else.
MAX_SEGMENT_LENGTH = 128
HASHED_SEGMENT_MARK = "%#"
#: Containers nested deeper than this in one argument are refused (a cycle always is).
MAX_NESTING = 64
#: Characters that would add a segment or widen a Redis glob if they came from a value.
_SPECIAL = "%:*?[]\\"
#: Lone surrogates cannot be encoded as UTF-8 (Redis keys are bytes): write each as the
#: percent-encoded bytes that ``surrogatepass`` gives it, which no other text produces.
_SURROGATE_ESCAPES = {
    code: "".join(f"%{b:02X}" for b in chr(code).encode("utf-8", "surrogatepass"))
    for code in range(0xD800, 0xE000)
}
_ESCAPES = str.maketrans(
    {ch: f"%{ord(ch):02X}" for ch in _SPECIAL}
    | {chr(i): f"%{i:02X}" for i in [*range(0x20), 0x7F]}
    | {chr(code): text for code, text in _SURROGATE_ESCAPES.items()}
)
_LITERAL_ESCAPES = str.maketrans({chr(c): text for c, text in _SURROGATE_ESCAPES.items()})
#: Below this magnitude ``str(int)`` is within every interpreter's digit limit (4300 digits
#: by default, settable down to 640); above it integers are written in hex, which has none.
_DECIMAL_INT_LIMIT = 10**600
GLOB_CHARACTERS = frozenset("*?[]\\")
#: First segments starting with this are freshcache's own (tokens, locks), never user keys.
RESERVED_PREFIX = "__"


def format_value(value: object) -> str:
    """The canonical text of a scalar placed in a key prefix or pattern (before escaping)."""
    if isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return format_value(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _int_text(int(value))
    if isinstance(value, float):
        return repr(0.0 if value == 0.0 else value)
    if isinstance(value, dt.datetime):
        return _datetime_text(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(_canonical_decimal(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None:
        return "null"
    raise TypeError(
        f"freshcache: a value of type {type(value).__qualname__} cannot be placed in a key "
        "or pattern; use str, int, float, bool, date, datetime, time, Decimal, UUID or an Enum"
    )


def _int_text(value: int) -> str:
    if -_DECIMAL_INT_LIMIT < value < _DECIMAL_INT_LIMIT:
        return str(value)
    return f"-0x{-value:x}" if value < 0 else f"0x{value:x}"


def escape(value: object) -> str:
    """Format ``value`` and escape it so it is one literal segment: no ``:``, no wildcard.

    The result is at most ``MAX_SEGMENT_LENGTH`` characters: a longer one is replaced by
    ``%#`` and 32 hex digits of its hash (the same value always gives the same segment).
    """
    text = format_value(value).translate(_ESCAPES)
    if len(text) > MAX_SEGMENT_LENGTH:
        return bounded_segment(text)
    # An empty value still needs a segment; a lone "%" is never the escape of anything.
    return text if text else "%"


def bounded_segment(escaped: str) -> str:
    """``escaped`` (already escaped: no surrogates) itself, or its hashed form if too long."""
    if len(escaped) <= MAX_SEGMENT_LENGTH:
        return escaped
    digest = hashlib.blake2b(escaped.encode("utf-8"), digest_size=16).hexdigest()
    return f"{HASHED_SEGMENT_MARK}{digest}"


def encode_surrogates(text: str) -> str:
    """``text`` with each lone surrogate percent-encoded as ``escape`` writes it, so a pattern
    or key prefix written with one can be sent to Redis (UTF-8) and still match the keys built
    from the same value. Nothing else is changed."""
    return text.translate(_LITERAL_ESCAPES)


def pattern(*segments: object) -> str:
    """Build an invalidation pattern from segments, escaping each one.

    A last segment ``"*"`` stays a wildcard: ``pattern("booking", "availability", day, "*")``.
    Any other ``*`` (or ``:``) inside a segment is escaped and matches only itself.
    """
    if not segments:
        raise ValueError("freshcache.pattern() needs at least one segment")
    parts = [escape(s) for s in segments[:-1]]
    last = segments[-1]
    parts.append(WILDCARD if last == WILDCARD else escape(last))
    return SEGMENT_SEPARATOR.join(parts)


def _datetime_text(value: dt.datetime) -> str:
    # Equal aware datetimes in different zones are the same instant: give them one text.
    if value.tzinfo is None:
        return value.isoformat()
    try:
        return value.astimezone(dt.UTC).isoformat()
    except OverflowError:
        # Within a day of datetime.min/max the UTC datetime does not exist; the instant
        # does, as a timedelta from datetime.min (timedeltas have a far wider range).
        offset = value.utcoffset() or dt.timedelta(0)
        since_min = value.replace(tzinfo=None) - dt.datetime.min - offset
        return f"utc{since_min.days}d{since_min.seconds}s{since_min.microseconds}us"


def _canonical_decimal(value: Decimal) -> Decimal:
    # Decimal('1.0') == Decimal('1.00') and Decimal('-0') == Decimal('0'): one key each.
    return Decimal(0) if value.is_zero() else value.normalize()


# ---------------------------------------------------------------------------------------------
# Canonical argument encoding
# ---------------------------------------------------------------------------------------------


class UnsupportedArgument(TypeError):
    """An argument value that has no canonical encoding (carries the offending type)."""

    def __init__(self, value_type: type, problem: str = "") -> None:
        super().__init__(problem or value_type.__qualname__)
        self.value_type = value_type
        #: Empty for a type with no encoding; otherwise what is wrong with this value.
        self.problem = problem


class ArgumentTooDeep(UnsupportedArgument):
    """Containers nested deeper than ``MAX_NESTING``, or a container that contains itself."""

    def __init__(self, value_type: type) -> None:
        super().__init__(
            value_type,
            f"containers nested more than {MAX_NESTING} levels deep (or a container that "
            "contains itself)",
        )


# Each encoder takes the value, the output list and the nesting depth of the value.
_Encoder = Callable[[Any, list[str], int], None]


def _enc_str(v: Any, out: list[str], depth: int) -> None:
    out.append(f"s{len(v)}:{v}")


def _enc_int(v: Any, out: list[str], depth: int) -> None:
    if -_DECIMAL_INT_LIMIT < v < _DECIMAL_INT_LIMIT:
        out.append(f"i{v};")
    else:  # past the digit limit: hex, under its own tag so no two ints share a text
        out.append(f"x{int(v):x};")


def _enc_bool(v: Any, out: list[str], depth: int) -> None:
    out.append("T" if v else "F")


def _enc_float(v: Any, out: list[str], depth: int) -> None:
    out.append(f"f{0.0 if v == 0.0 else v!r};")


def _enc_none(v: Any, out: list[str], depth: int) -> None:
    out.append("N")


def _enc_bytes(v: Any, out: list[str], depth: int) -> None:
    out.append(f"b{len(v)}:{bytes(v).hex()}")


def _enc_datetime(v: Any, out: list[str], depth: int) -> None:
    out.append(f"dt{_datetime_text(v)};")


def _enc_date(v: Any, out: list[str], depth: int) -> None:
    out.append(f"d{v.isoformat()};")


def _enc_time(v: Any, out: list[str], depth: int) -> None:
    out.append(f"tm{v.isoformat()};")


def _enc_decimal(v: Any, out: list[str], depth: int) -> None:
    out.append(f"D{_canonical_decimal(v)};")


def _enc_uuid(v: Any, out: list[str], depth: int) -> None:
    out.append(f"u{v.hex};")


def _deeper(v: object, depth: int) -> int:
    # A bound on depth also catches every cycle (a list containing itself is infinitely
    # deep) before Python's own recursion limit would, with an error that names the argument.
    if depth >= MAX_NESTING:
        raise ArgumentTooDeep(type(v))
    return depth + 1


def _enc_sequence(tag: str) -> _Encoder:
    def encode(v: Any, out: list[str], depth: int) -> None:
        inner = _deeper(v, depth)
        out.append(f"{tag}{len(v)}[")
        for item in v:
            encode_value(item, out, inner)
        out.append("]")

    return encode


def _enc_unordered(tag: str) -> _Encoder:
    def encode(v: Any, out: list[str], depth: int) -> None:
        inner = _deeper(v, depth)
        # Order of a set does not matter: sort the encodings of its members.
        members = sorted(_encoded(item, inner) for item in v)
        out.append(f"{tag}{len(members)}[{''.join(members)}]")

    return encode


def _enc_dict(v: Any, out: list[str], depth: int) -> None:
    inner = _deeper(v, depth)
    # Insertion order of a dict does not change its equality, so it must not change the key.
    pairs = sorted((_encoded(k, inner), _encoded(val, inner)) for k, val in v.items())
    out.append(f"m{len(pairs)}[")
    for k, val in pairs:
        out.append(k)
        out.append(val)
    out.append("]")


_ENCODERS: dict[type, _Encoder] = {
    str: _enc_str,
    int: _enc_int,
    bool: _enc_bool,
    float: _enc_float,
    type(None): _enc_none,
    bytes: _enc_bytes,
    bytearray: _enc_bytes,
    dt.datetime: _enc_datetime,
    dt.date: _enc_date,
    dt.time: _enc_time,
    Decimal: _enc_decimal,
    uuid.UUID: _enc_uuid,
    tuple: _enc_sequence("t"),
    list: _enc_sequence("l"),
    set: _enc_unordered("S"),
    frozenset: _enc_unordered("S"),
    dict: _enc_dict,
}
# Subclasses of these (other than enums, models and dataclasses) encode as their base.
_BASES = (bool, str, int, float, dt.datetime, dt.date, dt.time, Decimal, uuid.UUID, bytes,
          tuple, list, dict, set, frozenset)  # fmt: skip


def _encoded(value: object, depth: int) -> str:
    out: list[str] = []
    encode_value(value, out, depth)
    return "".join(out)


def encode_value(value: object, out: list[str], depth: int = 0) -> None:
    """Append the canonical, type-tagged, self-delimiting encoding of ``value`` to ``out``.

    Raises ``UnsupportedArgument`` (a ``TypeError``) for a type with no encoding and
    ``ArgumentTooDeep`` for nesting past ``MAX_NESTING`` or a cycle.
    """
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        encoder(value, out, depth)
        return
    cls: type = type(value)
    if isinstance(value, enum.Enum):
        out.append(f"E{cls.__module__}.{cls.__qualname__}(")
        encode_value(value.value, out, _deeper(value, depth))
        out.append(")")
    elif isinstance(value, pydantic.BaseModel):
        out.append(f"P{cls.__module__}.{cls.__qualname__}(")
        _enc_dict(dict(value), out, _deeper(value, depth))
        out.append(")")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        out.append(f"C{cls.__module__}.{cls.__qualname__}(")
        _enc_dict(fields, out, _deeper(value, depth))
        out.append(")")
    else:
        for base in _BASES:
            if isinstance(value, base):
                _ENCODERS[base](value, out, depth)
                return
        raise UnsupportedArgument(type(value))


def args_hash(encoded: str) -> str:
    """16 hex digits (64 bits) of BLAKE2b over the canonical encoding."""
    return hashlib.blake2b(encoded.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


# ---------------------------------------------------------------------------------------------
# Memo tables bounded by entries and bytes
# ---------------------------------------------------------------------------------------------

_K = TypeVar("_K")
_V = TypeVar("_V")


class BoundedMemo(Generic[_K, _V]):
    """A memo table bounded by its number of entries and by the bytes its entries hold.

    The caller gives each entry's size (an estimate of the text it keeps alive). An entry
    larger than ``max_bytes // 64`` is not kept at all (one megabyte argument must not evict
    a thousand small ones); when the table is full it is cleared whole, which costs the hot
    entries one recomputation and keeps the lookup a single dict access.
    """

    __slots__ = ("_bytes", "_table", "get", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 64:
            raise ValueError("BoundedMemo needs max_entries >= 1 and max_bytes >= 64")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._table: dict[_K, _V] = {}
        self._bytes = 0
        # The table's own get: a lookup on the hit path costs no extra Python frame. The
        # table is only ever cleared in place, so this stays its get.
        self.get: Callable[[_K], _V | None] = self._table.get

    def put(self, key: _K, value: _V, size: int) -> None:
        if size > self.max_bytes // 64:
            return
        if len(self._table) >= self.max_entries or self._bytes + size > self.max_bytes:
            self.clear()
        self._table[key] = value
        self._bytes += size

    def clear(self) -> None:
        self._table.clear()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """The sizes of the entries held, as given to ``put`` (approximate under threads)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._table)


# ---------------------------------------------------------------------------------------------
# Signature binding
# ---------------------------------------------------------------------------------------------

_MISSING: Any = object()


class ArgumentBinder:
    """Binds a call's arguments to a function's signature, defaults applied, fast.

    ``bind(args, kwargs)`` returns a dict of every parameter (including excluded ones, which
    templates may still use); ``key_part(bound)`` encodes only the parameters in the key.
    """

    def __init__(self, func: Callable[..., Any], exclude: Iterable[str] = ()) -> None:
        self.signature = inspect.signature(func)
        self.func_name = getattr(func, "__qualname__", repr(func))
        params = list(self.signature.parameters.values())
        self.names = [p.name for p in params]
        excluded = set(exclude)
        unknown = excluded - set(self.names)
        if unknown:
            raise ValueError(
                f"freshcache: exclude= names {sorted(unknown)} that are not parameters of "
                f"{self.func_name}{self.signature}"
            )
        if params and params[0].name in ("self", "cls") and "." in self.func_name:
            excluded.add(params[0].name)  # the instance is not part of what is computed
        self.excluded = frozenset(excluded)
        self.key_names = [n for n in self.names if n not in excluded]
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self._fast = simple
        self._defaults = [
            _MISSING if p.default is inspect.Parameter.empty else p.default for p in params
        ]
        self._index = {n: i for i, n in enumerate(self.names)}
        self._var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if self._fast and len(args) <= len(self.names):
            values = list(args)
            values.extend(self._defaults[len(args) :])
            ok = True
            for name, value in kwargs.items():
                i = self._index.get(name)
                if i is None or i < len(args):
                    ok = False
                    break
                values[i] = value
            if ok and _MISSING not in values:
                return dict(zip(self.names, values, strict=True))
        # The general path: also produces Python's own error messages for a bad call.
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def key_part(self, bound: Mapping[str, Any]) -> str:
        out: list[str] = []
        for name in self.key_names:
            value = bound[name]
            try:
                if name == self._var_kw:
                    _enc_dict(value, out, 0)
                else:
                    encode_value(value, out)
            except UnsupportedArgument as exc:
                if exc.problem:
                    raise TypeError(
                        f"freshcache: cannot build a cache key for {self.func_name}(): "
                        f"parameter {name!r} holds {exc.problem}; leave it out with "
                        f"exclude=({name!r},) or pass key=..."
                    ) from None
                raise TypeError(
                    f"freshcache: cannot build a cache key for {self.func_name}(): parameter "
                    f"{name!r} got a {exc.value_type.__qualname__}, which has no canonical "
                    "encoding (supported: str, int, float, bool, None, bytes, date, datetime, "
                    "time, Decimal, UUID, Enum, tuple, list, dict, set, dataclasses, pydantic "
                    f"models); leave it out with exclude=({name!r},) or pass key=..."
                ) from None
            out.append(",")
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# Templates: "booking:availability:{event_date}", "booking:{result.event_date}:*"
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    root: str
    attrs: tuple[str, ...]


class TemplateValueError(TypeError):
    """A template field could not be filled from the call (a missing attribute, a value with
    no key text); the message names the field and the template."""


class Template:
    """A key prefix or pattern with ``{name}`` / ``{name.attr}`` fields; values are escaped."""

    __slots__ = ("_constant", "_parts", "fields", "is_constant", "text")

    def __init__(self, text: str, allowed_roots: Iterable[str], what: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"freshcache: {what} must be a string, got {type(text).__qualname__}")
        self.text = text
        allowed = set(allowed_roots)
        parts: list[str | _Field] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"freshcache: malformed template {what} {text!r}: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if literal:
                # Literal text is the programmer's, used as written, but a lone surrogate in it
                # could not be sent to Redis: encode it as escape() does, so it still matches.
                parts.append(encode_surrogates(literal))
            if field is None:
                continue
            if spec or conversion:
                raise ValueError(
                    f"freshcache: {what} {text!r}: format specs and conversions are not "
                    f"supported in {{{field}}}; values are formatted canonically"
                )
            root, *attrs = field.split(".")
            if not root.isidentifier() or not all(a.isidentifier() for a in attrs):
                raise ValueError(
                    f"freshcache: {what} {text!r}: field {{{field}}} must be a name or "
                    "name.attribute"
                )
            if root not in allowed:
                raise ValueError(
                    f"freshcache: {what} {text!r} refers to {{{root}}}, which is not one of "
                    f"{sorted(allowed)}"
                )
            parts.append(_Field(root, tuple(attrs)))
        self._parts = tuple(parts)
        self.fields = tuple(p for p in parts if isinstance(p, _Field))
        self.is_constant = not self.fields
        self._constant = "".join(p for p in parts if isinstance(p, str))

    def fill(self, values: Mapping[str, Any]) -> str:
        """The template with every field replaced by its escaped value.

        Raises ``TemplateValueError`` (a ``TypeError``) naming the field when a value cannot
        be found or placed in a key; never an error from deep inside (a surrogate, a huge
        int, a megabyte string all give a short segment).
        """
        if self.is_constant:
            return self._constant
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = values[part.root]
                for attr in part.attrs:
                    value = getattr(value, attr)
                out.append(escape(value))
            except Exception as exc:  # a property may raise anything: name the field instead
                field = ".".join((part.root, *part.attrs))
                raise TemplateValueError(
                    f"freshcache: template {short_repr(self.text)} field {{{field}}}: "
                    f"{short_repr(str(exc), 300)}"
                ) from None
        return "".join(out)


def short_repr(text: str, limit: int = 120) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters: error messages never echo megabytes."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 15]}... ({len(text)} chars)"


class PatternBuildError(ValueError):
    """One invalidation pattern of a write could not be built from its template.

    The engine keeps this instead of raising after the write: ``fallback`` is the broadest
    pattern the template could have meant (its literal prefix and ``*``), coarser but never
    stale; ``template`` is the pattern's source text and ``reason`` what went wrong.
    """

    def __init__(self, template: str, reason: str, fallback: str) -> None:
        super().__init__(
            f"freshcache: invalidation pattern {short_repr(template)} could not be built "
            f"({reason}); invalidating {fallback!r} instead"
        )
        self.template = template
        self.reason = reason
        self.fallback = fallback


@dataclasses.dataclass(frozen=True, slots=True)
class BuiltPatterns:
    """What ``build_patterns`` made: every pattern to apply (fallbacks in place of the
    templates that failed, in template order) and the failures, to count or report."""

    patterns: list[str]
    failures: list[PatternBuildError]


def literal_prefix_pattern(text: str) -> str:
    """The broadest pattern a template can mean: its whole segments before the first field,
    then ``*`` (``"booking:day:{d}:*"`` -> ``"booking:day:*"``; a field in the first segment
    -> ``"*"``, the whole namespace)."""
    literal = encode_surrogates(text.split("{", 1)[0])
    segments = [s for s in literal.split(SEGMENT_SEPARATOR)[:-1] if s]
    return SEGMENT_SEPARATOR.join([*segments, WILDCARD])


def build_patterns(templates: Iterable[Template], values: Mapping[str, Any]) -> BuiltPatterns:
    """Fill each pattern template on its own: one that fails does not stop the others, and
    its failure comes back typed (with the fallback to apply) instead of being raised."""
    patterns: list[str] = []
    failures: list[PatternBuildError] = []
    for template in templates:
        try:
            patterns.append(template.fill(values))
        except Exception as exc:  # a value's own __format__ may raise anything
            failure = PatternBuildError(
                template.text, str(exc), literal_prefix_pattern(template.text)
            )
            failures.append(failure)
            patterns.append(failure.fallback)
    return BuiltPatterns(patterns, failures)


def validate_key_prefix(prefix: str) -> None:
    """A key prefix is one or more non-empty literal segments (template fields allowed)."""
    literal = "".join(p for p, *_ in string.Formatter().parse(prefix))
    segments = prefix.split(SEGMENT_SEPARATOR)
    if not prefix or any(not s for s in segments):
        raise ValueError(f"freshcache: key_prefix {prefix!r} has an empty segment")
    bad = GLOB_CHARACTERS.intersection(literal)
    if bad:
        raise ValueError(
            f"freshcache: key_prefix {prefix!r} contains {''.join(sorted(bad))!r}; wildcards "
            "belong in invalidation patterns, not in keys"
        )
    if segments[0].startswith(RESERVED_PREFIX):
        raise ValueError(
            f"freshcache: key_prefix {prefix!r}: first segments starting with "
            f"{RESERVED_PREFIX!r} are reserved for freshcache's own keys"
        )
