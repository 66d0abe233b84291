"""A home-grown cache layer: ``cached(ttl, key_prefix)`` / ``invalidate_cache(pattern)``
decorators and a ``CacheService`` (get/set/delete/delete_pattern), defined in the audited code.

There is no library to model, so the layer is read from its own source: the decorator's
wrapper (how it finds its cache, builds the key, tests for a hit), the key builder it calls
(which arguments survive an ``isinstance`` filter, whether ``self`` is skipped, ``__name__`` or
``__qualname__``, ``str()`` of objects) and the service's methods (the serializer, ``if ttl:``,
SCAN/KEYS + DEL, errors swallowed, a client left ``None`` after a failed connect). Every use of
the decorators then becomes a read or a write with those semantics.
"""

from __future__ import annotations

import ast
import dataclasses

from freshcache.audit.adapters.base import (
    Ctx,
    add_write,
    annotation_names,
    argument,
    fails_open,
    functions,
    is_dependency,
    is_method,
    is_session_or_request,
    make_read,
    params_of,
    pattern,
)
from freshcache.audit.model import CachedRead, Hole, HoleKind, Location, PatternSource, SymText
from freshcache.audit.resolve import ModuleInfo, source
from freshcache.audit.rules import finding
from freshcache.audit.scanner import FunctionNode, ScanResult

API = "home-grown"
_READ_CALLS = {"get"}
_WRITE_CALLS = {"set", "setex", "set_cache", "add"}
_DELETE_CALLS = {
    "delete_pattern",
    "delete",
    "scan_iter",
    "keys",
    "unlink",
    "invalidate",
    "clear",
    "delete_many",
    "delete_match",
    "invalidate_pattern",
}
_FIELD_NAMES = ("key_fields", "keys", "vary_on", "fields", "key_args")
_TTL_NAMES = ("ttl", "expire", "expiration", "expires", "timeout", "seconds", "ex")
_PREFIX_NAMES = ("key_prefix", "prefix", "namespace", "key")


@dataclasses.dataclass(slots=True)
class Service:
    """The class that talks to Redis for the layer (``CacheService``)."""

    name: str
    module: ModuleInfo
    node: ast.ClassDef
    serializer: str = "unknown"
    swallowed: dict[str, int] = dataclasses.field(default_factory=dict)  # method -> line
    no_reconnect: int | None = None  # line of "self._client = None" in an except
    ttl_truthy: int | None = None  # line of "if ttl:" in set()
    scan_delete: bool = False  # delete_pattern walks SCAN/KEYS

    def loc(self, line: int) -> Location:
        return Location(self.module.display, line)


@dataclasses.dataclass(slots=True)
class Layer:
    """One decorator of the layer, as its source says it behaves."""

    qual: str
    module: ModuleInfo
    node: FunctionNode
    kind: str  # "read" | "invalidate"
    params: list[ast.arg]
    defaults: dict[str, ast.expr]
    skips_first: bool = False
    allowed_types: frozenset[str] | None = None  # the key builder's isinstance() filter
    builder: str = ""  # where that filter is, for the messages
    by_identity: bool = False  # str()/repr() of the arguments
    name_attr: str = "__qualname__"
    hit_test: str = "unknown"  # "truthy" | "not-none"
    hit_line: int = 0
    cache_attr: str | None = None  # args[0].<cache_attr>
    service: Service | None = None
    serializer: str = ""  # pickle/json called in the wrapper itself (no service)

    @property
    def where(self) -> str:
        return f"{self.module.display}:{self.node.lineno}"

    def param_expr(self, call: ast.Call | None, names: tuple[str, ...]) -> ast.expr | None:
        for i, p in enumerate(self.params):
            if p.arg in names:
                given = argument(call, p.arg, i)
                return given if given is not None else self.defaults.get(p.arg)
        return None


def find_layers(out: ScanResult) -> dict[str, Layer]:
    services = [s for mod in out.modules.values() for s in _services(mod)]
    layers: dict[str, Layer] = {}
    for mod in out.modules.values():
        for node in mod.tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            layer = _layer(mod, node)
            if layer is None:
                continue
            same_module = [s for s in services if s.module is mod]
            candidates = same_module or services
            layer.service = candidates[0] if candidates else None
            layers[layer.qual] = layer
    return layers


