"""Cache-aside by hand: ``get`` -> compute -> ``set(key, value, ex=)`` on a redis-py client (or on
a home-grown cache service), ``delete(key)``, ``scan_iter(match=)`` / ``keys()`` + ``delete``.

A function that gets and sets the same key on the same client is a cached read, keyed by the
text of that key; deletes and SCAN walks are writes. Keys built with f-strings put values in
raw, so the checks across the code base (glob injection, coverage) read them as they are.
Security-relevant state (revocations, rate limits, idempotency keys) read through a call that
turns an error into a miss fails open when Redis is down: that is reported.
"""

from __future__ import annotations

import ast
import dataclasses

from freshcache.audit.adapters.base import (
    VALUE_TYPES,
    Ctx,
    add_write,
    annotation_names,
    fails_open,
    functions,
    is_dependency,
    is_session_or_request,
    make_read,
    names_in,
    params_of,
    pattern,
    scope_of,
    security_word,
)
from freshcache.audit.model import PatternSource, SymText
from freshcache.audit.resolve import source, walk_local
from freshcache.audit.rules import finding
from freshcache.audit.scanner import FunctionNode

_GET = {"get"}
_SET = {"set", "setex"}
_SECURITY_READS = {"get", "exists", "sismember", "incr", "incrby", "hget", "zscore", "setnx"}
_INTERESTING = _GET | _SET | _SECURITY_READS | {
    "delete", "unlink", "delete_pattern", "scan_iter", "keys", "scan",
}  # fmt: skip


def _client(ctx: Ctx, receiver: ast.expr, services: set[str]) -> str | None:
    """ "redis-py" / "home-grown" when the receiver is a Redis client or the layer's service."""
    text = source(receiver)
    qual = ctx.qualified(receiver)
    if qual is not None and qual.split(".")[0] in ("redis", "aioredis"):
        return "redis-py"
    # An instance of a library's cache class used by hand: cache = RedisCache(...); cache.get()
    made = instance_origin(ctx, receiver)
    if made is not None:
        head = made.split(".")[0]
        if head in ("aiocache", "cashews", "redis", "aioredis"):
            return {"aioredis": "redis-py", "redis": "redis-py"}.get(head, head)
    lowered = text.lower()
    if "redis" in lowered or lowered in ("r", "rdb", "client.redis"):
        return "redis-py"
    if services and "cache" in lowered.rsplit(".", 1)[-1]:
        return "home-grown"
    return None


def scan_module(
    ctx: Ctx, services: set[str], swallowing: bool, helpers: dict[str, Helper] | None = None
) -> None:
    for qualname, node in functions(ctx.info.tree.body):
        if (ctx.info.name, qualname.split(".")[0]) in ctx.out.layer_code:
            continue  # the layer's own get/set: its uses are analysed, not its body
        if helpers:
            helper_calls(ctx, qualname, node, helpers)
        _function(ctx, qualname, node, services, swallowing)


