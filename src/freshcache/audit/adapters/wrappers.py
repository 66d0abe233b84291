"""Cache wrappers declared by the user in ``[[tool.freshcache.audit.wrappers]]``: decorators
the heuristics miss (a library the audit does not model, a layer built differently), told which
argument holds the TTL, the key or the pattern, and which function arguments reach the key."""

from __future__ import annotations

import ast

from freshcache.audit.adapters.base import (
    Ctx,
    add_write,
    argument,
    functions,
    is_method,
    make_read,
    params_of,
    pattern,
)
from freshcache.audit.config import Wrapper
from freshcache.audit.model import Hole, HoleKind, PatternSource, SymText
from freshcache.audit.resolve import source
from freshcache.audit.scanner import FunctionNode


def _arg(call: ast.Call | None, spec: str | int | None) -> ast.expr | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return argument(call, f"\0{spec}", spec)
    return argument(call, spec)


def scan_module(ctx: Ctx) -> None:
    if not ctx.config.wrappers:
        return
    for qualname, node in functions(ctx.info.tree.body):
        for deco in node.decorator_list:
            func = deco.func if isinstance(deco, ast.Call) else deco
            bare = source(func).rsplit(".", 1)[-1]
            wrapper = next(
                (w for w in ctx.config.wrappers if w.matches(ctx.qualified(func), bare)), None
            )
            if wrapper is None:
                continue
            ctx.understood(deco)
            call = deco if isinstance(deco, ast.Call) else None
            api = f"declared wrapper {wrapper.name}"
            if wrapper.kind == "read":
                _read(ctx, qualname, node, deco, call, wrapper, api)
            else:
                expr = _arg(call, wrapper.pattern)
                text = ctx.text(expr) if expr is not None else None
                shown = source(expr) if expr is not None else source(deco)
                where = ctx.loc(expr if expr is not None else deco)
                pats = (pattern(text, wrapper.mechanism, shown, where, PatternSource.EXPRESSION),)
                add_write(ctx, qualname, ctx.loc(node), "decorator", pats, api=api,
                          source_text="@" + source(deco))  # fmt: skip


def _read(
    ctx: Ctx,
    qualname: str,
    node: FunctionNode,
    deco: ast.expr,
    call: ast.Call | None,
    wrapper: Wrapper,
    api: str,
) -> None:
    ctx.api_seen(api, "{key}:{hash of the arguments named in key_args} (as declared)")
    params = [
        p.name
        for p in params_of(node)
        if not (p.name in ("self", "cls") and is_method(qualname, node))
    ]
    if wrapper.key_args == "all":
        keyed = tuple(params)
    elif wrapper.key_args == "none":
        keyed = ()
    else:
        keyed = tuple(p for p in params if p in wrapper.key_args)
    dropped = tuple(
        (p, f"[tool.freshcache.audit] declares key_args for {wrapper.name} without it")
        for p in params
        if p not in keyed
    )
    key_expr = _arg(call, wrapper.key)
    prefix = ctx.text(key_expr) if key_expr is not None else SymText.literal(node.name)
    ctx.out.reads.append(
        make_read(
            ctx, qualname, node, api=api, ttl_expr=_arg(call, wrapper.ttl),
            prefix=prefix, prefix_text=source(key_expr) if key_expr is not None else "",
            prefix_node=key_expr if key_expr is not None else deco,
            key_suffix=SymText((":", Hole(HoleKind.HASH, "args"))),
            key_params=keyed, dropped=dropped, serializer=None, source_text="@" + source(deco),
        )
    )  # fmt: skip
