"""What every adapter shares: the module being read, and how a read or write is recorded.

An adapter knows one cache API: how it recognises its calls, how it builds keys, encodes
values, invalidates, and what it does when Redis is down. It turns what it recognises into the
same CachedRead / RawWrite records the freshcache scanner makes, so every check across the code
base (coverage, TTLs, glob injection, commits, shared keys) applies to every API alike.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from freshcache.audit.config import (
    REQUEST_NAMES,
    REQUEST_TYPES,
    SESSION_NAMES,
    SESSION_TYPES,
    AuditConfig,
)
from freshcache.audit.model import (
    CachedRead,
    Finding,
    Hole,
    HoleKind,
    InvalidationPattern,
    Location,
    Param,
    Part,
    PatternSource,
    SymText,
    TtlSource,
    Unanalysed,
)
from freshcache.audit.resolve import ModuleInfo, Resolver, local_scope, source
from freshcache.audit.scanner import (
    FunctionFacts,
    FunctionNode,
    RawWrite,
    ScanResult,
    function_params,
)

#: Words in a key that mark security-relevant state (revocations, limits, one-time use).
SECURITY_WORDS = (
    "revok",
    "blacklist",
    "blocklist",
    "denylist",
    "ratelimit",
    "rate_limit",
    "rate-limit",
    "throttle",
    "idempot",
    "nonce",
    "lockout",
    "login_attempt",
    "failed_login",
    "otp",
    "jti",
)


@dataclasses.dataclass(slots=True)
class Ctx:
    """One module of the audited code, seen by one adapter."""

    info: ModuleInfo
    resolver: Resolver
    out: ScanResult
    config: AuditConfig

    def loc(self, node: ast.AST) -> Location:
        line = getattr(node, "lineno", 1)
        return Location(self.info.display, line, getattr(node, "col_offset", 0) + 1)

    def qualified(self, expr: ast.expr) -> str | None:
        return self.resolver.qualified(self.info, expr)

    def by_value(self, annotation: str) -> bool:
        """Does an argument of this annotation format by value (equal values, equal ``str()``)?
        Besides the builtin value types: the audited code's own aliases of them
        (``Kind = Literal["a", "b"]``, ``Tag = NewType("Tag", str)``) and its Enum classes."""
        return all(
            name in VALUE_TYPES or self._value_alias(name) for name in annotation_names(annotation)
        )

    def _value_alias(self, name: str) -> bool:
        qual = self.qualified(ast.Name(id=name, ctx=ast.Load()))
        module, _, attr = (qual or "").rpartition(".")
        mod = self.resolver.modules.get(self.resolver.module_named(module)) if module else None
        if mod is None:
            return False
        value = mod.assignments.get(attr)
        if isinstance(value, ast.Subscript):
            return source(value.value).rsplit(".", 1)[-1] == "Literal"
        if isinstance(value, ast.Call) and source(value.func).rsplit(".", 1)[-1] == "NewType":
            return len(value.args) == 2 and annotation_names(source(value.args[1])) <= VALUE_TYPES
        return any(
            isinstance(node, ast.ClassDef)
            and node.name == attr
            and any(source(b).rsplit(".", 1)[-1] in _ENUM_BASES for b in node.bases)
            for node in mod.tree.body
        )

    def library(self, expr: ast.expr) -> str | None:
        """The dotted origin of ``expr`` when it comes from an installed library (not from an
        audited module), e.g. "cashews.cache" for ``cache`` after ``from cashews import cache``."""
        root = expr
        while isinstance(root, ast.Attribute | ast.Call):
            root = root.func if isinstance(root, ast.Call) else root.value
        qual = self.qualified(expr)
        if qual is None:
            return None
        head = qual.split(".")[0]
        if self.resolver.module_named(qual.rsplit(".", 1)[0]) in self.resolver.modules:
            return None
        return qual if head else None

    def facts(self, qualname: str) -> FunctionFacts | None:
        index = self.out.facts_index
        if not index:
            index.update({(f.module, f.qualname): f for f in self.out.functions})
        return index.get((self.info.name, qualname))

    @property
    def calls(self) -> list[ast.Call]:
        """Every call in the module, nested functions included (walked once per audit)."""
        found = self.out.module_calls.get(self.info.name)
        if found is None:
            found = [n for n in ast.walk(self.info.tree) if isinstance(n, ast.Call)]
            self.out.module_calls[self.info.name] = found
        return found

    def imports_any(self, libraries: tuple[str, ...]) -> bool:
        """Does the module import one of ``libraries`` (by top-level package name)?"""
        return any(module.split(".")[0] in libraries for module, _ in self.info.imports.values())

    def understood(self, node: ast.AST) -> None:
        self.out.understood.add(id(node))

    def unanalysed(self, node: ast.AST, what: str, why: str, kind: str) -> None:
        self.out.unanalysed.append(Unanalysed(self.loc(node), what, why, kind))

    def finding(self, f: Finding) -> None:
        self.out.adapter_findings.append(f)

    def api_seen(self, api: str, layout: str, defined_at: str = "") -> None:
        self.out.apis.setdefault(api, (layout, defined_at))

    # -- values --------------------------------------------------------------------------

    def ttl(self, expr: ast.expr | None) -> tuple[float | None, TtlSource, str]:
        if expr is None:
            return None, TtlSource.MISSING, ""
        text = source(expr)
        value = self.resolver.constant(self.info, expr)
        if value is None:
            return None, TtlSource.MISSING, text
        if isinstance(value, str):
            seconds = duration_seconds(value)
            if seconds is not None:
                return seconds, TtlSource.LITERAL, text
        if isinstance(value, int | float) and not isinstance(value, bool):
            literal = not any(isinstance(n, ast.Name | ast.Attribute) for n in ast.walk(expr))
            return float(value), TtlSource.LITERAL if literal else TtlSource.CONSTANT, text
        return None, TtlSource.UNRESOLVED, text

    def text(
        self, expr: ast.expr | None, scope: dict[str, ast.expr] | None = None
    ) -> SymText | None:
        if expr is None:
            return None
        return self.resolver.symtext(self.info, expr, scope)

    def constant_str(self, expr: ast.expr | None) -> str | None:
        if expr is None:
            return None
        value = self.resolver.constant(self.info, expr)
        return value if isinstance(value, str) else None


def duration_seconds(text: str) -> float | None:
    """cashews-style durations: "90s", "5m", "1h", "2h30m", "1d"; None when not one."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total, number = 0.0, ""
    if not text:
        return None
    for ch in text.strip():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
        else:
            return None
    if number:
        return None
    return total