def _nested(node: FunctionNode) -> list[FunctionNode]:
    return [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _layer(mod: ModuleInfo, node: FunctionNode) -> Layer | None:
    # decorator factory: def cached(ttl, prefix): def decorator(func): def wrapper(...)
    # or a plain decorator: def cached(func): def wrapper(...)
    for inner in _nested(node):
        wrappers = _nested(inner) or [inner]
        for wrapper in wrappers:
            func_names = {a.arg for a in (inner if wrappers != [inner] else node).args.args}
            calls = [n for n in ast.walk(wrapper) if isinstance(n, ast.Call)]
            if not any(isinstance(c.func, ast.Name) and c.func.id in func_names for c in calls):
                continue
            attrs = {c.func.attr for c in calls if isinstance(c.func, ast.Attribute)}
            if attrs & _READ_CALLS and attrs & _WRITE_CALLS:
                kind = "read"
            elif attrs & _DELETE_CALLS:
                kind = "invalidate"
            else:
                continue
            factory = wrappers != [inner]
            params = list(node.args.args) if factory else []
            defaults = {
                a.arg: d
                for a, d in zip(
                    params[len(params) - len(node.args.defaults) :],
                    node.args.defaults,
                    strict=True,
                )
            }
            layer = Layer(f"{mod.name}.{node.name}", mod, node, kind, params, defaults)
            _read_wrapper(mod, layer, wrapper)
            return layer
    return None


def _read_wrapper(mod: ModuleInfo, layer: Layer, wrapper: FunctionNode) -> None:
    got: set[str] = set()
    for n in ast.walk(wrapper):
        if isinstance(n, ast.Attribute) and n.attr in ("__name__", "__qualname__"):
            layer.name_attr = n.attr
        if (
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Subscript)
            and source(n.value) == "args[0]"
        ):
            layer.cache_attr = n.attr
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "hasattr"
            and len(n.args) == 2
            and source(n.args[0]) == "args[0]"
            and isinstance(n.args[1], ast.Constant)
            and isinstance(n.args[1].value, str)
        ):
            layer.cache_attr = n.args[1].value
        if isinstance(n, ast.Assign) and len(n.targets) == 1:
            value = n.value.value if isinstance(n.value, ast.Await) else n.value
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr == "get"
                and isinstance(n.targets[0], ast.Name)
            ):
                got.add(n.targets[0].id)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            starred = [a for a in n.args if isinstance(a, ast.Starred)]
            if starred and source(starred[0].value).replace(" ", "") == "args[1:]":
                layer.skips_first = True
            target = mod.functions.get(n.func.id)
            if target is not None and "key" in n.func.id.lower():
                _read_builder(mod, layer, target)
        if isinstance(n, ast.Call) and source(n.func) in ("str", "repr") and n.args:
            names = {x.id for x in ast.walk(n.args[0]) if isinstance(x, ast.Name)}
            layer.by_identity |= bool(names & {"args", "kwargs"})
        if isinstance(n, ast.FormattedValue) and isinstance(n.value, ast.Name):
            layer.by_identity |= n.value.id in ("args", "kwargs")
        if isinstance(n, ast.Call) and source(n.func).endswith(("dumps", "loads")):
            layer.serializer = (
                "pickle" if "pickle" in source(n.func) else layer.serializer or "json"
            )
    for n in ast.walk(wrapper):
        if not isinstance(n, ast.If):
            continue
        test = n.test
        returns_raw = any(
            isinstance(r, ast.Return) and isinstance(r.value, ast.Name) and r.value.id in got
            for r in ast.walk(n)
        )
        if isinstance(test, ast.Name) and test.id in got and returns_raw:
            # Only a decoded value is tested: raw bytes of a stored [] or 0 are never empty.
            layer.hit_test, layer.hit_line = "truthy", n.lineno
        elif (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id in got
            and isinstance(test.ops[0], ast.IsNot)
        ):
            layer.hit_test, layer.hit_line = "not-none", n.lineno


def _read_builder(mod: ModuleInfo, layer: Layer, builder: FunctionNode) -> None:
    layer.builder = f"{builder.name}() ({mod.display}:{builder.lineno})"
    for n in ast.walk(builder):
        if isinstance(n, ast.Call) and source(n.func) == "isinstance" and len(n.args) == 2:
            layer.allowed_types = frozenset(_type_names(n.args[1]))
        if isinstance(n, ast.Call) and source(n.func) in ("str", "repr") and n.args:
            layer.by_identity = True
        if isinstance(n, ast.keyword) and n.arg == "default" and source(n.value) in ("str", "repr"):
            layer.by_identity = True


def _type_names(expr: ast.expr) -> set[str]:
    if isinstance(expr, ast.BinOp):
        return _type_names(expr.left) | _type_names(expr.right)
    if isinstance(expr, ast.Tuple):
        return {n for e in expr.elts for n in _type_names(e)}
    text = source(expr)
    if text in ("type(None)", "None", "NoneType"):
        return {"None"}
    return {text.rsplit(".", 1)[-1]}


