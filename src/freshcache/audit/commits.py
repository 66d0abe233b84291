"""Does an invalidation run after the database transaction commits? (when the code tells)

An invalidation applied before the commit opens a window: a reader that loads between the
invalidation and the commit reads the old rows and caches them until the TTL. The decorated
write is fine when it commits itself, or when every caller runs it inside a unit of work
(``cache.deferred()`` / ``unit_of_work(session)``), which holds invalidations until the commit.
It is a finding when a caller runs it outside one and commits afterwards. Anything else
(no caller in the audited code, no commit anywhere) cannot be told and is said so.
"""

from __future__ import annotations

from freshcache.audit.model import CommitContext
from freshcache.audit.scanner import CallSite, FunctionFacts, RawWrite

#: Calls that invalidate, in every API the audit models.
_INVALIDATING_CALLS = frozenset(
    {"invalidate", "invalidate_sync", "delete", "delete_pattern", "delete_match", "clear",
     "unlink", "scan_iter"}
)  # fmt: skip


def _teardown_commit(caller: FunctionFacts, functions: list[FunctionFacts]) -> str:
    """The name of a FastAPI dependency of ``caller`` (``= Depends(get_session)``) that yields
    the session and commits after the yield: the commit happens when the response is sent."""
    import ast

    node = caller.node
    defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
    annotations = [a.annotation for a in [*node.args.args, *node.args.kwonlyargs] if a.annotation]
    for expr in [*defaults, *annotations]:
        for call in ast.walk(expr):
            if not (isinstance(call, ast.Call) and call.args):
                continue
            if ast.unparse(call.func).rsplit(".", 1)[-1] != "Depends":
                continue
            name = ast.unparse(call.args[0]).rsplit(".", 1)[-1]
            dep = next((f for f in functions if f.qualname == name), None)
            if dep is None:
                continue
            yields = [
                n.lineno for n in ast.walk(dep.node) if isinstance(n, ast.Yield | ast.YieldFrom)
            ]
            if yields and any(line > min(yields) for line in dep.commit_lines):
                return name
    return ""


def _sites(
    functions: list[FunctionFacts], name: str, exclude: FunctionFacts
) -> list[tuple[FunctionFacts, CallSite]]:
    return [
        (f, site)
        for f in functions
        if f is not exclude
        for site in f.calls
        if site.name == name and _may_call(f, site, exclude)
    ]


def _may_call(caller: FunctionFacts, site: CallSite, callee: FunctionFacts) -> bool:
    """Can ``site`` be a call of ``callee``? A module-level function is called by its bare name
    in its module, or through a name that resolves to it (``blocktag.insert(...)``), never
    as a method of something else (``table.insert()`` is SQLAlchemy's). Methods are matched
    by name: the receiver's type is not known."""
    if "." in callee.qualname:
        return True
    if site.target:
        return site.target == f"{callee.module}.{callee.qualname}"
    return site.plain and caller.module == callee.module


def _where(caller: FunctionFacts, line: int) -> str:
    return f"{caller.qualname} ({caller.location.file}:{line})"


def commit_context(write: RawWrite, functions: list[FunctionFacts]) -> tuple[CommitContext, str]:
    facts = write.function
    if facts is None:
        return CommitContext.NOT_APPLICABLE, "module-level invalidation (at import time)"
    if write.kind != "decorator":
        # An imperative call: ordered against the commits of its own function first.
        own = next(
            (
                s
                for s in facts.calls
                if s.line == write.location.line and s.name in _INVALIDATING_CALLS
            ),
            None,
        )
        if own is not None and own.in_unit_of_work:
            return CommitContext.UNIT_OF_WORK, f"inside a unit of work in {facts.qualname}"
        if own is not None and own.commit_after is not None:
            return (
                CommitContext.BEFORE_CALLER_COMMIT,
                f"invalidates at line {own.line}, then {facts.qualname} commits at line "
                f"{own.commit_after}",
            )
        if any(line < write.location.line for line in facts.commit_lines):
            return CommitContext.SELF, f"{facts.qualname} commits before it"
        committers = {f.qualname.rsplit(".", 1)[-1] for f in functions if f.commit_lines}
        earlier = [s for s in facts.calls if s.line < write.location.line and s.name in committers]
        if earlier:
            last = max(earlier, key=lambda s: s.line)
            return CommitContext.SELF, f"after {last.name}() (line {last.line}), which commits"
    elif facts.commit_lines:
        return CommitContext.SELF, f"{facts.qualname} commits (line {facts.commit_lines[0]})"
    name = facts.qualname.rsplit(".", 1)[-1]
    sites = _sites(functions, name, facts)
    if not sites:
        return CommitContext.UNKNOWN, "does not commit and has no caller in the audited code"
    bad = [(c, s) for c, s in sites if not s.in_unit_of_work and s.commit_after is not None]
    if bad:
        caller, site = bad[0]
        return (
            CommitContext.BEFORE_CALLER_COMMIT,
            f"{_where(caller, site.line)} calls it outside a unit of work and commits at line "
            f"{site.commit_after}",
        )
    outside = [(c, s) for c, s in sites if not s.in_unit_of_work]
    if not outside:
        shown = ", ".join(_where(c, s.line) for c, s in sites[:3])
        more = f" and {len(sites) - 3} more" if len(sites) > 3 else ""
        return CommitContext.UNIT_OF_WORK, f"every call is inside a unit of work: {shown}{more}"
    for caller, site in outside:
        teardown = _teardown_commit(caller, functions)
        if teardown:
            return (
                CommitContext.BEFORE_CALLER_COMMIT,
                f"{_where(caller, site.line)} calls it, and the commit runs in {teardown}'s "
                "teardown, after the endpoint has returned",
            )
    caller, site = outside[0]
    return (
        CommitContext.UNKNOWN,
        f"{_where(caller, site.line)} calls it outside a unit of work, with no commit after it "
        "there",
    )
