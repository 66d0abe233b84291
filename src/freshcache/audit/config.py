"""Audit settings: defaults, overridden by ``[tool.freshcache.audit]`` and then by the command line.

Example (in the audited project's pyproject.toml)::

    [tool.freshcache.audit]
    ttl_min = 5          # seconds; shorter TTLs make the cache pointless
    ttl_max = 3600       # seconds; the worst-case staleness of a read no write covers
    hit_ratio_warn = 0.5 # live: warn below this hit ratio (the original audit's alert level)
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
class AuditConfig:
    ttl_min: float = 1.0
    ttl_max: float = 86_400.0
    hit_ratio_warn: float = 0.5
    #: Largest number of keys the live scan reads (it is sampled, never a full walk of a big
    #: keyspace: SCAN with COUNT, stopped here).
    live_sample: int = 10_000

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
    unknown = set(table) - {"ttl_min", "ttl_max", "hit_ratio_warn", "live_sample"}
    if unknown:
        raise ConfigError(f"{path}: unknown [tool.freshcache.audit] keys {sorted(unknown)}")
    base = AuditConfig()
    config = AuditConfig(
        ttl_min=_number(table, "ttl_min", base.ttl_min),
        ttl_max=_number(table, "ttl_max", base.ttl_max),
        hit_ratio_warn=_number(table, "hit_ratio_warn", base.hit_ratio_warn),
        live_sample=int(_number(table, "live_sample", base.live_sample)),
    )
    validate(config)
    return config


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
