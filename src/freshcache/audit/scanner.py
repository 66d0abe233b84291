"""AST extraction: every cached read, every invalidation, and the facts about functions that the
rules need (commits, units of work, calls, the attributes a function reads or changes).

Only the standard ``ast``: the audited code is parsed, never imported or executed. A file that
cannot be read or parsed becomes a SourceError (reported as a finding), never a crash.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import string
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

from freshcache.audit.config import AuditConfig
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
    SourceError,
    SymText,
    TtlSource,
    Unanalysed,
)
from freshcache.audit.resolve import (
    NOT_CONSTANT,
    ModuleInfo,
    Resolver,
    index_module,
    local_scope,
    source,
    walk_local,
)
from freshcache.keys import escape, validate_key_prefix
from freshcache.tokens import classify

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
#: Folders that hold someone else's code or code nobody edits by hand: installed packages,
#: database migrations (generated, and replayed in order rather than called), generated stubs.
_SKIP_DIRS = frozenset(
    {
        "__pycache__",
        ".venv",
        "venv",
        "env",
        ".tox",
        ".nox",
        "node_modules",
        "site-packages",
        "dist-packages",
        "build",
        "dist",
        ".git",
        "migrations",
        "alembic",
        "generated",
        "_generated",
        "__generated__",
    }
)
#: Generated modules by their name (protobuf, gRPC).
_GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")

#: Libraries whose cache APIs the adapters model; the freshcache scanner leaves their names alone.
FOREIGN_CACHE_LIBRARIES = frozenset(
    {"cashews", "aiocache", "fastapi_cache", "dogpile", "redis", "aioredis", "cachetools"}
)


class AuditInputError(Exception):
    """A path given to the audit that does not exist or holds no Python file."""


@dataclasses.dataclass(frozen=True, slots=True)
class CallSite:
    name: str  # the called function's last name: "create_booking" for svc.create_booking(...)
    line: int
    in_unit_of_work: bool  # inside "with cache.deferred()" / "with unit_of_work(session)"
    commit_after: int | None  # line of a commit in the caller after this call, if any
    #: "module.function" the call resolves to (``blocktag.insert(...)``), "" when it does not
    #: (``table.insert()``, ``self.repo.save()``)
    target: str = ""
    plain: bool = False  # called by a bare name: ``insert(...)``


@dataclasses.dataclass(slots=True)
class FunctionFacts:
    module: str
    qualname: str
    node: FunctionNode
    location: Location
    commit_lines: list[int] = dataclasses.field(default_factory=list)
    calls: list[CallSite] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class RawWrite:
    """An invalidation before the commit analysis: the scanner's half of a model.Write."""

    module: str
    qualname: str
    function: FunctionFacts | None  # None: at module level
    location: Location
    kind: str  # "decorator" | "imperative" | "entry"
    patterns: tuple[InvalidationPattern, ...]
    api: str = "freshcache"
    store: str = ""
    source_text: str = ""


@dataclasses.dataclass(slots=True)
class ScanResult:
    files: list[str]
    modules: dict[str, ModuleInfo]
    resolver: Resolver
    reads: list[CachedRead]
    writes: list[RawWrite]
    functions: list[FunctionFacts]
    errors: list[SourceError]
    #: (read id, location, problem) for key prefixes that freshcache would refuse
    prefix_problems: list[tuple[str, Location, str]]
    #: cache code found and not understood (never a pass)
    unanalysed: list[Unanalysed] = dataclasses.field(default_factory=list)
    #: findings an adapter made about its own API (a home-grown layer's body, a setup call)
    adapter_findings: list[Finding] = dataclasses.field(default_factory=list)
    #: (api, layout, defined_at) of every cache API seen
    apis: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    #: ids of the AST nodes some adapter understood (decorators and calls)
    understood: set[int] = dataclasses.field(default_factory=set)
    #: (module, qualname) -> the function's facts, built on first use
    facts_index: dict[tuple[str, str], FunctionFacts] = dataclasses.field(default_factory=dict)
    #: every call of a module, by module name (walked once)
    module_calls: dict[str, list[ast.Call]] = dataclasses.field(default_factory=dict)
    #: the functions that implement a home-grown layer or its service (not reads themselves)
    layer_code: set[tuple[str, str]] = dataclasses.field(default_factory=set)


