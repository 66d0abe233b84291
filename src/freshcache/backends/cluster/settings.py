"""The ``redis+cluster://`` URL: parsed and checked into ``ClusterSettings`` (docs/cluster.md)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from freshcache.backends.cluster.layout import DEFAULT_SHARDS, MAX_SHARDS


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSettings:
    """A parsed ``redis+cluster://`` URL."""

    seeds: tuple[str, ...]  # "host:port" of the nodes to ask for the topology first
    tls: bool
    userinfo: str  # "user:password@" as written (still quoted), or ""
    query: str  # options for every node's redis-py pool, without freshcache's own
    shards: int
    wait_replicas: int | None = None  # replicas that must acknowledge an invalidation; None: all

    def node_url(self, address: str) -> str:
        host, port = split_address(address)
        if ":" in host:
            host = f"[{host}]"
        query = f"?{self.query}" if self.query else ""
        return f"{'rediss' if self.tls else 'redis'}://{self.userinfo}{host}:{port}/0{query}"


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    return f"{host}:{port}"


def _redacted(url: str) -> str:
    """``url`` for an error message: the password is not the reader's business."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def parse_cluster_url(url: str) -> ClusterSettings:
    """``redis+cluster://[user:password@]host:port[,host:port...][/0][?shards=N&...]``.

    ``shards`` (default 16) and ``wait_replicas`` (``all``, the default, or a number) are
    freshcache's; every other query option is redis-py's, applied to each node. Raises
    ``ValueError`` naming the problem.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("redis+cluster", "rediss+cluster"):
        raise ValueError(
            f"freshcache: {_redacted(url)!r} is not a redis+cluster:// or rediss+cluster:// URL"
        )
    parts = urlsplit("//" + rest)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    seeds: list[str] = []
    for item in hosts.split(","):
        host, port = _host_port(item.strip(), url)
        seeds.append(join_address(host, port))
    if parts.path not in ("", "/", "/0"):
        raise ValueError(
            f"freshcache: {_redacted(url)!r} names database {parts.path.strip('/')!r}; "
            "Redis Cluster has only database 0"
        )
    shards = DEFAULT_SHARDS
    wait_replicas: int | None = None
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "shards":
            try:
                shards = int(value)
            except ValueError:
                shards = 0
            if not 1 <= shards <= MAX_SHARDS:
                raise ValueError(
                    f"freshcache: shards={value!r} in {_redacted(url)!r}: "
                    f"use an integer in 1..{MAX_SHARDS}"
                )
        elif name == "wait_replicas":
            wait_replicas = _wait_replicas(value, url)
        elif name == "db":
            if value != "0":
                raise ValueError(
                    f"freshcache: db={value!r} in {_redacted(url)!r}: Redis Cluster has only 0"
                )
        else:
            passed.append((name, value))
    return ClusterSettings(
        seeds=tuple(dict.fromkeys(seeds)),
        tls=scheme.lower() == "rediss+cluster",
        userinfo=f"{userinfo}@" if userinfo else "",
        query=urlencode(passed),
        shards=shards,
        wait_replicas=wait_replicas,
    )


def _wait_replicas(value: str, url: str) -> int | None:
    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(
            f"freshcache: wait_replicas={value!r} in {_redacted(url)!r}: "
            "use 'all' or a number of replicas"
        )
    return count


def _host_port(item: str, url: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    if not host:
        raise ValueError(f"freshcache: empty host in {_redacted(url)!r}")
    try:
        port = int(port_text) if port_text else 6379
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ValueError(f"freshcache: bad port {port_text!r} for {host!r} in {_redacted(url)!r}")
    return host, port


def validate_options(settings: ClusterSettings, pool: Any) -> None:
    """Build (not connect) one connection, so that a bad URL option fails now, by name, and not
    as a TypeError inside redis-py on the first call."""
    try:
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"freshcache: bad option in cluster URL ({settings.query}): {exc}"
        ) from None