def functions(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, FunctionNode]]:
    """Every function of a module with its qualname (methods, nested functions)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = prefix + node.name
            yield qualname, node
            yield from functions(node.body, f"{qualname}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node.body, f"{prefix}{node.name}.")
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.AsyncWith):
            blocks = (
                [node.body, node.orelse]
                if isinstance(node, ast.If)
                else [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
                if isinstance(node, ast.Try)
                else [node.body]
            )
            for block in blocks:
                yield from functions(block, prefix)


def call_args(call: ast.Call | None) -> tuple[list[ast.expr], dict[str, ast.expr]]:
    if call is None:
        return [], {}
    return list(call.args), {kw.arg: kw.value for kw in call.keywords if kw.arg}


def argument(call: ast.Call | None, name: str, position: int | None = None) -> ast.expr | None:
    args, kwargs = call_args(call)
    if name in kwargs:
        return kwargs[name]
    if position is not None and position < len(args):
        arg = args[position]
        return None if isinstance(arg, ast.Starred) else arg
    return None


def params_of(node: FunctionNode) -> list[Param]:
    return function_params(node)


def is_method(qualname: str, node: FunctionNode) -> bool:
    first = (node.args.posonlyargs + node.args.args)[:1]
    return (
        "." in qualname
        and "<locals>" not in qualname.rsplit(".", 1)[0]
        and bool(first and first[0].arg in ("self", "cls"))
    )


def annotation_names(annotation: str) -> set[str]:
    """The last dotted names in an annotation: "date | None" -> {"date", "None"}."""
    cleaned = annotation
    for ch in "[]|,()'\"":
        cleaned = cleaned.replace(ch, " ")
    return {part.rsplit(".", 1)[-1] for part in cleaned.split() if part}


def is_session_or_request(param: Param) -> bool:
    names = annotation_names(param.annotation)
    if names & (SESSION_TYPES | REQUEST_TYPES | {"Response"}):
        return True
    return not param.annotation and param.name in SESSION_NAMES | REQUEST_NAMES


def is_dependency(param: Param, node: FunctionNode) -> bool:
    """A FastAPI dependency (``= Depends(...)`` or ``Annotated[..., Depends(...)]``): an object
    built per request, keyed by identity when it reaches a key."""
    if "Depends(" in param.annotation:
        return True
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    defaults: dict[str, ast.expr] = {}
    for arg, default in zip(
        positional[len(positional) - len(a.defaults) :], a.defaults, strict=True
    ):
        defaults[arg.arg] = default
    for kwarg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        if kw_default is not None:
            defaults[kwarg.arg] = kw_default
    value = defaults.get(param.name)
    return isinstance(value, ast.Call) and source(value.func).rsplit(".", 1)[-1] in (
        "Depends",
        "Security",
    )


#: Annotations whose values have a stable, value-based text (str(), repr(), JSON).
_ENUM_BASES = frozenset({"Enum", "StrEnum", "IntEnum", "Flag", "IntFlag"})
VALUE_TYPES = frozenset(
    {
        "str",
        "int",
        "float",
        "bool",
        "None",
        "Optional",
        "date",
        "datetime",
        "time",
        "timedelta",
        "UUID",
        "Decimal",
        "Literal",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "List",
        "Tuple",
        "Dict",
        "Set",
        "Sequence",
        "Mapping",
        "Any",
        "Enum",
        "bytes",
    }
)


def make_read(
    ctx: Ctx,
    qualname: str,
    node: FunctionNode,
    *,
    api: str,
    ttl_expr: ast.expr | None,
    prefix: SymText | None,
    prefix_text: str,
    prefix_node: ast.AST,
    key_suffix: SymText,
    key_params: tuple[str, ...],
    serializer: str | None,
    binding: str = "module",
    dropped: tuple[tuple[str, str], ...] = (),
    by_identity: tuple[str, ...] = (),
    signing: bool = False,
    store: str = "",
    custom_key: bool = False,
    source_text: str = "",
    ttl_override: tuple[float | None, TtlSource, str] | None = None,
) -> CachedRead:
    ttl, ttl_source, ttl_text = ttl_override or ctx.ttl(ttl_expr)
    return CachedRead(
        id=f"{ctx.info.name}:{qualname}",
        module=ctx.info.name,
        qualname=qualname,
        location=ctx.loc(node),
        binding=binding,
        is_async=isinstance(node, ast.AsyncFunctionDef),
        ttl=ttl,
        ttl_source=ttl_source,
        ttl_text=ttl_text,
        prefix=prefix,
        prefix_text=prefix_text,
        prefix_location=ctx.loc(prefix_node),
        custom_key=custom_key,
        params=tuple(params_of(node)),
        exclude=(),
        exclude_resolved=True,
        serializer=serializer,
        signing_key=signing,
        footprint=None,
        key_suffix=SymText(()) + key_suffix,
        api=api,
        key_params=key_params,
        dropped=dropped,
        by_identity=by_identity,
        returns=source(node.returns) if node.returns is not None else "",
        store=store,
        source_text=source_text,
    )


def pattern(
    text: SymText | None, kind: str, shown: str, where: Location, source_kind: PatternSource
) -> InvalidationPattern:
    """An invalidation as the API performs it: ``kind`` is its mechanism ("scan": SCAN/KEYS and
    DEL; "entry": DEL of one key; "generation": freshcache's token)."""
    if text is None:
        return InvalidationPattern(None, PatternSource.UNRESOLVED, shown, where, "unknown")
    return InvalidationPattern(text, source_kind, shown, where, kind)


def add_write(
    ctx: Ctx,
    qualname: str,
    where: Location,
    kind: str,
    patterns: tuple[InvalidationPattern, ...],
    *,
    api: str,
    store: str = "",
    source_text: str = "",
) -> None:
    facts = ctx.facts(qualname) if qualname != "<module>" else None
    ctx.out.writes.append(
        RawWrite(
            ctx.info.name,
            qualname,
            facts,
            where,
            kind,
            patterns,
            api=api,
            store=store,
            source_text=source_text,
        )
    )


def template_key(ctx: Ctx, text: str, params: list[str]) -> tuple[SymText, tuple[str, ...]]:
    """A key template of "{name}" fields filled *raw* by the library (cashews, fastapi-cache2
    key builders): the fields' roots are the parameters that reach the key."""
    import string

    parts: list[Part] = []
    used: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return SymText.literal(text), ()
    for literal, field, _spec, _conv in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        root = field.split(".")[0].split("[")[0]
        if root in params and root not in used:
            used.append(root)
        parts.append(Hole(HoleKind.RAW, field))
    return SymText(()) + SymText(tuple(parts)), tuple(used)


def names_in(expr: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}


def scope_of(node: FunctionNode) -> dict[str, ast.expr]:
    return local_scope(node)


def fails_open(handlers: list[ast.ExceptHandler]) -> bool:
    """An ``except`` that neither re-raises nor raises: the caller carries on as if the cache
    had answered (a miss, False, 0)."""
    for handler in handlers:
        if any(isinstance(n, ast.Raise) for n in ast.walk(handler)):
            return False
    return bool(handlers)


def security_word(text: str) -> str | None:
    lowered = text.lower().replace("-", "_")
    return next((w for w in SECURITY_WORDS if w.replace("-", "_") in lowered), None)


# -- key builders defined in the audited code ------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BuilderReach:
    """What a ``key_builder=`` function of the audited code puts into the key."""

    name: str  # "item_key() (app/keys.py:4)"
    whole: bool  # every argument (it passes args/kwargs or the request on whole)
    named: frozenset[str]  # the arguments it reads by name: kwargs["day"], kwargs.get("day")


def builder_function(ctx: Ctx, expr: ast.expr | None) -> tuple[ModuleInfo, ast.AST] | None:
    """The function (or lambda) a ``key_builder=`` expression names, when it is audited code."""
    if expr is None:
        return None
    if isinstance(expr, ast.Lambda):
        return ctx.info, expr
    qual = ctx.qualified(expr)
    if qual is None:
        return None
    module, _, name = qual.rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module)) if module else None
    node = mod.functions.get(name) if mod is not None else None
    return (mod, node) if mod is not None and node is not None else None