def _services(mod: ModuleInfo) -> list[Service]:
    out: list[Service] = []
    for node in mod.tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        methods = {
            m.name: m for m in node.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if not ({"get", "set"} <= set(methods) and set(methods) & {"delete", "delete_pattern"}):
            continue
        service = Service(node.name, mod, node)
        for name, method in methods.items():
            for n in ast.walk(method):
                if (
                    isinstance(n, ast.Try)
                    and fails_open(n.handlers)
                    and name
                    in (
                        "get",
                        "set",
                        "delete",
                        "delete_pattern",
                    )
                ):
                    service.swallowed.setdefault(name, n.handlers[0].lineno)
                if isinstance(n, ast.ExceptHandler):
                    for a in ast.walk(n):
                        if (
                            isinstance(a, ast.Assign)
                            and isinstance(a.value, ast.Constant)
                            and a.value.value is None
                            and any(source(t).startswith("self.") for t in a.targets)
                        ):
                            service.no_reconnect = a.lineno
                if name == "set" and isinstance(n, ast.If) and source(n.test) == "ttl":
                    service.ttl_truthy = n.lineno
                if name == "set" and isinstance(n, ast.Call):
                    func = source(n.func)
                    if func.endswith("dumps") and "pickle" in func:
                        service.serializer = "pickle"
                    elif func.endswith("dumps"):
                        default = next((k for k in n.keywords if k.arg == "default"), None)
                        service.serializer = (
                            f"json (default={source(default.value)})" if default else "json"
                        )
                if (
                    name == "delete_pattern"
                    and isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Attribute)
                    and n.func.attr in ("scan_iter", "keys")
                ):
                    service.scan_delete = True
        out.append(service)
    return out


# -- the layer's own defects (once per layer) ------------------------------------------------


def layer_findings(ctx_out: ScanResult, layers: dict[str, Layer]) -> None:
    seen: set[str] = set()
    for layer in layers.values():
        service = layer.service
        if layer.kind == "read" and layer.hit_test == "truthy":
            ctx_out.adapter_findings.append(
                finding(
                    "FC118",
                    Location(layer.module.display, layer.hit_line),
                    f"@{layer.node.name} tests a hit with `if value:`: an empty list, dict, 0, "
                    "'' or False is stored and never returned, so those calls always recompute",
                    "freshcache returns every stored value, falsy ones included "
                    "(a miss is a sentinel, never a value)",
                    layer.qual,
                )
            )
        if layer.kind == "read" and layer.hit_test == "not-none":
            ctx_out.adapter_findings.append(
                finding(
                    "FC118",
                    Location(layer.module.display, layer.hit_line),
                    f"@{layer.node.name} tests a hit with `is not None`: a function that "
                    "returns None is never a hit and reaches the database on every call",
                    "freshcache caches None too (a miss is a sentinel, never a value)",
                    layer.qual,
                )
            )
        if service is None or service.name in seen:
            continue
        seen.add(service.name)
        for method in ("delete_pattern", "delete"):
            if method in service.swallowed:
                ctx_out.adapter_findings.append(
                    finding(
                        "FC121",
                        service.loc(service.swallowed[method]),
                        f"{service.name}.{method} logs and swallows its errors: an invalidation "
                        "that fails (Redis down, a timeout) is lost, and the stale entries stay "
                        "until their TTL with nothing retrying",
                        "freshcache records a failed invalidation and replays it; reads bypass "
                        "the cache until it is applied",
                        f"{service.module.name}:{service.name}.{method}",
                    )
                )
                break
        if service.no_reconnect is not None:
            ctx_out.adapter_findings.append(
                finding(
                    "FC122",
                    service.loc(service.no_reconnect),
                    f"{service.name}: a failed connect leaves the client None, and nothing "
                    "connects again: one Redis blip at start-up disables the cache for the "
                    "life of the process",
                    "freshcache reconnects behind a circuit breaker (half-open probes)",
                    f"{service.module.name}:{service.name}",
                )
            )


def serializer_of(layer: Layer) -> str:
    if layer.serializer:
        return layer.serializer
    return layer.service.serializer if layer.service else "unknown"


# -- uses of the layer -------------------------------------------------------------------------