# -- files -------------------------------------------------------------------------------------


def discover(paths: Iterable[Path]) -> dict[Path, Path]:
    """The .py files under ``paths``, sorted, each once, with the folder given for it (its
    display base when it is not under the audit root)."""
    found: dict[Path, Path] = {}
    for path in paths:
        if not path.exists():
            raise AuditInputError(f"{path}: no such file or directory")
        if path.is_file():
            found.setdefault(path.resolve(), path.resolve().parent)
            continue
        base = path.resolve()
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
            for name in names:
                if name.endswith(".py") and not name.endswith(_GENERATED_SUFFIXES):
                    found.setdefault(Path(folder, name).resolve(), base)
    return dict(sorted(found.items()))


def module_name(path: Path, base: Path | None = None) -> str:
    """Dotted name from the package folders (those holding an __init__.py) above ``path``; a
    module in a folder without one (a namespace package, an application run from its root) is
    named by its path under the folder given to the audit, as ``python -m`` would import it."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    if not (folder / "__init__.py").is_file() and base is not None and folder != base:
        try:
            relative = folder.relative_to(base).parts
        except ValueError:
            relative = ()
        if relative and all(p.isidentifier() for p in relative):
            return ".".join([*relative, *parts])
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.parent.name


def display_path(path: Path, root: Path, base: Path | None = None) -> str:
    """``path`` relative to the audit root, else to the folder it was found in: never an
    absolute path, so reports do not depend on where the tree is checked out."""
    for anchor in (root.resolve(), base):
        if anchor is not None:
            try:
                return path.relative_to(anchor).as_posix()
            except ValueError:
                continue
    return path.name


# -- the scan ----------------------------------------------------------------------------------


def scan(paths: Iterable[Path], root: Path, config: AuditConfig | None = None) -> ScanResult:
    from freshcache.audit.adapters import run_adapters

    files = discover(paths)
    if not files:
        raise AuditInputError("no Python files under " + ", ".join(str(p) for p in paths))
    modules: dict[str, ModuleInfo] = {}
    errors: list[SourceError] = []
    shown: list[str] = []
    for path, base in files.items():
        shown_path = display_path(path, root, base)
        shown.append(shown_path)
        tree, error = _parse(path, shown_path)
        if tree is None:
            assert error is not None
            errors.append(error)
            continue
        name = module_name(path, base)
        while name in modules:  # two loose files with one stem in different folders
            name = "_." + name
        info = ModuleInfo(name=name, path=path, display=shown_path, tree=tree)
        index_module(info)
        modules[name] = info
    resolver = Resolver(modules)
    result = ScanResult(shown, modules, resolver, [], [], [], errors, [])
    for info in modules.values():
        _ModuleScanner(info, resolver, result).run()
        if any(r.module == info.name for r in result.reads) or any(
            w.module == info.name for w in result.writes
        ):
            result.apis.setdefault(
                "freshcache", ("{namespace}:{key_prefix}:{function_qualname}:{args_hash}", "")
            )
    run_adapters(result, config or AuditConfig())
    return result


def _parse(path: Path, shown: str) -> tuple[ast.Module | None, SourceError | None]:
    try:
        with tokenize.open(path) as handle:  # a BOM, else a PEP 263 coding line, else UTF-8
            text: str | bytes = handle.read()
    except (SyntaxError, UnicodeDecodeError, LookupError):
        # What tokenize refuses, CPython's own reader may still take: hand it the bytes and
        # let the compiler decide (the verdict is then exactly "would Python import this?").
        try:
            text = path.read_bytes()
        except OSError as exc:
            return None, SourceError(Location(shown, 1), f"cannot read the file: {exc}")
    except OSError as exc:
        return None, SourceError(Location(shown, 1), f"cannot read the file: {exc}")
    try:
        return ast.parse(text, filename=shown), None
    except SyntaxError as exc:
        where = Location(shown, exc.lineno or 1, exc.offset or 1)
        return None, SourceError(where, f"syntax error: {exc.msg}")
    except ValueError as exc:  # null bytes
        return None, SourceError(Location(shown, 1), f"cannot parse the file: {exc}")


class _ModuleScanner:
    def __init__(self, info: ModuleInfo, resolver: Resolver, out: ScanResult) -> None:
        self.info = info
        self.resolver = resolver
        self.out = out
        self.cached_names: set[str] = set()  # qualnames of cached functions in this module

    def loc(self, node: ast.AST) -> Location:
        line = getattr(node, "lineno", 1)
        return Location(self.info.display, line, getattr(node, "col_offset", 0) + 1)

    def run(self) -> None:
        functions = list(self._functions(self.info.tree.body, ""))
        # Decorated reads first, so "func.invalidate(...)" calls know which names are cached.
        for qualname, node in functions:
            for deco in node.decorator_list:
                if self._decorator_kind(deco) == "cached":
                    self.cached_names.add(qualname)
        for qualname, node in functions:
            facts = self._facts(qualname, node)
            self.out.functions.append(facts)
            for deco in node.decorator_list:
                kind = self._decorator_kind(deco)
                if kind == "cached":
                    self.out.reads.append(self._read(qualname, node, deco))
                elif kind == "invalidate_cache":
                    self.out.writes.append(self._decorated_write(qualname, node, deco, facts))
            self._imperative(node, qualname, facts)
        self._imperative(self.info.tree, "<module>", None)

    def _functions(self, body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, FunctionNode]]:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = prefix + node.name
                yield qualname, node
                yield from self._functions(node.body, f"{qualname}.<locals>.")
            elif isinstance(node, ast.ClassDef):
                yield from self._functions(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.If | ast.Try | ast.With | ast.AsyncWith):
                # Definitions under "if TYPE_CHECKING:" / try-import blocks still count.
                for block in _blocks(node):
                    yield from self._functions(block, prefix)

    # -- decorators ----------------------------------------------------------------------

    def _foreign(self, expr: ast.expr) -> bool:
        """Does ``expr`` name something another cache library or an in-repo definition owns
        (the adapters model those), rather than freshcache?"""
        if own_method(self.resolver, self.info, expr) is not None:
            return True  # timing.cached, a method of the audited code's own class
        while isinstance(expr, ast.Attribute | ast.Call):
            expr = expr.func if isinstance(expr, ast.Call) else expr.value
        qual = self.resolver.qualified(self.info, expr)
        if qual is None:
            return False
        if qual.split(".")[0] in FOREIGN_CACHE_LIBRARIES:
            return True
        return defined_in_repo(self.resolver, qual)

    def _decorator_kind(self, deco: ast.expr) -> str | None:
        func = deco.func if isinstance(deco, ast.Call) else deco
        if self._foreign(func):
            return None
        for name in ("cached", "invalidate_cache"):
            if self.resolver.is_freshcache(self.info, func, name):
                return name
            if isinstance(func, ast.Attribute) and func.attr == name:
                return name  # cache.cached(...): the bound form, on any Cache instance
            if isinstance(func, ast.Name) and func.id == name:
                origin = self.info.imports.get(name)
                # A same-named decorator from another library is not ours; a local alias
                # ("cached = cache.cached") or a re-export from an audited module is.
                if origin is None or origin[0] in self.resolver.modules:
                    return name
        return None

    def _binding(self, deco: ast.expr) -> str:
        func = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(func, ast.Attribute) and not self.resolver.is_freshcache(
            self.info, func, "cached", "invalidate_cache"
        ):
            return source(func.value)
        return "module"

    def _read(self, qualname: str, node: FunctionNode, deco: ast.expr) -> CachedRead:
        call = deco if isinstance(deco, ast.Call) else None
        kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg} if call else {}
        args = list(call.args) if call else []
        params = function_params(node)
        param_names = [p.name for p in params]
        read_id = f"{self.info.name}:{qualname}"

        ttl_expr = kwargs.get("ttl", args[0] if args else None)
        ttl, ttl_source = self._ttl(ttl_expr)

        prefix_expr = kwargs.get("key_prefix", args[1] if len(args) > 1 else None)
        prefix_loc = self.loc(prefix_expr if prefix_expr is not None else deco)
        prefix = self._prefix(read_id, prefix_expr, param_names, prefix_loc)

        exclude: tuple[str, ...] = ()
        exclude_ok = True
        if "exclude" in kwargs:
            value = self.resolver.constant(self.info, kwargs["exclude"])
            if isinstance(value, str):
                exclude = (value,)
            elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
                exclude = tuple(str(v) for v in value)
            else:
                exclude_ok = False
        serializer: str | None = "json"
        if "serializer" in kwargs:
            value = self.resolver.constant(self.info, kwargs["serializer"])
            serializer = value if isinstance(value, str) else None
        signing = "signing_key" in kwargs and not (
            isinstance(kwargs["signing_key"], ast.Constant) and kwargs["signing_key"].value is None
        )
        # The key's tail, as freshcache's FunctionSpec.locate() builds it.
        tail: list[Part] = [f":{escape(qualname)}:"]
        if "version" in kwargs:
            version = self.resolver.constant(self.info, kwargs["version"])
            if isinstance(version, str | int) and not isinstance(version, bool):
                tail.append(escape(version) + ":")
            else:
                tail += [Hole(HoleKind.ESCAPED, source(kwargs["version"])), ":"]
        if "key" in kwargs:
            tail.append(Hole(HoleKind.ESCAPED, f"{source(kwargs['key'])}(...)"))
        else:
            tail.append(Hole(HoleKind.HASH, "args_hash"))
        return CachedRead(
            id=read_id,
            module=self.info.name,
            qualname=qualname,
            location=self.loc(node),
            binding=self._binding(deco),
            is_async=isinstance(node, ast.AsyncFunctionDef),
            ttl=ttl,
            ttl_source=ttl_source,
            ttl_text=source(ttl_expr) if ttl_expr is not None else "",
            prefix=prefix,
            prefix_text=source(prefix_expr) if prefix_expr is not None else "",
            prefix_location=prefix_loc,
            custom_key="key" in kwargs,
            params=tuple(params),
            exclude=exclude,
            exclude_resolved=exclude_ok,
            serializer=serializer,
            signing_key=signing,
            footprint=None,  # filled by the footprint pass, which follows calls across modules
            key_suffix=SymText(()) + SymText(tuple(tail)),
        )

    def _ttl(self, expr: ast.expr | None) -> tuple[float | None, TtlSource]:
        if expr is None:
            return None, TtlSource.MISSING
        value = self.resolver.constant(self.info, expr)
        if value is None:
            return None, TtlSource.MISSING  # ttl=None: entries that never expire
        if isinstance(value, int | float) and not isinstance(value, bool):
            literal = not any(isinstance(n, ast.Name | ast.Attribute) for n in ast.walk(expr))
            return float(value), TtlSource.LITERAL if literal else TtlSource.CONSTANT
        return None, TtlSource.UNRESOLVED

    def _prefix(
        self, read_id: str, expr: ast.expr | None, params: list[str], where: Location
    ) -> SymText | None:
        if expr is None:
            # freshcache's default prefix is the function's module (the key stays unique).
            return SymText.literal(self.info.name)
        value = self.resolver.constant(self.info, expr)
        if not isinstance(value, str):
            text = self.resolver.symtext(self.info, expr)
            if text is None:
                return None
            # Interpolated at import time (decorator arguments): fixed but unknown to us.
            return SymText(
                tuple(
                    Hole(HoleKind.UNKNOWN, p.label) if isinstance(p, Hole) else p
                    for p in text.parts
                )
            )
        text, problem = template_text(value, params, "key_prefix")
        if problem is None:
            probe = probe_text(text)
            try:
                validate_key_prefix(probe)
            except ValueError as exc:
                problem = str(exc).removeprefix("freshcache: ")
        if problem is not None:
            self.out.prefix_problems.append((read_id, where, problem))
        return text

    def _decorated_write(
        self, qualname: str, node: FunctionNode, deco: ast.expr, facts: FunctionFacts
    ) -> RawWrite:
        call = deco if isinstance(deco, ast.Call) else None
        roots = [*(p.name for p in function_params(node)), "result"]
        patterns: list[InvalidationPattern] = []
        for arg in call.args if call else []:
            patterns.extend(self._decorator_pattern(arg, roots))
        return RawWrite(
            module=self.info.name,
            qualname=qualname,
            function=facts,
            location=self.loc(node),
            kind="decorator",
            patterns=tuple(patterns),
        )

    def _decorator_pattern(self, arg: ast.expr, roots: list[str]) -> list[InvalidationPattern]:
        where = self.loc(arg)
        value = self.resolver.constant(self.info, arg)
        if isinstance(value, str):  # a template: freshcache fills and escapes its fields
            text, problem = template_text(value, roots, "invalidation pattern")
            source_kind = PatternSource.TEMPLATE if text.holes else PatternSource.LITERAL
            return [make_pattern(text, source_kind, source(arg), where, problem)]
        if isinstance(arg, ast.Lambda):
            return self._callable_patterns(arg, [arg.body], where)
        target = self._function_named(arg)
        if target is not None:
            mod, func = target
            returns = [n.value for n in walk_local(func) if isinstance(n, ast.Return) and n.value]
            return self._callable_patterns(func, returns, where, mod)
        evaluated = self.resolver.symtext(self.info, arg)
        if evaluated is not None:  # an f-string or concatenation evaluated at import time
            return [make_pattern(evaluated, PatternSource.EXPRESSION, source(arg), where)]
        return [make_pattern(None, PatternSource.UNRESOLVED, source(arg), where)]

    def _function_named(self, expr: ast.expr) -> tuple[ModuleInfo, FunctionNode] | None:
        qual = self.resolver.qualified(self.info, expr)
        if qual is None:
            return None
        for name, mod in self.resolver.modules.items():
            if qual.startswith(name + "."):
                func = mod.functions.get(qual[len(name) + 1 :])
                if func is not None:
                    return mod, func
        return None

    def _callable_patterns(
        self,
        func: FunctionNode | ast.Lambda,
        returns: list[ast.expr],
        where: Location,
        mod: ModuleInfo | None = None,
    ) -> list[InvalidationPattern]:
        mod = mod or self.info
        scope = local_scope(func)
        elements: list[ast.expr] = []
        for expr in returns:
            if isinstance(expr, ast.Name) and expr.id in scope:
                expr = scope[expr.id]
            if isinstance(expr, ast.List | ast.Tuple | ast.Set):
                elements.extend(expr.elts)
            else:
                elements.append(expr)
        patterns: list[InvalidationPattern] = []
        seen: set[str] = set()
        for expr in elements:
            text = self.resolver.symtext(mod, expr, scope)
            shown = source(expr)
            if shown in seen:
                continue
            seen.add(shown)
            where_elt = (
                Location(mod.display, expr.lineno, expr.col_offset + 1)
                if mod is not self.info or not isinstance(func, ast.Lambda)
                else where
            )
            if text is None:
                patterns.append(make_pattern(None, PatternSource.UNRESOLVED, shown, where_elt))
            else:
                kind = PatternSource.CALLABLE
                if isinstance(expr, ast.Call) and self.resolver.is_freshcache(
                    mod, expr.func, "pattern"
                ):
                    kind = PatternSource.PATTERN_CALL
                patterns.append(make_pattern(text, kind, shown, where_elt))
        return patterns

    # -- imperative invalidations ----------------------------------------------------------

    def _imperative(
        self, node: FunctionNode | ast.Module, qualname: str, facts: FunctionFacts | None
    ) -> None:
        scope = local_scope(node) if not isinstance(node, ast.Module) else {}
        calls = [n for n in walk_local(node) if isinstance(n, ast.Call)]
        for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
            if not isinstance(call.func, ast.Attribute):
                continue
            if call.func.attr not in ("invalidate", "invalidate_sync"):
                continue
            receiver = call.func.value
            cached = self._cached_receiver(receiver, qualname)
            where = self.loc(call)
            write_qualname = qualname
            if cached is not None:
                read = self._read_named(cached)
                text = read.key if read is not None else None
                pattern = make_pattern(
                    text, PatternSource.EXPRESSION, source(call), where, entry=True
                )
                self.out.writes.append(
                    RawWrite(self.info.name, write_qualname, facts, where, "entry", (pattern,))
                )
                continue
            if not self._is_cache(receiver) or self._foreign(receiver):
                continue
            named = self.resolver.qualified(self.info, receiver)
            if named is not None and defined_in_repo(self.resolver, named):
                continue  # d.cached_count.invalidate(id): a function of the audited code's own
            arg = (
                call.args[0]
                if call.args
                else next((kw.value for kw in call.keywords if kw.arg == "pattern"), None)
            )
            if arg is None:
                continue
            text = self.resolver.symtext(self.info, arg, scope)
            kind = PatternSource.EXPRESSION
            if isinstance(arg, ast.Constant):
                kind = PatternSource.LITERAL
            elif isinstance(arg, ast.Call) and self.resolver.is_freshcache(
                self.info, arg.func, "pattern"
            ):
                kind = PatternSource.PATTERN_CALL
            if text is None:
                kind = PatternSource.UNRESOLVED
            pattern = make_pattern(text, kind, source(arg), self.loc(arg))
            self.out.writes.append(
                RawWrite(self.info.name, write_qualname, facts, where, "imperative", (pattern,))
            )

    def _cached_receiver(self, receiver: ast.expr, qualname: str) -> str | None:
        """``get_stats.invalidate(...)`` / ``self.get_stats.invalidate(...)``: the cached name."""
        if isinstance(receiver, ast.Name) and receiver.id in self.cached_names:
            return receiver.id
        if (
            isinstance(receiver, ast.Attribute)
            and isinstance(receiver.value, ast.Name)
            and receiver.value.id in ("self", "cls")
        ):
            owner = qualname.rsplit(".", 1)[0] if "." in qualname else ""
            candidate = f"{owner}.{receiver.attr}"
            if candidate in self.cached_names:
                return candidate
        return None

    def _read_named(self, qualname: str) -> CachedRead | None:
        wanted = f"{self.info.name}:{qualname}"
        return next((r for r in self.out.reads if r.id == wanted), None)

    def _is_cache(self, receiver: ast.expr) -> bool:
        if isinstance(receiver, ast.Call):
            return self.resolver.is_freshcache(self.info, receiver.func, "get_cache")
        name = (
            receiver.id
            if isinstance(receiver, ast.Name)
            else receiver.attr
            if isinstance(receiver, ast.Attribute)
            else ""
        )
        return "cache" in name.lower()

    # -- facts for the commit and footprint analyses ---------------------------------------

    def _facts(self, qualname: str, node: FunctionNode) -> FunctionFacts:
        facts = FunctionFacts(self.info.name, qualname, node, self.loc(node))
        uow_spans: list[tuple[int, int]] = []
        begin_spans: list[tuple[int, int]] = []
        explicit: list[int] = []  # commit() calls
        for child in walk_local(node):
            if isinstance(child, ast.With | ast.AsyncWith):
                end = child.end_lineno or child.lineno
                for item in child.items:
                    ctx = item.context_expr
                    if isinstance(ctx, ast.Call):
                        name = _call_name(ctx)
                        if name in ("deferred", "unit_of_work"):
                            uow_spans.append((child.lineno, end))
                        elif name == "begin":  # "async with session.begin():" commits at exit
                            begin_spans.append((child.lineno, end))
                            facts.commit_lines.append(end)
            elif isinstance(child, ast.Call) and _call_name(child) == "commit":
                facts.commit_lines.append(child.lineno)
                explicit.append(child.lineno)
        for child in walk_local(node):
            if isinstance(child, ast.Call):
                name = _call_name(child)
                if not name:
                    continue
                line = child.lineno
                # A "with session.begin():" block commits what runs inside it; one that starts
                # after the call opens a new transaction, which cannot hold the call's writes.
                later = [c for c in explicit if c > line] + [
                    end for start, end in begin_spans if start <= line <= end
                ]
                target = self.resolver.qualified(self.info, child.func) or ""
                if target:
                    module, _, last = target.rpartition(".")
                    target = f"{self.resolver.module_named(module)}.{last}" if module else ""
                facts.calls.append(
                    CallSite(
                        name=name,
                        line=line,
                        in_unit_of_work=any(s <= line <= e for s, e in uow_spans),
                        commit_after=min(later) if later else None,
                        target=target,
                        plain=isinstance(child.func, ast.Name),
                    )
                )
        facts.commit_lines.sort()
        return facts


# -- helpers -----------------------------------------------------------------------------------


def own_method(resolver: Resolver, info: ModuleInfo, expr: ast.expr) -> FunctionNode | None:
    """The method ``expr`` names when it is ``instance.method`` on a module-level instance of a
    class of the audited code that defines the method itself (``timing.cached`` after
    ``timing = CachedMetric(...)``): that class's method, not freshcache's ``Cache.cached``."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    if not isinstance(expr, ast.Attribute):
        return None
    qual = resolver.qualified(info, expr.value)
    if qual is None:
        return None
    module, _, name = qual.rpartition(".")
    mod = resolver.modules.get(resolver.module_named(module)) if module else None
    value = mod.assignments.get(name) if mod is not None else None
    if mod is None or not isinstance(value, ast.Call):
        return None
    made = resolver.qualified(mod, value.func)
    if made is None:
        return None
    cls_module, _, cls = made.rpartition(".")
    owner = resolver.modules.get(resolver.module_named(cls_module)) if cls_module else None
    return owner.functions.get(f"{cls}.{expr.attr}") if owner is not None else None