def _function(
    ctx: Ctx, qualname: str, node: FunctionNode, services: set[str], swallowing: bool
) -> None:
    nodes = list(walk_local(node))
    calls = [
        n
        for n in nodes
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in _INTERESTING
        and id(n) not in ctx.out.understood
    ]
    if not calls:
        return  # most functions: nothing here looks like a cache call
    scope = scope_of(node)
    gets: dict[tuple[str, str], ast.Call] = {}
    sets: dict[tuple[str, str], ast.Call] = {}
    tries = [n for n in nodes if isinstance(n, ast.Try)]
    walked = _walked_names(node)
    for call in calls:
        if not isinstance(call.func, ast.Attribute):
            continue
        if id(call) in ctx.out.understood:
            continue
        attr = call.func.attr
        api = _client(ctx, call.func.value, services)
        if api is None or (not call.args and attr not in ("scan_iter", "scan")):
            continue
        if attr in ("scan_iter", "keys", "scan"):
            ctx.understood(call)
            match = next((k.value for k in call.keywords if k.arg == "match"), None)
            if match is None and attr == "keys" and call.args:
                match = call.args[0]
            if match is not None:
                add_write(ctx, qualname, ctx.loc(call), "imperative",
                          (pattern(ctx.text(match, scope), "scan", source(match), ctx.loc(match),
                                   PatternSource.EXPRESSION),),
                          api=api, source_text=source(call))  # fmt: skip
            continue
        receiver = source(call.func.value)
        key = call.args[0]
        key_text = source(_resolve(key, scope))
        if attr in _SECURITY_READS:
            word = security_word(key_text)
            guarded = any(
                fails_open(t.handlers) and t.lineno <= call.lineno <= (t.body[-1].end_lineno or 0)
                for t in tries
            )
            if word and (guarded or (api == "home-grown" and swallowing)):
                ctx.finding(finding(
                    "FC119", ctx.loc(call),
                    f"{qualname}: security state ({key_text}) is kept only in the cache and "
                    "read through a call that turns a Redis error into a miss: when Redis is "
                    "down the check passes (fails open)",
                    "keep it in the database (or fail closed: treat an error as 'revoked' / "
                    "'limited'); a cache is allowed to forget",
                    f"{ctx.info.name}:{qualname}",
                ))  # fmt: skip
                ctx.understood(call)
        if attr in _GET:
            gets[(receiver, key_text)] = call
        elif attr in _SET:
            sets[(receiver, key_text)] = call
        elif attr in ("delete", "unlink") or attr == "delete_pattern":
            ctx.understood(call)
            kind = "scan" if attr == "delete_pattern" else "entry"
            texts = [ctx.text(a, scope) for a in call.args if not isinstance(a, ast.Starred)]
            if any(isinstance(a, ast.Starred) for a in call.args) or any(
                isinstance(a, ast.Name) and a.id in walked for a in call.args
            ):
                continue  # delete(*keys) / delete(key) of a SCAN walk: reported with the walk
            for arg, text in zip(call.args, texts, strict=True):
                add_write(ctx, qualname, ctx.loc(call), "imperative",
                          (pattern(text, kind, source(arg), ctx.loc(arg),
                                   PatternSource.EXPRESSION),),
                          api=api, source_text=source(call))  # fmt: skip
        elif attr in ("scan_iter", "keys", "scan"):
            ctx.understood(call)
            match = next((k.value for k in call.keywords if k.arg == "match"), None)
            if match is None and attr == "keys":
                match = call.args[0]
            if match is None:
                continue
            add_write(ctx, qualname, ctx.loc(call), "imperative",
                      (pattern(ctx.text(match, scope), "scan", source(match), ctx.loc(match),
                               PatternSource.EXPRESSION),),
                      api=api, source_text=source(call))  # fmt: skip
    for (receiver, key_text), get in gets.items():
        put = sets.get((receiver, key_text))
        if put is None or not _returns_on_hit(node, get):
            continue
        if security_word(key_text):
            continue  # a lockout or a limit read back is state, not a cache (FC119 covers it)
        ctx.understood(get)
        ctx.understood(put)
        api = _client(ctx, get.func.value, services) or "redis-py"  # type: ignore[attr-defined]
        _read(ctx, qualname, node, get, put, api, scope)


def _walked_names(node: FunctionNode) -> set[str]:
    """Names bound to keys found by a SCAN walk (``for key in r.scan_iter(...)`` or a list of
    them): deleting those is the walk's invalidation, already recorded."""
    names: set[str] = set()
    for n in walk_local(node):
        if isinstance(n, ast.For | ast.AsyncFor | ast.comprehension) and any(
            isinstance(c, ast.Call)
            and isinstance(c.func, ast.Attribute)
            and c.func.attr in ("scan_iter", "keys", "scan")
            for c in ast.walk(n.iter)
        ):
            names |= {t.id for t in ast.walk(n.target) if isinstance(t, ast.Name)}
        if isinstance(n, ast.Assign) and any(
            isinstance(c, ast.Call)
            and isinstance(c.func, ast.Attribute)
            and c.func.attr in ("scan_iter", "keys", "scan")
            for c in ast.walk(n.value)
        ):
            names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    return names


def instance_call(ctx: Ctx, receiver: ast.expr) -> ast.Call | None:
    """The call that built ``receiver`` when it is a module-level instance of an audited module
    (``cache = RedisCache(ttl=60)``, imported or local)."""
    qual = ctx.qualified(receiver)
    if qual is None:
        return None
    module, _, name = qual.rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module))
    value = mod.assignments.get(name) if mod is not None else None
    return value if isinstance(value, ast.Call) else None


def instance_origin(ctx: Ctx, receiver: ast.expr) -> str | None:
    """The class (dotted) of a module-level instance, "aiocache.backends.redis.RedisCache"."""
    qual = ctx.qualified(receiver)
    if qual is None:
        return None
    module, _, name = qual.rpartition(".")
    mod = ctx.resolver.modules.get(ctx.resolver.module_named(module))
    value = mod.assignments.get(name) if mod is not None else None
    if not isinstance(value, ast.Call) or mod is None:
        return None
    return ctx.resolver.qualified(mod, value.func)


