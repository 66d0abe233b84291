"""Audit settings: defaults, overridden by ``[tool.freshcache.audit]`` and then by the command line.

Example (in the audited project's pyproject.toml)::

    [tool.freshcache.audit]
    ttl_min = 5          # seconds; shorter TTLs make the cache pointless
    ttl_max = 3600       # seconds; the worst-case staleness of a read no write covers
    hit_ratio_warn = 0.5 # live: warn below this hit ratio (the original audit's alert level)

    # A cache wrapper the heuristics do not recognise, declared so it is analysed:
    [[tool.freshcache.audit.wrappers]]
    name = "app.caching.memoize"   # dotted path (or the bare name) of the decorator
    kind = "read"                  # "read" (a cached function) or "invalidate"
    ttl = "seconds"                # the decorator argument holding the TTL (name or position)
    key = "prefix"                 # the argument holding the key prefix or template
    key_args = "all"               # which function arguments reach the key: "all", "none",
                                   # or a list of parameter names
    [[tool.freshcache.audit.wrappers]]
    name = "app.caching.forget"
    kind = "invalidate"
    pattern = 0                    # the argument holding the pattern
    mechanism = "scan"             # how it deletes: "scan" (SCAN/KEYS + DEL), "entry", "generation"
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

#: Parameter annotations (last dotted name) that mark a database session or a request.
SESSION_TYPES = frozenset(
    {"AsyncSession", "Session", "AsyncConnection", "Connection", "scoped_session", "Engine"}
)
REQUEST_TYPES = frozenset({"Request", "WebSocket", "HTTPConnection", "BackgroundTasks"})
#: Parameter names that mark them when there is no annotation.
SESSION_NAMES = frozenset({"session", "db", "db_session", "conn", "connection"})
REQUEST_NAMES = frozenset({"request", "req", "websocket"})


@dataclasses.dataclass(frozen=True, slots=True)
class Wrapper:
    """A user-declared cache decorator (``[[tool.freshcache.audit.wrappers]]``)."""

    name: str  # "app.caching.memoize" or "memoize"
    kind: str  # "read" | "invalidate"
    ttl: str | int | None = None
    key: str | int | None = None
    key_args: tuple[str, ...] | str = "all"  # "all" | "none" | parameter names
    pattern: str | int | None = 0
    mechanism: str = "scan"

    def matches(self, qualified: str | None, bare: str) -> bool:
        if "." in self.name:
            return qualified is not None and (
                qualified == self.name or qualified.endswith("." + self.name)
            )
        return bare == self.name


@dataclasses.dataclass(frozen=True, slots=True)
class AuditConfig:
    ttl_min: float = 1.0
    ttl_max: float = 86_400.0
    hit_ratio_warn: float = 0.5
    #: Largest number of keys the live scan reads (it is sampled, never a full walk of a big
    #: keyspace: SCAN with COUNT, stopped here).
    live_sample: int = 10_000
    wrappers: tuple[Wrapper, ...] = ()

    def replace(self, **changes: Any) -> AuditConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


class ConfigError(ValueError):
    """A [tool.freshcache.audit] table that cannot be used (named key and reason)."""


def _number(table: dict[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"[tool.freshcache.audit] {key} must be a number, got {value!r}")
    return float(value)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    here = start.resolve()
    for folder in [here, *here.parents] if here.is_dir() else [*here.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path) -> AuditConfig:
    """Defaults overridden by the ``[tool.freshcache.audit]`` table nearest to ``start``."""
    path = find_pyproject(start)
    if path is None:
        return AuditConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("freshcache", {}).get("audit", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.freshcache.audit] must be a table")
    unknown = set(table) - {"ttl_min", "ttl_max", "hit_ratio_warn", "live_sample", "wrappers"}
    if unknown:
        raise ConfigError(f"{path}: unknown [tool.freshcache.audit] keys {sorted(unknown)}")
    base = AuditConfig()
    config = AuditConfig(
        ttl_min=_number(table, "ttl_min", base.ttl_min),
        ttl_max=_number(table, "ttl_max", base.ttl_max),
        hit_ratio_warn=_number(table, "hit_ratio_warn", base.hit_ratio_warn),
        live_sample=int(_number(table, "live_sample", base.live_sample)),
        wrappers=_wrappers(path, table.get("wrappers", [])),
    )
    validate(config)
    return config


_WRAPPER_KEYS = frozenset({"name", "kind", "ttl", "key", "key_args", "pattern", "mechanism"})


def _wrappers(path: Path, raw: Any) -> tuple[Wrapper, ...]:
    where = f"{path}: [[tool.freshcache.audit.wrappers]]"
    if not isinstance(raw, list) or not all(isinstance(w, dict) for w in raw):
        raise ConfigError(f"{where} must be an array of tables")
    out: list[Wrapper] = []
    for n, table in enumerate(raw, 1):
        unknown = set(table) - _WRAPPER_KEYS
        if unknown:
            raise ConfigError(f"{where} #{n}: unknown keys {sorted(unknown)}")
        name = table.get("name")
        if not isinstance(name, str) or not name.strip(". "):
            raise ConfigError(f"{where} #{n}: name must be the decorator's (dotted) name")
        kind = table.get("kind")
        if kind not in ("read", "invalidate"):
            raise ConfigError(f"{where} #{n} ({name}): kind must be 'read' or 'invalidate'")
        for arg in ("ttl", "key", "pattern"):
            value = table.get(arg)
            if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
                raise ConfigError(
                    f"{where} #{n} ({name}): {arg} must be an argument name or position"
                )
        key_args = table.get("key_args", "all")
        if isinstance(key_args, list) and all(isinstance(a, str) for a in key_args):
            key_args = tuple(key_args)
        elif key_args not in ("all", "none"):
            raise ConfigError(
                f"{where} #{n} ({name}): key_args must be 'all', 'none' or a list of names"
            )
        mechanism = table.get("mechanism", "scan")
        if mechanism not in ("scan", "entry", "generation"):
            raise ConfigError(
                f"{where} #{n} ({name}): mechanism must be 'scan', 'entry' or 'generation'"
            )
        out.append(
            Wrapper(
                name=name,
                kind=kind,
                ttl=table.get("ttl"),
                key=table.get("key"),
                key_args=key_args,
                pattern=table.get("pattern", 0),
                mechanism=mechanism,
            )
        )
    return tuple(out)


def validate(config: AuditConfig) -> None:
    if config.ttl_min <= 0 or config.ttl_max < config.ttl_min:
        raise ConfigError(
            f"TTL bounds must satisfy 0 < ttl_min <= ttl_max, got {config.ttl_min:g} and "
            f"{config.ttl_max:g}"
        )
    if not 0 <= config.hit_ratio_warn <= 1:
        raise ConfigError(f"hit_ratio_warn must be between 0 and 1, got {config.hit_ratio_warn}")
    if config.live_sample < 1:
        raise ConfigError(f"live_sample must be at least 1, got {config.live_sample}")