def defined_in_repo(resolver: Resolver, qual: str) -> bool:
    """Is ``qual`` ("core.cache.cached") a function or class defined in an audited module?"""
    module, _, name = qual.rpartition(".")
    mod = resolver.modules.get(resolver.module_named(module))
    return mod is not None and (name in mod.functions or name in mod.class_constants)


def _blocks(node: ast.If | ast.Try | ast.With | ast.AsyncWith) -> list[list[ast.stmt]]:
    if isinstance(node, ast.If):
        return [node.body, node.orelse]
    if isinstance(node, ast.Try):
        return [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
    return [node.body]


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def function_params(node: FunctionNode) -> list[Param]:
    a = node.args
    every = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    if a.vararg:
        every.append(a.vararg)
    if a.kwarg:
        every.append(a.kwarg)
    return [Param(p.arg, source(p.annotation) if p.annotation else "") for p in every]


def template_text(text: str, roots: Iterable[str], what: str) -> tuple[SymText, str | None]:
    """A template string as literal text and TEMPLATE holes; the problem freshcache would
    raise for it (bad syntax, a field that is not a parameter), or None."""
    allowed = set(roots)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return SymText.literal(text), f"malformed template {what} {text!r}: {exc}"
    parts: list[Part] = []
    problem: str | None = None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        parts.append(Hole(HoleKind.TEMPLATE, field))
        root = field.split(".")[0]
        if spec or conversion:
            problem = f"{what} {text!r}: format specs and conversions are not supported"
        elif root not in allowed:
            problem = f"{what} {text!r} refers to {{{root}}}, which is not one of {sorted(allowed)}"
    return SymText(()) + SymText(tuple(parts)), problem


def probe_text(text: SymText) -> str:
    """Literal text with every hole replaced by one plain segment value, for classify()."""
    return "".join(p if isinstance(p, str) else "v" for p in text.parts)


def make_pattern(
    text: SymText | None,
    source_kind: PatternSource,
    shown: str,
    where: Location,
    problem: str | None = None,
    *,
    entry: bool = False,
) -> InvalidationPattern:
    if text is None:
        return InvalidationPattern(None, source_kind, shown, where, "unknown")
    if problem is not None:
        return InvalidationPattern(text, source_kind, shown, where, "malformed", problem)
    if entry:
        return InvalidationPattern(text, source_kind, shown, where, "entry")
    try:
        kind = classify(probe_text(text)).kind.value
    except ValueError as exc:
        return InvalidationPattern(
            text, source_kind, shown, where, "malformed", str(exc).removeprefix("freshcache: ")
        )
    return InvalidationPattern(text, source_kind, shown, where, kind)


def is_constant(value: object) -> bool:
    return value is not NOT_CONSTANT