def scan_module(ctx: Ctx, layers: dict[str, Layer]) -> None:
    for qualname, node in functions(ctx.info.tree.body):
        for deco in node.decorator_list:
            func = deco.func if isinstance(deco, ast.Call) else deco
            qual = ctx.qualified(func)
            layer = layers.get(qual or "")
            if layer is None:
                continue
            ctx.understood(deco)
            call = deco if isinstance(deco, ast.Call) else None
            layout = _layout(layer)
            ctx.api_seen(API, layout, layer.module.display)
            if layer.kind == "read":
                ctx.out.reads.append(_read(ctx, layer, qualname, node, deco, call))
            else:
                _write(ctx, layer, qualname, node, deco, call)


def _layout(layer: Layer) -> str:
    name = "func.__name__" if layer.name_attr == "__name__" else "func.__qualname__"
    if layer.allowed_types is not None:
        kept = "|".join(sorted(layer.allowed_types))
        args = f"md5(JSON of the {kept} arguments" + (
            ", self skipped)" if layer.skips_first else ")"
        )
    elif layer.by_identity:
        args = "str() of the arguments"
    else:
        args = "the arguments"
    return f"{{namespace}}:{{key_prefix}}:{{{name}}}:{{{args}}}"


def _read(
    ctx: Ctx, layer: Layer, qualname: str, node: FunctionNode, deco: ast.expr, call: ast.Call | None
) -> CachedRead:
    ttl_expr = layer.param_expr(call, _TTL_NAMES)
    prefix_expr = layer.param_expr(call, _PREFIX_NAMES)
    prefix_value = ctx.constant_str(prefix_expr) if prefix_expr is not None else ""
    name = node.name if layer.name_attr == "__name__" else qualname
    custom = call is not None and any(k.arg == "key_builder" for k in call.keywords)
    if prefix_value is None:
        prefix: SymText | None = None
        suffix = SymText((f":{name}:", Hole(HoleKind.HASH, "args_hash")))
    elif prefix_value:
        prefix = SymText.literal(prefix_value)
        suffix = SymText((f":{name}:", Hole(HoleKind.HASH, "args_hash")))
    else:
        prefix = SymText.literal(name)
        suffix = SymText((":", Hole(HoleKind.HASH, "args_hash")))
    params = params_of(node)
    method = is_method(qualname, node)
    if method and (layer.skips_first or layer.cache_attr):
        params = params[1:]
    keyed: list[str] = []
    dropped: list[tuple[str, str]] = []
    identity: list[str] = []
    named = layer.param_expr(call, _FIELD_NAMES)
    fields = ctx.resolver.constant(ctx.info, named) if named is not None else None
    if isinstance(fields, tuple) and all(isinstance(f, str) for f in fields):
        # key_fields=["product_id"]: only the named arguments reach the key
        _missing_fields(ctx, qualname, node, fields, named)  # type: ignore[arg-type]
        for p in params:
            if p.name in fields:
                keyed.append(p.name)
            elif not (is_session_or_request(p) or is_dependency(p, node)):
                dropped.append((p.name, f"{source(named)} does not name it"))  # type: ignore[arg-type]
        params = []
    for p in params:
        if p.name in ("args", "kwargs") and not p.annotation:
            continue
        names = annotation_names(p.annotation) - {"None", "Optional"}
        if layer.allowed_types is not None and p.annotation and not names <= layer.allowed_types:
            if not (is_session_or_request(p) or is_dependency(p, node)):
                kept = ", ".join(sorted(layer.allowed_types))
                dropped.append(
                    (
                        p.name,
                        f"{layer.builder or 'the key builder'} keeps only {kept} arguments; "
                        f"a {p.annotation} is dropped",
                    )
                )
            continue
        keyed.append(p.name)
        if layer.by_identity and p.annotation and not names <= _VALUE_TEXT:
            identity.append(p.name)
    ttl_override = None
    if layer.service is not None and layer.service.ttl_truthy is not None:
        ttl, _source, text = ctx.ttl(ttl_expr)
        if ttl == 0:
            from freshcache.audit.model import TtlSource

            ttl_override = (
                None,
                TtlSource.MISSING,
                f"{text} (`if ttl:` in {layer.service.name}.set stores 0 without expiry)",
            )
    return make_read(
        ctx,
        qualname,
        node,
        api=API,
        ttl_expr=ttl_expr,
        prefix=prefix,
        prefix_text=source(prefix_expr) if prefix_expr is not None else "",
        prefix_node=prefix_expr if prefix_expr is not None else deco,
        key_suffix=suffix,
        key_params=tuple(keyed),
        dropped=tuple(dropped),
        by_identity=tuple(identity),
        serializer=serializer_of(layer),
        custom_key=custom,
        source_text="@" + source(deco),
        ttl_override=ttl_override,
    )


