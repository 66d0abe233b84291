"""cashews, aiocache, fastapi-cache2 and dogpile.cache: how each builds keys, encodes values and
invalidates, from the libraries' documented defaults.

- cashews: ``@cache(ttl, key="user:{user_id}")`` (also ``.early``, ``.hit``, ``.failover``,
  ``.soft``), ``@cache.invalidate(...)``, ``delete_match`` (SCAN + DEL), ``delete``; the default
  key is the module, the function and every argument; Redis values are pickled, signed only
  with ``secret=``/``hash_key=``; errors are suppressed by default (a miss when Redis is down).
- aiocache: ``@cached(ttl, key=, key_builder=, namespace=, alias=)``; the default key is the
  module and name glued to ``str(args)`` (``self`` included unless ``noself=True``); a decorator
  without ``alias=`` or ``cache=`` has its own cache instance nothing else can reach; no TTL by
  default.
- fastapi-cache2: ``@cache(expire, namespace, key_builder, coder)``; the default key hashes the
  module, the name and every argument but Request/Response; ``FastAPICache.clear(namespace=,
  key=)`` deletes by KEYS + DEL.
- dogpile.cache: ``@region.cache_on_arguments(expiration_time, namespace)`` keys on ``str()`` of
  the arguments joined by spaces, ``self``/``cls`` skipped; ``func.invalidate(*args)`` and
  ``region.delete(key)`` delete one key; ``region.invalidate()`` is local to the process.
"""

from __future__ import annotations

import ast

from freshcache.audit.adapters.base import (
    BuilderReach,
    Ctx,
    add_write,
    annotation_names,
    argument,
    builder_reach,
    call_args,
    functions,
    is_dependency,
    is_method,
    is_session_or_request,
    make_read,
    params_of,
    pattern,
    template_key,
)
from freshcache.audit.model import Hole, HoleKind, Param, PatternSource, SymText, TtlSource
from freshcache.audit.resolve import source
from freshcache.audit.rules import finding
from freshcache.audit.scanner import FunctionNode

_LIBRARY_NAMES = ("cashews", "aiocache", "fastapi_cache", "dogpile")
#: Reads whose decorated function carries its own ``invalidate(...)``.
_SELF_INVALIDATING = ("dogpile.cache", "aiocache", "home-grown")
_CASHEWS_READS = {"cache", "early", "hit", "failover", "soft", "iterator"}
_CASHEWS_OTHER = {
    "locked",
    "circuit_breaker",
    "rate_limit",
    "slice_rate_limit",
    "thunder_protection",
}


def origin(ctx: Ctx, expr: ast.expr) -> str | None:
    """Where a name comes from: "cashews.cache", or "cashews.Cache()" for an instance assigned
    in an audited module (``cache = Cache()``), or "dogpile.cache.make_region()" for a region."""
    qual = ctx.qualified(expr)
    if qual is None:
        return None
    module, _, name = qual.rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module))
    if mod is None:
        return qual
    value = mod.assignments.get(name)
    while isinstance(value, ast.Call):
        inner = value.func
        if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Call):
            value = inner.value  # make_region().configure(...)
            continue
        target = ctx.resolver.qualified(mod, inner)
        return f"{target}()" if target else None
    return None


def _lib(ctx: Ctx, expr: ast.expr) -> tuple[str, str] | None:
    """(library, attribute) for a decorator or call: ("cashews", "invalidate") for
    ``cache.invalidate``, ("aiocache", "cached") for ``cached``."""
    if isinstance(expr, ast.Attribute):
        receiver = expr.value
        while isinstance(receiver, ast.Call):  # caches.get("redis").delete(...)
            receiver = receiver.func
            if isinstance(receiver, ast.Attribute):
                receiver = receiver.value
        base = origin(ctx, receiver)
        if base is not None:
            head = base.split(".")[0]
            if head in ("cashews", "aiocache", "fastapi_cache", "dogpile"):
                return head, expr.attr
        if expr.attr in ("cache_on_arguments", "cache_multi_on_arguments"):
            return "dogpile", expr.attr
        return None
    qual = origin(ctx, expr)
    if qual is None:
        return None
    head = qual.split(".")[0]
    if head in ("cashews", "aiocache", "fastapi_cache", "dogpile"):
        return head, qual.rsplit(".", 1)[-1].rstrip("()")
    return None