def _returns_on_hit(node: FunctionNode, get: ast.Call) -> bool:
    """The cache-aside shape: the value got is tested and returned (``if cached: return ...``)
    before anything is computed. A get and a set of the same key without it is state (a
    counter, a lock), not a cache."""
    names: set[str] = set()
    for n in walk_local(node):
        if isinstance(n, ast.Assign | ast.AnnAssign):
            value = n.value.value if isinstance(n.value, ast.Await) else n.value
            if value is get:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    for n in walk_local(node):
        if (
            isinstance(n, ast.If)
            and names_in(n.test) & names
            and any(isinstance(b, ast.Return) for b in ast.walk(n))
        ):
            return True
    return False


def _resolve(expr: ast.expr, scope: dict[str, ast.expr]) -> ast.expr:
    if isinstance(expr, ast.Name) and expr.id in scope:
        return scope[expr.id]
    return expr


def _read(
    ctx: Ctx,
    qualname: str,
    node: FunctionNode,
    get: ast.Call,
    put: ast.Call,
    api: str,
    scope: dict[str, ast.expr],
) -> None:
    key_expr = _resolve(get.args[0], scope)
    text = ctx.text(key_expr, scope) or SymText(())
    used = names_in(key_expr)
    for name in list(used):
        if name in scope:
            used |= names_in(scope[name])
    params = params_of(node)
    keyed = tuple(p.name for p in params if p.name in used)
    body_names = {n.id for n in walk_local(node) if isinstance(n, ast.Name)}
    dropped = tuple(
        (p.name, f"the key {source(key_expr)} does not use it")
        for p in params
        if p.name not in used
        and p.name in body_names
        and p.name not in ("self", "cls")
        and p.annotation
        and annotation_names(p.annotation) - {"None", "Optional"} <= VALUE_TYPES
        and not is_session_or_request(p)
        and not is_dependency(p, node)
    )
    ttl_expr: ast.expr | None = None
    if put.func.attr == "setex" and len(put.args) > 1:  # type: ignore[attr-defined]
        ttl_expr = put.args[1]
    for kw in put.keywords:
        if kw.arg in ("ex", "ttl", "expire", "px"):
            ttl_expr = kw.value
    if ttl_expr is None and api in ("home-grown", "aiocache", "cashews") and len(put.args) > 2:
        ttl_expr = put.args[2]
    ttl_override = None
    if ttl_expr is None and api in ("aiocache", "cashews"):
        # the instance's default: RedisCache(..., ttl=60)
        made = instance_call(ctx, get.func.value)  # type: ignore[attr-defined]
        default = next((k.value for k in made.keywords if k.arg == "ttl"), None) if made else None
        if default is not None:
            ttl_override = ctx.ttl(default)
    serializer = "json"
    for n in walk_local(node):
        if (
            isinstance(n, ast.Call)
            and source(n.func).endswith("loads")
            and "pickle" in source(n.func)
        ):
            serializer = "pickle"
    ctx.api_seen(api if api != "home-grown" else "home-grown",
                 "the key each function writes: " if api == "redis-py" else
                 "{namespace}:{key} (the service's get/set)")  # fmt: skip
    if api == "redis-py":
        ctx.out.apis["redis-py"] = ("the text of each get/set key (f-strings, values raw)", "")
    ctx.out.reads.append(
        make_read(
            ctx, qualname, node, api=f"{api} cache-aside",
            ttl_expr=ttl_expr, prefix=text, prefix_text=source(key_expr),
            prefix_node=get, key_suffix=SymText(()), key_params=keyed, dropped=dropped,
            serializer=serializer, binding=source(get.func.value),  # type: ignore[attr-defined]
            source_text=f"{source(get)} ... {source(put)}", ttl_override=ttl_override,
        )
    )  # fmt: skip


# -- helper functions: get_cache(r, key) / set_cache(r, key, value, ttl) / delete_cache(r, key)


@dataclasses.dataclass(frozen=True, slots=True)
class Helper:
    """A module-level function of the audited code that does one cache step on a key it is
    given: the calls of it are the cache-aside reads and the invalidations."""

    qual: str  # "app.cache.get_cache"
    kind: str  # "get" | "set" | "delete"
    key_param: str
    key_index: int
    ttl: ast.expr | None  # set: the ex=/setex TTL, a parameter's default when it is one
    ttl_param: str  # set: the parameter the TTL comes from ("" when a constant)
    ttl_index: int