def builder_reach(ctx: Ctx, expr: ast.expr | None, positional: list[str]) -> BuilderReach | None:
    """Which arguments of the cached call a key builder of the audited code reads.

    ``kwargs`` (or the ``**`` parameter) read by name, ``kwargs["day"]`` / ``kwargs.get("day")``,
    keeps only those; ``args[i]`` keeps the i-th of ``positional``; ``args``, ``kwargs`` or the
    request passed on whole (``str(kwargs)``, ``request.url``) keeps every argument. None: not
    a function of the audited code (its key stays opaque)."""
    found = builder_function(ctx, expr)
    if found is None:
        return None
    mod, fn = found
    assert isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    spec = fn.args
    kw_names = {"kwargs"} | ({spec.kwarg.arg} if spec.kwarg else set())
    arg_names = {"args"} | ({spec.vararg.arg} if spec.vararg else set())
    request_names = {"request", "req"}
    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(fn):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    named: set[str] = set()
    whole = False
    for node in ast.walk(fn):
        if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load):
            continue
        up = parents.get(id(node))
        if node.id in kw_names:
            if isinstance(up, ast.Subscript) and up.value is node:
                key = up.slice
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    named.add(key.value)
                    continue
            if isinstance(up, ast.Attribute) and up.attr == "get":
                call = parents.get(id(up))
                if (
                    isinstance(call, ast.Call)
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)
                ):
                    named.add(call.args[0].value)
                    continue
            whole = True
        elif node.id in arg_names:
            if isinstance(up, ast.Subscript) and up.value is node:
                index = up.slice
                if isinstance(index, ast.Constant) and isinstance(index.value, int):
                    if 0 <= index.value < len(positional):
                        named.add(positional[index.value])
                    continue
            whole = True
        elif node.id in request_names:
            whole = True  # the URL or the query string: every query and path parameter
    line = getattr(fn, "lineno", 0)
    label = getattr(fn, "name", "<lambda>")
    return BuilderReach(f"{label}() ({mod.display}:{line})", whole, frozenset(named))
