"""ORM writes that bypass the cache: a function that inserts, updates or deletes rows of a table
a cached read selects from, and invalidates none of that read's entries.

The tables are the ORM model classes of the audited code (a declarative base among their
bases). A read's tables are the models its body refers to, following the calls it makes into
the audited code (a repository method); a write's are the models it adds, constructs for
``session.add``, or names in ``insert()/update()/delete()`` or ``Model.create/update/delete``,
or loads and changes by attribute assignment before a commit or flush.
Tests are left out: they do not run against the production cache.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from freshcache.audit.adapters.base import functions
from freshcache.audit.analysis import Tables
from freshcache.audit.footprint import FootprintWalker, nested_bodies
from freshcache.audit.model import CachedRead, Finding, HoleKind, Location
from freshcache.audit.resolve import ModuleInfo, local_scope, walk_local
from freshcache.audit.rules import finding, prefix_pattern, scan_models
from freshcache.audit.scanner import FunctionNode, ScanResult

_WRITE_CALLS = {"insert", "update", "delete"}
_MODEL_WRITES = {"create", "update", "delete", "bulk_create", "bulk_update", "get_or_create",
                 "update_or_create", "save", "insert", "upsert"}  # fmt: skip
_SESSION_ADDS = {"add", "add_all", "merge"}


def _is_test(module: str, display: str) -> bool:
    parts = display.split("/")
    return any(p in ("tests", "test") for p in parts[:-1]) or parts[-1].startswith(
        ("test_", "conftest")
    )


def _written(node: ast.AST, models: set[str]) -> dict[str, str]:
    """Model -> "insert" (only new rows) or "change" (rows updated or deleted)."""
    out: dict[str, str] = {}

    def mark(model: str, kind: str) -> None:
        out[model] = "change" if kind == "change" or out.get(model) == "change" else "insert"

    for call in walk_local(node):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else ""
        )
        first = call.args[0] if call.args else None
        if name in _WRITE_CALLS and isinstance(first, ast.Name) and first.id in models:
            mark(first.id, "insert" if name == "insert" else "change")
        if name in _SESSION_ADDS:
            scope = (
                local_scope(node)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                else {}
            )
            for given in call.args:
                # session.add(booking) after booking = Booking(...)
                arg = scope.get(given.id, given) if isinstance(given, ast.Name) else given
                for inner in ast.walk(arg):
                    if (
                        isinstance(inner, ast.Call)
                        and isinstance(inner.func, ast.Name)
                        and inner.func.id in models
                    ):
                        mark(inner.func.id, "change" if name == "merge" else "insert")
        if isinstance(func, ast.Attribute) and func.attr in _MODEL_WRITES:
            root = func.value
            while isinstance(root, ast.Call | ast.Attribute):
                root = root.func if isinstance(root, ast.Call) else root.value
            if isinstance(root, ast.Name) and root.id in models:
                new_rows = func.attr in ("create", "bulk_create", "insert")
                mark(root.id, "insert" if new_rows else "change")
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        for model in _assigned_models(node, models):
            mark(model, "change")
    return out


_SAVES = {"commit", "flush"}


def _assigned_models(node: FunctionNode, models: set[str]) -> set[str]:
    """Models changed by attribute assignment and saved in the same function:
    ``booking = await session.get(Booking, id); booking.status = CANCELLED;
    await session.commit()`` (the unit of work writes the dirty object at the flush)."""
    saves = any(
        isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr in _SAVES
        for c in walk_local(node)
    )
    if not saves:
        return set()
    scope = local_scope(node)
    annotated = {
        a.arg: {n.id for n in ast.walk(a.annotation) if isinstance(n, ast.Name)} & models
        for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)
        if a.annotation is not None
    }
    found: set[str] = set()
    for child in walk_local(node):
        if not isinstance(child, ast.Assign | ast.AugAssign | ast.AnnAssign):
            continue
        targets = child.targets if isinstance(child, ast.Assign) else [child.target]
        for target in targets:
            if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)):
                continue
            name = target.value.id
            if name in ("self", "cls"):
                continue
            if name in annotated:  # def cancel(booking: Booking, ...)
                found |= annotated[name]
            value = scope.get(name)
            if value is not None:  # booking = await session.get(Booking, booking_id)
                found |= {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & models
    return found


def _read_tables(scan: ScanResult, module: str, qualname: str, models: set[str]) -> set[str]:
    mod = scan.modules.get(module)
    if mod is None:
        return set()
    node = mod.functions.get(qualname) or next(
        (f.node for f in scan.functions if f.module == module and f.qualname == qualname), None
    )
    if node is None:
        return set()
    found: set[str] = set()
    reached = FootprintWalker(scan.resolver).reach(mod, qualname, node)
    reached += _collaborators(scan, mod, qualname, node)
    for _m, fn in reached:
        if fn.returns is not None:  # -> list[Booking]
            found |= {n.id for n in ast.walk(fn.returns) if isinstance(n, ast.Name)} & models
        for body in nested_bodies(fn):
            for child in walk_local(body):
                if isinstance(child, ast.Name) and child.id in models:
                    found.add(child.id)
    return found


def _collaborators(
    scan: ScanResult, mod: ModuleInfo, qualname: str, node: FunctionNode
) -> list[tuple[ModuleInfo, FunctionNode]]:
    """Methods reached through an attribute set in ``__init__`` from a typed parameter:
    ``self.repository.find(...)`` with ``repository: BookingRepository`` -> its ``find``."""
    if "." not in qualname:
        return []
    owner = qualname.rsplit(".", 1)[0]
    init = mod.functions.get(f"{owner}.__init__")
    if init is None:
        return []
    types = {
        a.arg: {n.id for n in ast.walk(a.annotation) if isinstance(n, ast.Name)}
        for a in init.args.args
        if a.annotation is not None
    }
    out: list[tuple[ModuleInfo, FunctionNode]] = []
    for call in walk_local(node):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        target = call.func.value
        if not (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            continue
        for cls in types.get(target.attr, set()):
            for other in scan.modules.values():
                method = other.functions.get(f"{cls}.{call.func.attr}")
                if method is not None:
                    out.append((other, method))
    return out


def _stale(read: CachedRead, written: dict[str, str], tables: set[str]) -> bool:
    """Does the write change what the read returned? An update or delete of its table does; an
    insert does unless the read is of one row named by its key (``category_{id}``)."""
    for model in tables & set(written):
        if written[model] == "change":
            return True
        key = read.key
        if key is None or not (key.has(HoleKind.TEMPLATE) or key.has(HoleKind.RAW)):
            return True
    return False


def orm_findings(scan: ScanResult, tables: Tables) -> Iterator[Finding]:
    models = scan_models(scan)
    if not models or not tables.reads:
        return
    reads_of: dict[str, set[str]] = {
        read.id: _read_tables(scan, read.module, read.qualname, models) for read in tables.reads
    }
    if not any(reads_of.values()):
        return
    covering: dict[tuple[str, str], set[str]] = {}
    for w in tables.writes:
        covering.setdefault((w.module, w.qualname), set()).update(
            c.read for c in tables.coverage if c.write == w.id
        )
    covered_names: dict[str, set[str]] = {}  # function name -> reads its invalidation covers
    callee_cover: dict[str, set[str]] = {}  # methods an invalidating function calls
    facts = {(f.module, f.qualname): f for f in scan.functions}
    for (module, qualname), reads in covering.items():
        covered_names.setdefault(qualname.rsplit(".", 1)[-1], set()).update(reads)
        # What an invalidating function calls (the repository method that writes the rows)
        # is covered by it.
        own = facts.get((module, qualname))
        for site in own.calls if own is not None else []:
            callee_cover.setdefault(site.name, set()).update(reads)
    for mod in scan.modules.values():
        if _is_test(mod.name, mod.display):
            continue
        for qualname, node in functions(mod.tree.body):
            written = _written(node, models)
            if not written:
                continue
            done = set(covering.get((mod.name, qualname), set()))
            # called by a function that invalidates afterwards (a repository method under a
            # covering service; a seeding function its caller follows with an invalidation)
            done |= callee_cover.get(qualname.rsplit(".", 1)[-1], set())
            # A write that calls a function which invalidates (a service method) is covered.
            for call in walk_local(node):
                if isinstance(call, ast.Call):
                    func = call.func
                    name = (
                        func.attr
                        if isinstance(func, ast.Attribute)
                        else func.id
                        if isinstance(func, ast.Name)
                        else ""
                    )
                    done |= covered_names.get(name, set())
            stale = [
                read
                for read in tables.reads
                if read.id not in done and _stale(read, written, reads_of[read.id])
            ]
            if not stale:
                continue
            shown = ", ".join(
                f"{r.qualname} ({', '.join(sorted(reads_of[r.id] & set(written)))})"
                for r in stale[:3]
            ) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
            patterns = ", ".join(sorted({repr(prefix_pattern(r)) for r in stale}))
            yield finding(
                "FC124",
                Location(mod.display, node.lineno),
                f"{qualname} writes {', '.join(sorted(written))} and invalidates none of the "
                f"cached reads of that table: {shown} stay stale until their TTL",
                f"add @invalidate_cache({patterns}) to {qualname} (or call the service method "
                "that invalidates)",
                f"{mod.name}:{qualname}",
            )
