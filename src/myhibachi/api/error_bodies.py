"""Small 422 bodies: each error names its field and the problem, never the input.

Pydantic's error entries carry the ``input`` that failed, and for a missing field that input
is the whole request body, so one body with seven missing fields came back seven times.
Here an entry keeps its location, message, type and the scalar context of the rule (such
as ``max_length``); every string is cut short (a location can be a key of the input), and
a request lists at most ``max_entries`` errors plus one entry that counts the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MAX_TEXT = 80  # characters of any string that comes back in an error entry
MAX_CONTEXT_TEXT = 40


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _location(loc: Iterable[Any]) -> list[str | int]:
    return [part if isinstance(part, int) else shorten(str(part)) for part in loc]


def _context(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's parameters (limits, patterns, expected values), without objects such as
    the exception a validator raised (its message is the entry's ``msg`` already)."""
    kept: dict[str, Any] = {}
    for name, value in ctx.items():
        if isinstance(value, bool | int | float):
            kept[name] = value
        elif isinstance(value, str):
            kept[name] = shorten(value, MAX_CONTEXT_TEXT)
    return kept


def compact_entry(error: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "loc": _location(error.get("loc", ())),
        "msg": shorten(str(error.get("msg", "invalid")), 2 * MAX_TEXT),
        "type": shorten(str(error.get("type", "value_error"))),
    }
    ctx = error.get("ctx")
    if isinstance(ctx, Mapping) and (kept := _context(ctx)):
        entry["ctx"] = kept
    return entry


def compact_errors(errors: Iterable[Mapping[str, Any]], max_entries: int) -> list[dict[str, Any]]:
    """At most ``max_entries`` compact entries, then one ``too_many_errors`` entry."""
    errors = list(errors)
    shown = [compact_entry(error) for error in errors[:max_entries]]
    hidden = errors[max_entries:]
    if hidden:
        root = _location(hidden[0].get("loc", ("body",)))[:1]
        shown.append(
            {"loc": root, "msg": f"{len(hidden)} more errors not listed", "type": "too_many_errors"}
        )
    return shown
