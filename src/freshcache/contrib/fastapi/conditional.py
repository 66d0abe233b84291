"""HTTP validators: entity tags, ``If-None-Match`` and the request's ``Cache-Control``."""

from __future__ import annotations

import secrets

#: Longest If-None-Match header read: a client sends a handful of tags, never kilobytes.
_MAX_IF_NONE_MATCH = 8192


def new_etag() -> str:
    """A strong entity tag never issued before (96 random bits): one per computed entry."""
    return f'"{secrets.token_hex(12)}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def if_none_match_matches(header: str | None, etag: str) -> bool:
    """Whether ``If-None-Match: header`` matches ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if not header or len(header) > _MAX_IF_NONE_MATCH:
        return False
    if header.strip() == "*":
        return True
    current = _opaque(etag)
    return any(_opaque(tag) == current for tag in header.split(","))


def asks_for_fresh(cache_control: str | None, pragma: str | None) -> bool:
    """``Cache-Control: no-cache`` (or, without Cache-Control, ``Pragma: no-cache``)."""
    if cache_control is not None:
        directives = {d.split("=", 1)[0].strip().lower() for d in cache_control.split(",")}
        return "no-cache" in directives
    return pragma is not None and pragma.strip().lower() == "no-cache"