def scan_module(ctx: Ctx, state: dict[str, object]) -> None:
    """The decorated reads of one module (run over every module before `scan_calls`: an
    invalidation in one module may name a read of another, ``d.get_user.invalidate(id)``)."""
    for qualname, node in functions(ctx.info.tree.body):
        for deco in node.decorator_list:
            func = deco.func if isinstance(deco, ast.Call) else deco
            lib = _lib(ctx, func)
            if lib is None:
                continue
            call = deco if isinstance(deco, ast.Call) else None
            library, attr = lib
            if library == "cashews":
                _cashews_deco(ctx, qualname, node, deco, call, attr, state)
            elif library == "aiocache" and attr in ("cached", "cached_stampede", "multi_cached"):
                _aiocache_read(ctx, qualname, node, deco, call)
            elif library == "fastapi_cache" and attr == "cache":
                _fastapi_cache_read(ctx, qualname, node, deco, call, state)
            elif library == "dogpile" and attr in (
                "cache_on_arguments",
                "cache_multi_on_arguments",
            ):
                _dogpile_read(ctx, qualname, node, deco, call, func, state)


def scan_calls(ctx: Ctx) -> None:
    """The imperative calls of one module: deletes, clears, ``func.invalidate(...)``."""
    # They matter only where a library is imported, or where a read whose function carries
    # its own invalidate() (dogpile, aiocache, a home-grown layer) is defined or imported.
    imported = {ctx.info.name}
    for module, attr in ctx.info.imports.values():
        imported |= {ctx.resolver.module_named(m) for m in (module, f"{module}.{attr}") if m}
    relevant = ctx.imports_any(_LIBRARY_NAMES) or any(
        r.api in _SELF_INVALIDATING and r.module in imported for r in ctx.out.reads
    )
    if not relevant:
        return
    for qualname, node in functions(ctx.info.tree.body):
        _calls(ctx, qualname, node)
    _calls(ctx, "<module>", ctx.info.tree)


# -- cashews -----------------------------------------------------------------------------------


def _cashews_deco(
    ctx: Ctx,
    qualname: str,
    node: FunctionNode,
    deco: ast.expr,
    call: ast.Call | None,
    attr: str,
    state: dict[str, object],
) -> None:
    if attr in _CASHEWS_OTHER:
        ctx.understood(deco)
        return
    if attr == "invalidate":
        ctx.understood(deco)
        names = [p.name for p in params_of(node)]
        patterns = []
        for expr in call.args if call else []:
            value = ctx.constant_str(expr)
            if value is None:
                patterns.append(
                    pattern(
                        ctx.text(expr),
                        "scan",
                        source(expr),
                        ctx.loc(expr),
                        PatternSource.EXPRESSION,
                    )
                )
                continue
            text, _used = template_key(ctx, value, names)
            kind = "scan" if "*" in value else "entry"
            patterns.append(
                pattern(text, kind, source(expr), ctx.loc(expr), PatternSource.TEMPLATE)
            )
        add_write(
            ctx,
            qualname,
            ctx.loc(node),
            "decorator",
            tuple(patterns),
            api="cashews",
            source_text="@" + source(deco),
        )
        return
    if attr not in _CASHEWS_READS:
        return
    ctx.understood(deco)
    ctx.api_seen(
        "cashews",
        "{prefix}{key template, fields filled raw} or "
        "{module}:{function}:{arg}:{value}:... (every argument)",
    )
    params = params_of(node)
    names = [p.name for p in params]
    key_expr = argument(call, "key")
    key_value = ctx.constant_str(key_expr)
    prefix_value = ctx.constant_str(argument(call, "prefix")) or ""
    if key_value is not None:
        text, used = template_key(ctx, key_value, names)
        prefix = SymText.literal(prefix_value) + text if prefix_value else text
        suffix = SymText(())
        keyed = used
        dropped = tuple(
            (p.name, f"the key template {key_value!r} does not name it")
            for p in params
            if p.name not in used
            and not _implicit(qualname, node, p.name)
            and not is_session_or_request(p)
        )
    else:
        prefix = SymText.literal(f"{prefix_value}{ctx.info.name}:{node.name}")
        suffix = SymText((":", Hole(HoleKind.HASH, "args")))
        keyed = tuple(names)
        dropped = ()
    identity = tuple(n for n in keyed if n in ("self", "cls"))
    setup = state.get("cashews_serializer")
    # No cache.setup(...) in the code base (it is made elsewhere, from configuration):
    # cashews' default for Redis is pickle, signed only when a secret is given, so unsigned.
    serializer, signed = "pickle", False
    if isinstance(setup, tuple):
        serializer, signed = str(setup[0]), bool(setup[1])
    ctx.out.reads.append(
        make_read(
            ctx, qualname, node, api="cashews",
            ttl_expr=argument(call, "ttl", 0),
            prefix=prefix, prefix_text=source(key_expr) if key_expr is not None else "",
            prefix_node=key_expr if key_expr is not None else deco,
            key_suffix=suffix, key_params=keyed, dropped=dropped, by_identity=identity,
            serializer=serializer, signing=signed, source_text="@" + source(deco),
        )
    )  # fmt: skip


