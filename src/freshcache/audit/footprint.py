"""Which model attributes a read uses and a write changes, to tell over-broad invalidations.

Deliberately modest: attribute *names* only (``Booking.status`` and ``booking.status = ...``
both give ``status``), following calls into functions of the audited code a few levels deep.
Whenever a write creates or deletes rows, or runs SQL text, its footprint is unknown (every
read of that table may change) and the audit claims nothing; a claim is made only when both
sides are known and disjoint.
"""

from __future__ import annotations

import ast

from freshcache.audit.resolve import ModuleInfo, Resolver, walk_local
from freshcache.audit.scanner import FunctionNode

_DEPTH = 4
#: Calls after which a write's footprint is unknown: rows appear or vanish, or raw SQL runs.
_UNKNOWN_WRITES = frozenset(
    {"add", "add_all", "delete", "merge", "insert", "text", "bulk_save_objects", "executemany"}
)
#: Calls that make a read's footprint unknown.
_UNKNOWN_READS = frozenset({"text", "exec_driver_sql"})


class FootprintWalker:
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def callees(
        self, mod: ModuleInfo, qualname: str, node: FunctionNode
    ) -> list[tuple[ModuleInfo, str, FunctionNode]]:
        owner = qualname.rsplit(".", 1)[0] if "." in qualname else ""
        found: list[tuple[ModuleInfo, str, FunctionNode]] = []
        for call in walk_local(node):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in ("self", "cls")
                and owner
            ):
                name = f"{owner}.{func.attr}"
                if name in mod.functions:
                    found.append((mod, name, mod.functions[name]))
            elif isinstance(func, ast.Name):
                if func.id in mod.functions:
                    found.append((mod, func.id, mod.functions[func.id]))
                    continue
                qual = self.resolver.qualified(mod, func) or ""
                for name, other in self.resolver.modules.items():
                    local = qual.removeprefix(name + ".")
                    if qual.startswith(name + ".") and local in other.functions:
                        found.append((other, local, other.functions[local]))
        return found

    def reach(
        self, mod: ModuleInfo, qualname: str, node: FunctionNode
    ) -> list[tuple[ModuleInfo, FunctionNode]]:
        """``node`` and the audited functions it calls, transitively (bounded)."""
        seen = {(mod.name, qualname)}
        order = [(mod, node)]
        frontier = [(mod, qualname, node)]
        for _ in range(_DEPTH):
            nxt = []
            for m, q, n in frontier:
                for cm, cq, cn in self.callees(m, q, n):
                    if (cm.name, cq) not in seen:
                        seen.add((cm.name, cq))
                        order.append((cm, cn))
                        nxt.append((cm, cq, cn))
            frontier = nxt
        return order


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def nested_bodies(node: FunctionNode) -> list[ast.AST]:
    """The function and the functions defined inside it (their code runs as part of it)."""
    return [n for n in ast.walk(node) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def read_footprint(
    resolver: Resolver, mod: ModuleInfo, qualname: str, node: FunctionNode
) -> frozenset[str] | None:
    """Attribute names of model classes the read refers to (``Booking.status``)."""
    names: set[str] = set()
    for _m, fn in FootprintWalker(resolver).reach(mod, qualname, node):
        for body in nested_bodies(fn):
            for child in walk_local(body):
                if isinstance(child, ast.Call):
                    if _call_name(child) in _UNKNOWN_READS:
                        return None
                    if _call_name(child) == "filter_by":
                        names.update(kw.arg for kw in child.keywords if kw.arg)
                if (
                    isinstance(child, ast.Attribute)
                    and isinstance(child.value, ast.Name)
                    and child.value.id[:1].isupper()
                    and not child.attr.isupper()  # BookingStatus.PENDING: an enum member
                    and not child.attr.startswith("_")
                ):
                    names.add(child.attr)
    return frozenset(names) or None


def write_footprint(
    resolver: Resolver, mod: ModuleInfo, qualname: str, node: FunctionNode
) -> frozenset[str] | None:
    """Attribute names the write assigns; None when it may create or delete rows."""
    names: set[str] = set()
    for _m, fn in FootprintWalker(resolver).reach(mod, qualname, node):
        for body in nested_bodies(fn):
            for child in walk_local(body):
                if isinstance(child, ast.Call):
                    name = _call_name(child)
                    if name in _UNKNOWN_WRITES:
                        return None
                    if name == "values":  # update(Model).values(status=...)
                        if any(kw.arg is None for kw in child.keywords) or child.args:
                            return None
                        names.update(kw.arg for kw in child.keywords if kw.arg)
                    if name == "setattr" and len(child.args) >= 2:
                        attr = child.args[1]
                        if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
                            return None
                        names.add(attr.value)
                targets: list[ast.expr] = []
                if isinstance(child, ast.Assign):
                    targets = child.targets
                elif isinstance(child, ast.AugAssign | ast.AnnAssign):
                    targets = [child.target]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id not in ("self", "cls")
                    ):
                        names.add(target.attr)
    return frozenset(names) or None
