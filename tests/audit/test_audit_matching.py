"""The pieces under the tables: glob matching of key templates, and static resolution."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from audit_support import ROOT

from freshcache.audit import globmatch
from freshcache.audit.model import Hole, HoleKind, SymText
from freshcache.audit.resolve import NOT_CONSTANT, ModuleInfo, Resolver, index_module

DAY = Hole(HoleKind.TEMPLATE, "event_date")
HASH = Hole(HoleKind.HASH, "args_hash")
AVAILABILITY = SymText(("booking:availability:", DAY, ":get_slots:", HASH))
STATS = SymText(("booking:stats:get_stats:", HASH))


def lit(text: str) -> SymText:
    return SymText.literal(text)


@pytest.mark.parametrize(
    ("key", "pattern", "matches", "all_keys"),
    [
        (STATS, lit("booking:*"), True, True),
        (STATS, lit("booking:stats:*"), True, True),
        (STATS, lit("bookings:stats:*"), False, False),
        (STATS, lit("*:stats:*"), True, True),
        (STATS, lit("booking:stat?:*"), True, True),
        (STATS, lit("booking:[st]tats:*"), True, True),
        (STATS, lit("booking:[^s]tats:*"), False, False),
        (AVAILABILITY, lit("booking:stats:*"), False, False),
        (AVAILABILITY, lit("booking:availability:*"), True, True),
        (AVAILABILITY, lit("booking:availability:2025-10-11:*"), True, False),
        (AVAILABILITY, SymText(("booking:availability:", DAY, ":*")), True, False),
        # An escaped value is one segment: it can never reach across a ':'.
        (STATS, SymText(("booking:", Hole(HoleKind.ESCAPED, "x"), ":get_stats:*")), True, False),
        (STATS, SymText(("booking:", Hole(HoleKind.ESCAPED, "x"), ":*")), True, False),
        (STATS, SymText(("booking:", Hole(HoleKind.ESCAPED, "x"), ":get_stats")), False, False),
        # A raw value can: that is the glob injection.
        (STATS, SymText(("booking:", Hole(HoleKind.RAW, "x"), ":*")), True, False),
        (STATS, lit("booking:stats:get_stats"), False, False),  # exact key: needs the hash
    ],
)
def test_pattern_against_key_template(
    key: SymText, pattern: SymText, matches: bool, all_keys: bool
) -> None:
    assert globmatch.matches(key, pattern) is matches
    assert globmatch.covers_all(key, pattern) is all_keys


def test_key_templates_that_collide() -> None:
    daily = SymText(("reports:", Hole(HoleKind.TEMPLATE, "kind"), ":totals:", HASH))
    weekly = lit("reports:weekly:totals:") + SymText((HASH,))
    other = lit("reports:weekly:summary:") + SymText((HASH,))
    assert globmatch.intersects(globmatch.compile_key(daily), globmatch.compile_key(weekly))
    assert not globmatch.intersects(globmatch.compile_key(daily), globmatch.compile_key(other))


def module(source: str, tmp_path: Path) -> tuple[Resolver, ModuleInfo, ast.Module]:
    path = tmp_path / "m.py"
    path.write_text(source)
    tree = ast.parse(source)
    info = ModuleInfo("m", path, "m.py", tree)
    index_module(info)
    return Resolver({"m": info}), info, tree


def test_constants(tmp_path: Path) -> None:
    resolver, info, _ = module(
        "import datetime as dt\nfrom datetime import timedelta\nV = 'v1'\nN = 5\n"
        "TWICE = 1\nTWICE = 2\n",
        tmp_path,
    )

    def value(expr: str) -> object:
        return resolver.constant(info, ast.parse(expr, mode="eval").body)

    assert value("f'booking:{V}:stats'") == "booking:v1:stats"
    assert value("N * 60") == 300
    assert value("'a' + V") == "av1"
    assert value("timedelta(minutes=N)") == 300.0
    assert value("dt.timedelta(hours=1).total_seconds()") == 3600.0
    assert value("TWICE") is NOT_CONSTANT  # assigned twice: depends on the path taken
    assert value("settings.ttl") is NOT_CONSTANT


def test_symbolic_patterns(tmp_path: Path) -> None:
    resolver, info, _ = module(
        "import freshcache\nfrom freshcache import pattern as p, escape\n", tmp_path
    )

    def text(expr: str) -> str:
        sym = resolver.symtext(info, ast.parse(expr, mode="eval").body)
        assert sym is not None
        kinds = ",".join(h.kind.value for h in sym.holes)
        return f"{sym.display}|{kinds}"

    assert text("p('booking', 'a:b', day, '*')") == "booking:a%3Ab:{day}:*|escaped"
    assert text("freshcache.pattern('x', '*')") == "x:*|"
    assert text("f'booking:{day}:*'") == "booking:{day}:*|raw"
    assert text("f'booking:{escape(day)}:*'") == "booking:{escape(day)}:*|escaped"
    assert text("'booking:' + day + ':*'") == "booking:{day}:*|raw"
    assert text("'booking:{}:*'.format(day)") == "booking:{'booking:{}:*'.format(day)}:*|raw"
    assert text("'booking:%s:*' % day") == "booking:{day}:*|raw"


def test_repository_layout_rule() -> None:
    """The audit imports nothing that talks to a server, except its live checks."""
    audit = ROOT / "src" / "freshcache" / "audit"
    for path in sorted(audit.glob("*.py")):
        if path.name == "live.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {
            (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        talks = {
            m
            for m in imported
            if m.split(".")[0] in {"redis", "httpx", "socket", "http"}
            or m == "urllib.request"
            or m in {"freshcache.cache", "freshcache.backends", "freshcache.audit.live"}
            or m.startswith("freshcache.backends.")
        }
        assert not talks, f"{path.name} imports {sorted(talks)}"
