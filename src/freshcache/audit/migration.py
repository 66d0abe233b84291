"""The report as a migration plan: every read and write found, with the freshcache code that
replaces it (decorator, key template, options) and what changes on the way."""

from __future__ import annotations

from freshcache.audit.adapters.base import annotation_names, is_session_or_request
from freshcache.audit.model import CachedRead, HoleKind, MigrationStep, Write

_SESSIONY = {"AsyncSession", "Session", "Request", "Response", "BackgroundTasks", "Connection"}


def _ttl(read: CachedRead) -> str:
    if read.ttl is not None and read.ttl > 0:
        return f"{read.ttl:g}"
    if read.ttl_text and read.ttl_source.value == "unresolved":
        return read.ttl_text
    return "60"  # no TTL today: choose one; 60 s is a placeholder the plan says to review


def _template_prefix(read: CachedRead) -> str:
    """A freshcache key_prefix: the literal segments of today's key, then a {field} for every
    argument the read is meant to vary by (those dropped from today's key first)."""
    literal = ""
    if read.prefix is not None:
        for part in read.prefix.parts:
            if isinstance(part, str):
                literal += part
            elif part.kind in (HoleKind.TEMPLATE, HoleKind.RAW, HoleKind.ESCAPED):
                literal += "{" + part.label.split(".")[0].split("[")[0] + "}"
            else:
                break
    literal = literal.strip(":") or read.qualname.rsplit(".", 1)[-1]
    segments = [s for s in literal.replace("|", ":").split(":") if s]
    # Module paths ("app.services") are not segments freshcache accepts; keep their last part.
    segments = [s.rsplit(".", 1)[-1] if "." in s else s for s in segments]
    params = {p.name for p in read.params}
    for name, _why in read.dropped:
        field = "{" + name + "}"
        if field not in segments and name in params:
            segments.append(field)
    return ":".join(segments) or "cache"


def _excluded(read: CachedRead) -> list[str]:
    out = []
    for p in read.params:
        if p.name in ("self", "cls"):
            continue
        if (
            is_session_or_request(p)
            or annotation_names(p.annotation) & _SESSIONY
            or p.name in read.by_identity
        ):
            out.append(p.name)
    return out


def read_replacement(read: CachedRead) -> str:
    args = [f"ttl={_ttl(read)}", f'key_prefix="{_template_prefix(read)}"']
    excluded = _excluded(read)
    if excluded:
        args.append(
            "exclude=("
            + ", ".join(repr(e) for e in excluded)
            + ("," if len(excluded) == 1 else "")
            + ")"
        )
    return "@cached(" + ", ".join(args) + ")"


def _read_notes(read: CachedRead) -> str:
    notes = []
    if read.dropped:
        notes.append("the key gains " + ", ".join(n for n, _ in read.dropped))
    if read.serializer and "default=str" in read.serializer:
        notes.append("dates, Decimals and models come back typed (JSON by the return annotation)")
    if read.serializer == "pickle":
        notes.append("JSON instead of pickle (or pass signing_key=)")
    if read.ttl is None or read.ttl <= 0:
        notes.append("no TTL today: the 60 s shown is a placeholder to review")
    if read.api != "freshcache":
        notes.append("Redis down: freshcache bypasses the cache behind a breaker")
    return "; ".join(notes)


def _pattern_text(write: Write) -> list[str]:
    out = []
    for p in write.patterns:
        if p.text is None:
            out.append(p.source_text)
            continue
        text = ""
        for part in p.text.parts:
            if isinstance(part, str):
                text += part
            else:
                text += "{" + part.label + "}"
        if text.endswith("*") and not text.endswith(":*") and text != "*":
            text = text[:-1].rstrip(":") + ":*"
        out.append(text)
    return out


def write_replacement(write: Write) -> str:
    if any(p.text is None for p in write.patterns):
        # built at run time: say how to build it safely rather than echo a variable name
        return "await cache.invalidate(freshcache.pattern(<segments>, '*'))"
    patterns = ", ".join(repr(p) for p in _pattern_text(write)) or "'...'"
    if write.kind == "decorator":
        return f"@invalidate_cache({patterns})"
    if write.kind == "entry" or all(p.kind == "entry" for p in write.patterns):
        return f"await <cached function>.invalidate(...) or await cache.invalidate({patterns})"
    return f"await cache.invalidate({patterns})"


def _write_notes(write: Write) -> str:
    notes = []
    if any(p.kind == "scan" for p in write.patterns):
        notes.append("O(1) generation token instead of SCAN/KEYS + DEL")
    if any(p.text is not None and p.text.has(HoleKind.RAW) for p in write.patterns):
        notes.append("values go in through a template field or freshcache.pattern() (escaped)")
    if write.commit.name == "BEFORE_CALLER_COMMIT":
        notes.append(
            "run it inside cache.deferred() / unit_of_work(session) so it waits for the commit"
        )
    return "; ".join(notes)


def migration_steps(
    reads: tuple[CachedRead, ...], writes: tuple[Write, ...]
) -> tuple[MigrationStep, ...]:
    steps = [
        MigrationStep(
            read.id, read.location, read.api, "read",
            read.source_text or f"@cached on {read.qualname}",
            read_replacement(read) if read.api != "freshcache" else "(already freshcache)",
            _read_notes(read) if read.api != "freshcache" else "",
        )
        for read in reads
    ] + [
        MigrationStep(
            write.id, write.location, write.api, "write",
            write.source_text or ", ".join(p.source_text for p in write.patterns),
            write_replacement(write) if write.api != "freshcache" else "(already freshcache)",
            _write_notes(write) if write.api != "freshcache" else "",
        )
        for write in writes
    ]  # fmt: skip
    return tuple(steps)
