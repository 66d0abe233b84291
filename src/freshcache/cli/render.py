"""What the commands print: tables for people, JSON for programs.

User data (keys, prefixes, patterns, values) is printed verbatim: the console has markup and
emoji off, so ``user:id:42`` stays ``user:id:42`` (Rich would print an emoji for ``:id:``) and
``[bold]`` stays ``[bold]``; colour comes only from styled ``Text`` spans we build. Keys are
never cut: in listings they come last on their line and the line is not wrapped, so what is
shown pastes back into ``freshcache inspect``; prefixes in tables keep their full width, the
numbers are shortened (``12.3k``) when the terminal is narrow (80 columns when piped), and
when even that does not fit each prefix gets a line of its own with its numbers below it.

The one exception to "verbatim": control characters (which freshcache's own keys never
contain, since template values are escaped) are shown as ``\\xNN``, so a key planted by
someone else cannot move the cursor or rewrite the terminal. ``--json`` has them exactly.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from freshcache.audit.live import KeySample, MetricsSnapshot, group_of

LOW_HIT_RATIO = 0.5  # the original audit's alert level
_VALUE_LIMIT = 4000  # characters of a value shown by inspect (the JSON form has it whole)


_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]}


def printable(text: str) -> str:
    """``text`` as it is, but with control characters (ESC, newline, ...) as ``\\xNN``."""
    return text.translate(_CONTROL)


def console() -> Console:
    """stdout, with markup, emoji and highlighting off: user data goes out as data."""
    return Console(markup=False, emoji=False, highlight=False)


def print_json(document: Any, *, compact: bool = False) -> None:
    text = json.dumps(document, default=str, indent=None if compact else 2)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ttl_text(ttl_ms: int | None) -> str:
    if ttl_ms is None:
        return "no expiry"
    return f"{ttl_ms / 1000:.1f} s" if ttl_ms < 600_000 else f"{ttl_ms / 60_000:.0f} min"


def compact_number(value: float) -> str:
    """At most five characters: 999, 12.3k, 4.5M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:g}"


def full_number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


# -- keys ---------------------------------------------------------------------------------------


def key_lines(sampled: KeySample) -> list[Text]:
    """One line per key: TTL and size first, the whole key last."""
    ttls = [ttl_text(info.ttl_ms) for info in sampled.keys]
    sizes = ["-" if info.size is None else str(info.size) for info in sampled.keys]
    ttl_width = max([len("TTL"), *map(len, ttls)])
    size_width = max([len("bytes"), *map(len, sizes)])
    header = Text(f"{'TTL':>{ttl_width}}  {'bytes':>{size_width}}  key", style="bold")
    lines = [header]
    for info, ttl, size in zip(sampled.keys, ttls, sizes, strict=True):
        line = Text()
        line.append(f"{ttl:>{ttl_width}}", style="red" if info.ttl_ms is None else "")
        line.append(f"  {size:>{size_width}}  ")
        line.append(printable(info.key))
        lines.append(line)
    return lines


def keys_document(sampled: KeySample, namespace: str, pattern: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "pattern": pattern,
        "complete": sampled.complete,
        "keys": [
            {"key": info.key, "ttl_ms": info.ttl_ms, "bytes": info.size} for info in sampled.keys
        ],
    }


# -- stats --------------------------------------------------------------------------------------


def _numeric_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[tuple[str, Sequence[float], Text | None]],
    width: int,
    caption: str,
) -> RenderableType:
    """Per-prefix numbers that fit ``width`` with every prefix whole.

    ``rows`` are (prefix, numbers, last cell or None); a last cell (a ratio) is kept whole.
    In order: a table with whole numbers; the same with shortened numbers (``12.3k``); and,
    when even that is too wide (long prefixes, 80 columns), one record per prefix: the prefix
    on its own line, then its numbers as ``name=value`` folded onto indented lines.
    """

    def cells_with(fmt: Callable[[float], str]) -> list[list[str]]:
        return [
            [prefix, *map(fmt, numbers), *([] if tail is None else [tail.plain])]
            for prefix, numbers, tail in rows
        ]

    def table_width(cells: list[list[str]]) -> int:
        widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
        return sum(widths) + 3 * len(headers) + 1  # borders and padding

    for fmt in (full_number, compact_number):
        cells = cells_with(fmt)
        if table_width(cells) <= width:
            return _table(title, headers, cells, rows, caption)
    return _records(title, headers, cells_with(full_number), rows, width, caption)


def _table(
    title: str,
    headers: Sequence[str],
    cells: list[list[str]],
    rows: Sequence[tuple[str, Sequence[float], Text | None]],
    caption: str,
) -> Table:
    grid = Table(title=title, title_justify="left", caption=caption)
    grid.add_column(headers[0], no_wrap=True)
    for name in headers[1:]:
        grid.add_column(name, justify="right", no_wrap=True)
    for row, (prefix, _, tail) in zip(cells, rows, strict=True):
        numbers = row[1 : len(headers) if tail is None else -1]
        grid.add_row(Text(printable(prefix)), *numbers, *([] if tail is None else [tail]))
    return grid