def find_helpers(ctx: Ctx, services: set[str]) -> list[Helper]:
    found: list[Helper] = []
    for node in ctx.info.tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        names = [a.arg for a in node.args.args]
        defaults = dict(
            zip(names[len(names) - len(node.args.defaults) :], node.args.defaults, strict=True)
        )
        steps: set[str] = set()
        helper: Helper | None = None
        for call in walk_local(node):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.args
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id in names
            ):
                continue
            attr = call.func.attr
            kind = "get" if attr in _GET else "set" if attr in _SET else (
                "delete" if attr in ("delete", "unlink") else ""
            )  # fmt: skip
            if not kind or _client(ctx, call.func.value, services) is None:
                continue
            steps.add(kind)
            key = call.args[0].id
            ttl: ast.expr | None = None
            if attr == "setex" and len(call.args) > 1:
                ttl = call.args[1]
            for kw in call.keywords:
                if kw.arg in ("ex", "px", "ttl", "expire"):
                    ttl = kw.value
            ttl_param = ttl.id if isinstance(ttl, ast.Name) and ttl.id in names else ""
            if ttl_param:
                ttl = defaults.get(ttl_param)
            helper = Helper(
                f"{ctx.info.name}.{node.name}", kind, key, names.index(key), ttl, ttl_param,
                names.index(ttl_param) if ttl_param else -1,
            )  # fmt: skip
        if helper is not None and len(steps) == 1:  # get and set together: a read itself
            found.append(helper)
    return found


def helper_calls(ctx: Ctx, qualname: str, node: FunctionNode, helpers: dict[str, Helper]) -> None:
    """Reads (a get helper and a set helper on one key, the value got tested) and deletes."""
    gets: dict[str, tuple[ast.Call, ast.expr]] = {}
    sets: dict[str, tuple[ast.Call, ast.expr, Helper]] = {}
    scope = scope_of(node)
    for call in walk_local(node):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name | ast.Attribute):
            continue
        helper = helpers.get(ctx.qualified(call.func) or "")
        if helper is None:
            continue
        key = _argument(call, helper.key_param, helper.key_index)
        if key is None:
            continue
        ctx.understood(call)
        text = source(_resolve(key, scope))
        if helper.kind == "get":
            gets[text] = (call, key)
        elif helper.kind == "set":
            sets[text] = (call, key, helper)
        else:
            add_write(ctx, qualname, ctx.loc(call), "imperative",
                      (pattern(ctx.text(key, scope), "entry", source(key), ctx.loc(key),
                               PatternSource.EXPRESSION),),
                      api="redis-py", source_text=source(call))  # fmt: skip
    for text, (get, key) in gets.items():
        if text not in sets or not _tested(node, get):
            continue
        put, _key, helper = sets[text]
        given = _argument(put, helper.ttl_param, helper.ttl_index) if helper.ttl_param else None
        ttl_expr = given if given is not None else helper.ttl
        key_expr = _resolve(key, scope)
        used = names_in(key_expr)
        params = params_of(node)
        ctx.api_seen("redis-py", "the text of each get/set key (f-strings, values raw)")
        ctx.out.reads.append(
            make_read(
                ctx, qualname, node, api="redis-py cache-aside", ttl_expr=ttl_expr,
                prefix=ctx.text(key_expr, scope) or SymText(()), prefix_text=source(key_expr),
                prefix_node=get, key_suffix=SymText(()),
                key_params=tuple(p.name for p in params if p.name in used),
                serializer="json", binding="module",
                source_text=f"{source(get)} ... {source(put)}",
            )
        )  # fmt: skip


def _argument(call: ast.Call, name: str, index: int) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return call.args[index] if 0 <= index < len(call.args) else None


def _tested(node: FunctionNode, get: ast.Call) -> bool:
    """The value got is tested before anything is computed: returned on a hit, or the set
    made only on a miss (``if hit is not None: value = hit else: ...; set_cache(...)``)."""
    if _returns_on_hit(node, get):
        return True
    names: set[str] = set()
    for n in walk_local(node):
        if isinstance(n, ast.Assign):
            value = n.value.value if isinstance(n.value, ast.Await) else n.value
            if value is get:
                names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    return any(isinstance(n, ast.If) and names_in(n.test) & names for n in walk_local(node))
