"""Which dataset history a Redis server holds, from its ``INFO`` answers (pure).

A restart gives a server a new ``run_id`` (whatever snapshot it loaded); a replica promoted by
``REPLICAOF NO ONE`` answers with its own ``run_id`` and a new ``master_replid``. Either way the
identity differs from the one the namespace was written under, which is what the cache checks.
"""

from __future__ import annotations


def _field(info: bytes | str | dict[str, object], name: str) -> str:
    if isinstance(info, dict):  # redis-py parses INFO into a dict
        return str(info.get(name, ""))
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""


def identity_of(
    server: bytes | str | dict[str, object], replication: bytes | str | dict[str, object]
) -> bytes:
    """``run_id:master_replid`` as bytes."""
    return f"{_field(server, 'run_id')}:{_field(replication, 'master_replid')}".encode()