def _missing_fields(
    ctx: Ctx, qualname: str, node: FunctionNode, fields: tuple[str, ...], named: ast.expr
) -> None:
    """``key_fields=["dfd"]`` on a function without a ``dfd`` parameter: the layer looks the
    name up among the call's arguments, finds nothing and puts the same placeholder in every
    key (the calls share one entry unless another field tells them apart)."""
    if node.args.kwarg is not None:
        return  # **kwargs may carry any name
    own = {p.name for p in params_of(node)}
    for field in fields:
        if field in own:
            continue
        ctx.finding(
            finding(
                "FC125",
                ctx.loc(named),
                f"{source(named)} names {field!r}, which is no parameter of {node.name}(): "
                "that part of the key is the same missing value for every call",
                "name the parameter as the function spells it; with freshcache every "
                "parameter reaches the key unless exclude= names it",
                f"{ctx.info.name}:{qualname}",
            )
        )


_VALUE_TEXT = frozenset({"str", "int", "float", "bool", "date", "datetime", "UUID", "Decimal"})


def _write(
    ctx: Ctx, layer: Layer, qualname: str, node: FunctionNode, deco: ast.expr, call: ast.Call | None
) -> None:
    mechanism = "scan" if layer.service is None or layer.service.scan_delete else "entry"
    exprs: list[ast.expr] = list(call.args) if call else []
    if call is not None:
        exprs += [k.value for k in call.keywords if k.arg in ("pattern", "patterns")]
    patterns = []
    for expr in exprs:
        text = ctx.text(expr)
        kind = PatternSource.LITERAL if isinstance(expr, ast.Constant) else PatternSource.EXPRESSION
        patterns.append(pattern(text, mechanism, source(expr), ctx.loc(expr), kind))
    add_write(
        ctx,
        qualname,
        ctx.loc(node),
        "decorator",
        tuple(patterns),
        api=API,
        source_text="@" + source(deco),
    )


# -- objects built without their cache ---------------------------------------------------------


def uncached_constructions(out: ScanResult, layers: dict[str, Layer]) -> None:
    """Classes whose methods use a layer that finds its cache on ``self``: the call sites that
    build them without one run every decorated method uncached."""
    attrs = {layer.cache_attr for layer in layers.values() if layer.cache_attr}
    if not attrs:
        return
    owners: dict[str, tuple[ModuleInfo, ast.ClassDef, int, str]] = {}
    for mod in out.modules.values():
        for node in mod.tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            uses = any(
                layers.get(_deco_qual(out, mod, d) or "") is not None
                for m in node.body
                if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
                for d in m.decorator_list
            )
            init = next(
                (
                    m
                    for m in node.body
                    if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)
                    and m.name == "__init__"
                ),
                None,
            )
            if not uses or init is None:
                continue
            names = [a.arg for a in init.args.args][1:]
            for attr in attrs:
                if attr in names:
                    owners[node.name] = (mod, node, names.index(attr), attr)
    if not owners:
        return
    by_name: dict[str, list[tuple[ModuleInfo, ast.Call]]] = {}
    for other in out.modules.values():
        calls = out.module_calls.get(other.name)
        if calls is None:
            calls = [n for n in ast.walk(other.tree) if isinstance(n, ast.Call)]
            out.module_calls[other.name] = calls
        for call in calls:
            func = call.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in owners:
                by_name.setdefault(name, []).append((other, call))
    for cls, (mod, node, index, attr) in owners.items():
        with_cache: list[str] = []
        without: list[str] = []
        for other, call in by_name.get(cls, []):
            where = f"{other.display}:{call.lineno}"
            given = any(k.arg == attr or k.arg is None for k in call.keywords) or (
                len(call.args) > index or any(isinstance(a, ast.Starred) for a in call.args)
            )
            (with_cache if given else without).append(where)
        if not without:
            continue
        shown = ", ".join(without[:4]) + (
            f" and {len(without) - 4} more" if len(without) > 4 else ""
        )
        every = not with_cache
        out.adapter_findings.append(
            finding(
                "FC120",
                Location(mod.display, node.lineno),
                f"{cls} is built without {attr}= at "
                + (
                    "every call site"
                    if every
                    else f"{len(without)} of {len(without) + len(with_cache)} call sites"
                )
                + f" ({shown}): its cached methods run uncached there, and its invalidations "
                "do nothing",
                f"pass {attr}= at those call sites, or move to freshcache, whose decorators "
                "need no cache object on self",
                f"{mod.name}:{cls}",
            )
        )


def _deco_qual(out: ScanResult, mod: ModuleInfo, deco: ast.expr) -> str | None:
    func = deco.func if isinstance(deco, ast.Call) else deco
    return out.resolver.qualified(mod, func)