def _records(
    title: str,
    headers: Sequence[str],
    cells: list[list[str]],
    rows: Sequence[tuple[str, Sequence[float], Text | None]],
    width: int,
    caption: str,
) -> Group:
    indent = "  "
    lines: list[Text] = [Text(title, style="italic")]
    for row, (prefix, _, tail) in zip(cells, rows, strict=True):
        lines.append(Text(printable(prefix), style="bold", no_wrap=True, overflow="ignore"))
        fields = [Text(f"{name}={value}") for name, value in zip(headers[1:], row[1:], strict=True)]
        if tail is not None:
            last = headers[-1].replace(" ", "_")
            fields[-1] = Text(f"{last}=").append_text(tail)
        line = Text(indent)
        for field in fields:
            if len(line) > len(indent) and len(line) + 2 + len(field) > width:
                lines.append(line)
                line = Text(indent)
            if len(line) > len(indent):
                line.append("  ")
            line.append_text(field)
        lines.append(line)
    lines.append(Text(caption, style="dim"))
    return Group(*lines)


_METRIC_FIELDS = ("hits", "misses", "stale", "sets", "invalidations", "errors", "bypasses")
_METRIC_HEADERS = ("prefix", "hits", "misses", "stale", "sets", "invalidations", "errors",
                   "bypasses", "hit ratio")  # fmt: skip


def metrics_table(snapshot: MetricsSnapshot, width: int) -> RenderableType:
    rows = []
    for p in snapshot.prefixes:
        ratio = Text("-" if p.hit_ratio is None else f"{p.hit_ratio:.1%}")
        if p.hit_ratio is not None and p.hit_ratio < LOW_HIT_RATIO:
            ratio.stylize("yellow")
        rows.append((p.prefix or "(none)", [getattr(p, f) for f in _METRIC_FIELDS], ratio))
    breaker = snapshot.breaker_state or "not reported"
    pending = snapshot.pending_invalidations
    caption = f"breaker: {breaker}; pending invalidations: " + (
        "not reported" if pending is None else str(pending)
    )
    title = "freshcache counters (from /metrics)"
    return _numeric_table(title, _METRIC_HEADERS, rows, width, caption)


def metrics_document(snapshot: MetricsSnapshot) -> dict[str, Any]:
    return {
        "source": "metrics",
        "breaker_state": snapshot.breaker_state,
        "pending_invalidations": snapshot.pending_invalidations,
        "prefixes": [
            {"prefix": p.prefix, **{f: getattr(p, f) for f in _METRIC_FIELDS},
             "hit_ratio": p.hit_ratio}
            for p in snapshot.prefixes
        ],
    }  # fmt: skip


def _groups(sampled: KeySample) -> list[tuple[str, int, int, int]]:
    groups: dict[str, list[int]] = {}
    for info in sampled.keys:
        slot = groups.setdefault(group_of(info.key), [0, 0, 0])
        slot[0] += 1
        slot[1] += 1 if info.ttl_ms is None else 0
        slot[2] += info.size or 0
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1][2], kv[0]))
    return [(prefix, n, orphans, size) for prefix, (n, orphans, size) in ordered]


def redis_table(sampled: KeySample, namespace: str, width: int) -> RenderableType:
    rows = [(prefix, [n, orphans, size], None) for prefix, n, orphans, size in _groups(sampled)]
    headers = ("prefix", "keys", "no TTL", "bytes")
    caption = f"{len(sampled.keys)} key(s)" + (
        "" if sampled.complete else " sampled: the scan stopped at the limit"
    )
    title = f"keys of namespace {namespace} (sampled SCAN)"
    return _numeric_table(title, headers, rows, width, caption)


def redis_document(sampled: KeySample, namespace: str) -> dict[str, Any]:
    return {
        "source": "redis",
        "namespace": namespace,
        "sampled_keys": len(sampled.keys),
        "complete": sampled.complete,
        "prefixes": [
            {"prefix": prefix, "keys": n, "without_ttl": orphans, "bytes": size}
            for prefix, n, orphans, size in _groups(sampled)
        ],
    }


# -- inspect ------------------------------------------------------------------------------------


def inspect_table(info: dict[str, Any]) -> Table:
    # The key is printed above the table by the caller, on a line of its own (never wrapped).
    grid = Table(show_header=False)
    grid.add_column("field", style="bold", no_wrap=True)
    grid.add_column("value", overflow="fold")
    state = str(info.get("state"))
    colour = {"entry": "green", "tombstone": "yellow", "corrupt": "red"}.get(state, "dim")
    grid.add_row("state", Text(state, style=colour))
    valid = bool(info.get("valid"))
    grid.add_row("valid", Text("yes" if valid else "no", style="green" if valid else "red"))
    grid.add_row("TTL", ttl_text(info.get("ttl_ms")) if state != "absent" else "-")
    grid.add_row("size", f"{info.get('size', 0)} bytes")
    stored = info.get("tokens_stored") or []
    current = info.get("tokens_current") or []
    for i, token in enumerate(stored):
        now = current[i] if i < len(current) else None
        cell = Text(str(token))
        if token != now:
            cell.append(f"  (current: {now})", style="red")
        grid.add_row(f"token {i}", cell)
    value = info.get("value")
    if value is not None:
        text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        if len(text) > _VALUE_LIMIT:
            text = text[:_VALUE_LIMIT] + "\n... (--json prints the whole value)"
        grid.add_row("value", Text(text))
    return grid