def _implicit(qualname: str, node: FunctionNode, name: str) -> bool:
    return name in ("self", "cls") and is_method(qualname, node)


def cashews_setup(ctx: Ctx, state: dict[str, object]) -> None:
    """``cache.setup(url, ...)``: the serializer every cashews read uses."""
    if not ctx.imports_any(("cashews",)):
        return
    for call in ctx.calls:
        if not isinstance(call.func, ast.Attribute):
            continue
        if call.func.attr != "setup" or _lib(ctx, call.func) is None:
            continue
        if _lib(ctx, call.func) != ("cashews", "setup"):
            continue
        ctx.understood(call)
        args, kwargs = call_args(call)
        url = ctx.constant_str(args[0]) if args else None
        signed = bool({"secret", "hash_key"} & set(kwargs)) or (
            url is not None and ("secret=" in url or "hash_key=" in url)
        )
        if url is not None and url.startswith("mem://"):
            state["cashews_serializer"] = ("memory", False)
        else:
            state["cashews_serializer"] = ("pickle", signed)


# -- aiocache ----------------------------------------------------------------------------------


def _aiocache_read(
    ctx: Ctx, qualname: str, node: FunctionNode, deco: ast.expr, call: ast.Call | None
) -> None:
    ctx.understood(deco)
    ctx.api_seen(
        "aiocache",
        "{namespace}{key} or {namespace}{module}{function}{str(args)}"
        "{str(kwargs)} (no separators; self included unless noself=True)",
    )
    args, kwargs = call_args(call)
    params = params_of(node)
    names = [p.name for p in params]
    read_id = f"{ctx.info.name}:{qualname}"
    alias = ctx.constant_str(kwargs.get("alias"))
    if alias is not None:
        store = f"alias:{alias}"
    elif "cache" in kwargs:
        store = source(kwargs["cache"])
    else:
        store = f"own:{read_id}"
    namespace = ctx.constant_str(kwargs.get("namespace")) or ""
    key_value = ctx.constant_str(kwargs.get("key"))
    custom = "key_builder" in kwargs
    noself_arg = kwargs.get("noself")
    noself = isinstance(noself_arg, ast.Constant) and noself_arg.value is True
    positional = [n for n in names if not (noself and _implicit(qualname, node, n))]
    reach = builder_reach(ctx, kwargs.get("key_builder"), positional) if custom else None
    if reach is not None:
        # aiocache calls key_builder(func, *args, **kwargs) with the call's own arguments.
        custom = False
        prefix = SymText.literal(namespace)
        suffix = SymText((Hole(HoleKind.HASH, reach.name),))
        keyed = tuple(positional)
        dropped: tuple[tuple[str, str], ...] = ()
        if not reach.whole:
            keyed, dropped = _builder_split(params, keyed, reach, node)
    elif key_value is not None:
        prefix = SymText.literal(namespace + key_value)
        suffix = SymText(())
        keyed = ()
        dropped = tuple(
            (p.name, f"key={key_value!r} is one fixed key for every call")
            for p in params
            if not _implicit(qualname, node, p.name) and not is_session_or_request(p)
        )
    else:
        prefix = SymText.literal(f"{namespace}{ctx.info.name}{node.name}")
        suffix = SymText((Hole(HoleKind.HASH, "str(args)"),))
        keyed = tuple(n for n in names if not (noself and _implicit(qualname, node, n)))
        dropped = ()
    identity = tuple(n for n in keyed if n in ("self", "cls") and _implicit(qualname, node, n))
    if reach is not None and not reach.whole:
        identity = ()  # the builder reads named arguments, not the instance
    serializer: str | None = (
        "memory (the same object is returned)" if store.startswith("own:") else "json"
    )
    if "serializer" in kwargs and "Pickle" in source(kwargs["serializer"]):
        serializer = "pickle"
    ctx.out.reads.append(
        make_read(
            ctx, qualname, node, api="aiocache",
            ttl_expr=kwargs.get("ttl", args[0] if args else None),
            prefix=prefix, prefix_text=source(kwargs["key"]) if "key" in kwargs else "",
            prefix_node=kwargs.get("key", deco), key_suffix=suffix,
            key_params=keyed, dropped=dropped, by_identity=identity, serializer=serializer,
            store=store, custom_key=custom, source_text="@" + source(deco),
        )
    )  # fmt: skip


