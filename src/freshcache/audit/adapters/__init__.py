"""The cache APIs the audit models, one module each, run over every audited module.

The freshcache scanner (``freshcache.audit.scanner``) has already recorded freshcache's own
reads and writes; the adapters add a home-grown layer's, cashews', aiocache's,
fastapi-cache2's, dogpile.cache's, hand-written cache-aside, and the wrappers declared in
``[tool.freshcache.audit]``. Last, a sweep records every decorator or call that looks like
caching and that nobody understood: the verdict is never PASS over code that was not read.
"""

from __future__ import annotations

import ast
import re

from freshcache.audit.adapters import cacheaside, homegrown, libraries, wrappers
from freshcache.audit.adapters.base import Ctx, functions
from freshcache.audit.config import AuditConfig
from freshcache.audit.resolve import source
from freshcache.audit.scanner import ScanResult, own_method

__all__ = ["run_adapters"]

#: Decorator or call names that look like caching.
_LOOKS_LIKE_CACHE = re.compile(r"cach|memoi[sz]|invalidat", re.IGNORECASE)
#: In-process memoization: out of scope (nothing to invalidate across processes), counted.
_IN_PROCESS = ("functools.", "cachetools.", "async_lru.", "alru_cache", "lru_cache")
#: Library calls that configure rather than read or write (understood by construction).
_CONFIG = {
    "setup", "init", "configure", "make_region", "Cache", "caches", "set_config", "get_backend",
    "RedisBackend", "InMemoryBackend", "MemcachedBackend", "JsonCoder", "PickleCoder",
    "get_config", "add_cache", "close", "disconnect", "init_transaction", "transaction",
    "get", "set_default", "register_backend", "configure_from_config",
}  # fmt: skip
_LIBRARIES = ("cashews", "aiocache", "fastapi_cache", "dogpile")


def run_adapters(out: ScanResult, config: AuditConfig) -> None:
    layers = homegrown.find_layers(out)
    services = {layer.service.name for layer in layers.values() if layer.service is not None}
    swallowing = any(
        layer.service is not None and "get" in layer.service.swallowed for layer in layers.values()
    )
    state: dict[str, object] = {}
    contexts = [Ctx(info, out.resolver, out, config) for info in out.modules.values()]
    for ctx in contexts:  # configuration first: setup() decides how every read encodes
        libraries.cashews_setup(ctx, state)
        libraries.fastapi_cache_init(ctx, state)
        libraries.dogpile_regions(ctx, state)
    for ctx in contexts:
        wrappers.scan_module(ctx)
        homegrown.scan_module(ctx, layers)
        libraries.scan_module(ctx, state)
    for ctx in contexts:
        libraries.scan_calls(ctx)
    for layer in layers.values():
        out.layer_code.add((layer.module.name, layer.node.name))
        if layer.service is not None:
            out.layer_code.add((layer.service.module.name, layer.service.name))
    helpers = {h.qual: h for ctx in contexts for h in cacheaside.find_helpers(ctx, services)}
    for helper in helpers.values():  # their bodies are steps of the reads at their call sites
        module, _, name = helper.qual.rpartition(".")
        out.layer_code.add((module, name))
    for ctx in contexts:
        cacheaside.scan_module(ctx, services, swallowing, helpers)
    homegrown.layer_findings(out, layers)
    homegrown.uncached_constructions(out, layers)
    defined = {layer.qual for layer in layers.values()}
    for ctx in contexts:
        _sweep(ctx, defined)


def _sweep(ctx: Ctx, layers: set[str]) -> None:
    """Every decorator or library call that looks like caching and was not understood."""
    recorded = {(r.module, r.qualname) for r in ctx.out.reads} | {
        (w.module, w.qualname) for w in ctx.out.writes if w.kind == "decorator"
    }
    for qualname, node in functions(ctx.info.tree.body):
        for deco in node.decorator_list:
            if id(deco) in ctx.out.understood or (ctx.info.name, qualname) in recorded:
                continue
            func = deco.func if isinstance(deco, ast.Call) else deco
            text = source(func)
            qual = ctx.qualified(func) or text
            if not _LOOKS_LIKE_CACHE.search(text.rsplit(".", 1)[-1]):
                continue
            if (
                any(marker in qual for marker in _IN_PROCESS)
                or text.endswith(("cached_property", "lru_cache", "functools.cache"))
                or (text == "cache" and ctx.qualified(func) == "functools.cache")
            ):
                continue
            method = own_method(ctx.resolver, ctx.info, func)
            if method is not None and not _talks_to_a_cache(method):
                continue  # timing.cached on a metrics class: named like caching, is not
            where_defined = _defined_at(ctx, qual)
            in_process = where_defined and _in_process_layer(ctx, qual)
            why = (
                f"defined in the audited code ({where_defined}): an in-process cache "
                f"({in_process}) kept per worker, which no invalidation in another process "
                "reaches and the audit does not model"
                if in_process
                else f"defined in the audited code ({where_defined}) but its body is not a cache "
                "layer the audit recognises (get/set around the call, or a delete)"
                if where_defined
                else f"{qual} is not a cache API the audit models"
            )
            ctx.unanalysed(
                deco,
                f"@{text} on {qualname}",
                why + "; declare it under [[tool.freshcache.audit.wrappers]]",
                "read" if "invalid" not in text.lower() else "write",
            )
    if not ctx.imports_any(_LIBRARIES):
        return
    in_decorators = {
        id(n)
        for _q, node in functions(ctx.info.tree.body)
        for deco in node.decorator_list
        for n in ast.walk(deco)
    }
    for call in ctx.calls:
        if id(call) in ctx.out.understood:
            continue
        called = ctx.qualified(call.func)
        if called is None or called.split(".")[0] not in _LIBRARIES:
            continue
        qual = called
        last = qual.rsplit(".", 1)[-1]
        if last in _CONFIG or last[:1].isupper():
            continue
        if id(call) in in_decorators:
            continue
        ctx.unanalysed(
            call,
            f"{source(call.func)}(...)",
            f"a call of {qual} the audit does not model",
            "call",
        )


#: Calls that store or drop values: a decorator whose body makes none caches nothing.
_CACHE_VERBS = {"get", "set", "setex", "delete", "unlink", "scan_iter", "keys", "add",
                "delete_pattern", "delete_match", "clear", "__setitem__", "setdefault"}  # fmt: skip


def _talks_to_a_cache(method: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for node in ast.walk(method):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _CACHE_VERBS
        ):
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            return True  # memo[key] = value
    return False


def _in_process_layer(ctx: Ctx, qual: str) -> str:
    """ "cachetools.TTLCache" when the in-repo decorator builds an in-process cache."""
    module, _, name = qual.rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module))
    node = mod.functions.get(name) if mod is not None else None
    if mod is None or node is None:
        return ""
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            made = ctx.resolver.qualified(mod, call.func) or ""
            if made.split(".")[0] in ("cachetools", "functools", "async_lru"):
                return made
    return ""


def _defined_at(ctx: Ctx, qual: str) -> str:
    module, _, name = qual.rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module))
    if mod is None or name not in mod.functions:
        return ""
    return f"{mod.display}:{mod.functions[name].lineno}"