# -- fastapi-cache2 ----------------------------------------------------------------------------


def _fastapi_cache_read(
    ctx: Ctx,
    qualname: str,
    node: FunctionNode,
    deco: ast.expr,
    call: ast.Call | None,
    state: dict[str, object],
) -> None:
    ctx.understood(deco)
    ctx.api_seen(
        "fastapi-cache2",
        "{prefix}:{namespace}:{md5(module:function:args:kwargs)} "
        "(every argument but Request/Response)",
    )
    args, kwargs = call_args(call)
    params = params_of(node)
    namespace = ctx.constant_str(kwargs.get("namespace")) or ""
    keyed = tuple(
        p.name for p in params
        if not annotation_names(p.annotation) & {"Request", "Response"}
    )  # fmt: skip
    ttl_expr = kwargs.get("expire", args[0] if args else None)
    override = None
    if ttl_expr is None and "fastapi_cache_expire" in state:
        override = state["fastapi_cache_expire"]
    coder = source(kwargs["coder"]) if "coder" in kwargs else "JsonCoder"
    serializer = "pickle" if "Pickle" in coder else "json (jsonable_encoder)"
    suffix = SymText((":", Hole(HoleKind.HASH, f"md5({ctx.info.name}:{node.name}:args)")))
    custom = "key_builder" in kwargs
    dropped: tuple[tuple[str, str], ...] = ()
    # fastapi-cache2 calls key_builder(func, namespace, request=, response=, args=, kwargs=)
    # with every endpoint argument in kwargs.
    reach = builder_reach(ctx, kwargs.get("key_builder"), [])
    if reach is not None:
        custom = False
        suffix = SymText((":", Hole(HoleKind.HASH, reach.name)))
        if not reach.whole:
            keyed, dropped = _builder_split(params, keyed, reach, node)
    ctx.out.reads.append(
        make_read(
            ctx, qualname, node, api="fastapi-cache2", ttl_expr=ttl_expr,
            prefix=SymText.literal(namespace) if namespace else SymText(()),
            prefix_text=source(kwargs["namespace"]) if "namespace" in kwargs else "",
            prefix_node=kwargs.get("namespace", deco),
            key_suffix=suffix, key_params=keyed, dropped=dropped,
            serializer=serializer, custom_key=custom,
            source_text="@" + source(deco),
            ttl_override=override,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def _builder_split(
    params: list[Param], keyed: tuple[str, ...], reach: BuilderReach, node: FunctionNode
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The parameters a key builder reads by name, and those it leaves out (and why)."""
    kept = tuple(n for n in keyed if n in reach.named)
    shown = ", ".join(sorted(reach.named)) or "no argument"
    dropped = tuple(
        (p.name, f"the key_builder {reach.name} reads only {shown}")
        for p in params
        if p.name in keyed
        and p.name not in reach.named
        and p.name not in ("self", "cls")
        and not is_session_or_request(p)
        and not is_dependency(p, node)
    )
    return kept, dropped


def fastapi_cache_init(ctx: Ctx, state: dict[str, object]) -> None:
    if not ctx.imports_any(("fastapi_cache",)):
        return
    for call in ctx.calls:
        if (
            isinstance(call.func, ast.Attribute)
            and call.func.attr == "init"
            and _lib(ctx, call.func) == ("fastapi_cache", "init")
        ):
            ctx.understood(call)
            expire = argument(call, "expire")
            if expire is not None:
                state["fastapi_cache_expire"] = ctx.ttl(expire)


# -- dogpile.cache -----------------------------------------------------------------------------


def _dogpile_read(
    ctx: Ctx,
    qualname: str,
    node: FunctionNode,
    deco: ast.expr,
    call: ast.Call | None,
    func: ast.expr,
    state: dict[str, object],
) -> None:
    ctx.understood(deco)
    ctx.api_seen(
        "dogpile.cache",
        "{module}:{function}|{namespace} {str(arg1)} {str(arg2)} ... "
        "(self/cls skipped; arguments joined by spaces)",
    )
    params = params_of(node)
    names = [p.name for p in params]
    keyed = tuple(n for n in names if not _implicit(qualname, node, n))
    namespace = ctx.constant_str(argument(call, "namespace"))
    # to_str= (or a function_key_generator=) decides how arguments become text.
    given = call_args(call)[1] if call is not None else {}
    identity = tuple(
        p.name
        for p in params
        if p.name in keyed and p.annotation and not ctx.by_value(p.annotation)
    ) if not {"to_str", "function_key_generator"} & set(given) else ()  # fmt: skip
    region = source(func.value) if isinstance(func, ast.Attribute) else ""
    ttl_expr = argument(call, "expiration_time")
    override = None
    if ttl_expr is None:
        region_ttl = state.get(f"dogpile_ttl:{region}")
        override = region_ttl if region_ttl is not None else (None, TtlSource.MISSING, "")
    backend = str(state.get(f"dogpile_backend:{region}", ""))
    serializer = "pickle" if "redis" in backend or "memcached" in backend else None
    label = f"{ctx.info.name}:{node.name}" + (f"|{namespace}" if namespace else "")
    ctx.out.reads.append(
        make_read(
            ctx, qualname, node, api="dogpile.cache", ttl_expr=ttl_expr,
            prefix=SymText.literal(label), prefix_text="", prefix_node=deco,
            key_suffix=SymText(("|", Hole(HoleKind.HASH, "str(args)"))),
            key_params=keyed, by_identity=identity, serializer=serializer, store=region,
            custom_key=call is not None and "function_key_generator" in call_args(call)[1],
            source_text="@" + source(deco),
            ttl_override=override,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def dogpile_regions(ctx: Ctx, state: dict[str, object]) -> None:
    for name, value in ctx.info.assignments.items():
        text = source(value)
        if "make_region" not in text:
            continue
        for call in ast.walk(value):
            if isinstance(call, ast.Call):
                ctx.understood(call)
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "configure"
            ):
                args, kwargs = call_args(call)
                backend = ctx.constant_str(args[0]) if args else None
                state[f"dogpile_backend:{name}"] = backend or ""
                if "expiration_time" in kwargs:
                    state[f"dogpile_ttl:{name}"] = ctx.ttl(kwargs["expiration_time"])


# -- imperative calls: deletes and clears --------------------------------------------------------


def _calls(ctx: Ctx, qualname: str, node: ast.AST) -> None:
    from freshcache.audit.resolve import walk_local

    for call in walk_local(node):
        if not isinstance(call, ast.Call):
            continue
        aliased = _bound_invalidate(ctx, call.func)
        # func.invalidate(*args) on a dogpile-cached function; get_user.cache.delete(...);
        # forget = get_user.invalidate, then forget(id)
        if aliased is not None:
            cached_read, attr = aliased, "invalidate"
        elif isinstance(call.func, ast.Attribute):
            cached_read, attr = _cached_function(ctx, call.func.value), call.func.attr
        else:
            continue
        if cached_read is not None and attr in ("invalidate", "refresh", "set"):
            ctx.understood(call)
            # refresh() and set() replace the entry with the new value: as good as deleting
            # it for staleness (the next read sees what was written).
            add_write(
                ctx,
                qualname,
                ctx.loc(call),
                "entry",
                (
                    pattern(
                        cached_read.key,
                        "entry",
                        source(call),
                        ctx.loc(call),
                        PatternSource.EXPRESSION,
                    ),
                ),
                api=cached_read.api,
                store=cached_read.store,
                source_text=source(call),
            )
            continue
        if not isinstance(call.func, ast.Attribute):
            continue
        lib = _lib(ctx, call.func)
        if lib is None:
            continue
        library, _attr = lib
        api = {"fastapi_cache": "fastapi-cache2", "dogpile": "dogpile.cache"}.get(library, library)
        args, kwargs = call_args(call)
        store = _store(ctx, call.func.value) if library in ("aiocache", "dogpile") else ""
        where = ctx.loc(call)
        if library == "fastapi_cache" and attr == "clear":
            ctx.understood(call)
            ns = kwargs.get("namespace", args[0] if args else None)
            key = kwargs.get("key", args[1] if len(args) > 1 else None)
            if key is not None:
                text = ctx.text(key)
                pats = (pattern(text, "entry", source(key), where, PatternSource.EXPRESSION),)
            elif ns is not None:
                text = ctx.text(ns)
                pats = (
                    pattern(
                        None if text is None else text + SymText.literal(":*"),
                        "scan",
                        source(ns),
                        where,
                        PatternSource.EXPRESSION,
                    ),
                )
            else:
                pats = (
                    pattern(
                        SymText.literal("*"),
                        "scan",
                        "FastAPICache.clear()",
                        where,
                        PatternSource.LITERAL,
                    ),
                )
            add_write(ctx, qualname, where, "imperative", pats, api=api, source_text=source(call))
        elif attr in ("delete_match", "clear", "delete", "invalidate") and library in (
            "cashews",
            "aiocache",
            "dogpile",
        ):
            ctx.understood(call)
            target = kwargs.get("key", kwargs.get("pattern", args[0] if args else None))
            if attr == "clear" or (attr == "invalidate" and library == "dogpile"):
                namespace = ctx.constant_str(kwargs.get("namespace")) or ""
                text = SymText.literal(namespace + "*")
                # dogpile's region.invalidate() deletes nothing: it marks older entries invalid
                mechanism = "generation" if library == "dogpile" else "scan"
                pats = (pattern(text, mechanism, source(call), where, PatternSource.LITERAL),)
                if library == "dogpile":
                    ctx.finding(finding(
                        "FC123", where,
                        f"{qualname}: {source(call)} marks only this process's region as "
                        "invalid; other workers and hosts keep serving their entries until "
                        "the TTL",
                        "freshcache's invalidation replaces a generation token in Redis, which "
                        "every process reads", f"{ctx.info.name}:{qualname}",
                    ))  # fmt: skip
            elif target is None:
                continue
            else:
                kind = "scan" if attr == "delete_match" else "entry"
                pats = (
                    pattern(
                        ctx.text(target),
                        kind,
                        source(target),
                        ctx.loc(target),
                        PatternSource.EXPRESSION,
                    ),
                )
            add_write(ctx, qualname, where, "imperative", pats, api=api, store=store,
                      source_text=source(call))  # fmt: skip


def _bound_invalidate(ctx: Ctx, func: ast.expr):  # type: ignore[no-untyped-def]
    """The read behind a module-level alias of its invalidate: ``forget = get_user.invalidate``
    (called as ``forget(id)`` or ``users.forget(id)``)."""
    if not isinstance(func, ast.Name | ast.Attribute):
        return None
    qual = ctx.qualified(func)
    module, _, name = (qual or "").rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module)) if module else None
    value = mod.assignments.get(name) if mod is not None else None
    if not (
        mod is not None
        and isinstance(value, ast.Attribute)
        and value.attr in ("invalidate", "refresh")
        and isinstance(value.value, ast.Name)
    ):
        return None
    target = value.value.id
    return next(
        (
            r for r in ctx.out.reads
            if r.module == mod.name and r.qualname == target and r.api in _SELF_INVALIDATING
        ),
        None,
    )  # fmt: skip


def _cached_function(ctx: Ctx, expr: ast.expr):  # type: ignore[no-untyped-def]
    """The read a ``name`` / ``self.name`` / ``name.cache`` receiver stands for, if any."""
    if isinstance(expr, ast.Attribute) and expr.attr == "cache":
        expr = expr.value
    name = (
        expr.id
        if isinstance(expr, ast.Name)
        else expr.attr
        if isinstance(expr, ast.Attribute)
        else ""
    )
    if not name:
        return None
    local = next(
        (
            r for r in ctx.out.reads
            if r.module == ctx.info.name and r.qualname.rsplit(".", 1)[-1] == name
            and r.api in _SELF_INVALIDATING
        ),
        None,
    )  # fmt: skip
    if local is not None:
        return local
    # d.get_user.invalidate(id) with "from app import define as d", or an imported function
    qual = ctx.qualified(expr) if isinstance(expr, ast.Name | ast.Attribute) else None
    if qual is None:
        return None
    module, _, func = qual.rpartition(".")
    module = ctx.resolver.module_named(module) if module else module
    return next(
        (
            r for r in ctx.out.reads
            if r.module == module and r.qualname == func and r.api in _SELF_INVALIDATING
        ),
        None,
    )  # fmt: skip


def _store(ctx: Ctx, receiver: ast.expr) -> str:
    """Which instance an aiocache call reaches: ``caches.get("redis")`` -> "alias:redis"."""
    if (
        isinstance(receiver, ast.Call)
        and isinstance(receiver.func, ast.Attribute)
        and receiver.func.attr == "get"
        and receiver.args
    ):
        alias = ctx.constant_str(receiver.args[0])
        return f"alias:{alias}" if alias is not None else ""
    return source(receiver)
