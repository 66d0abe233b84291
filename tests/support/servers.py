"""Private Redis, Redis Cluster and PostgreSQL servers for tests: one import for all of them.

Each job lives in its own module: `process` (spawning, the atexit and parent-death guards,
free ports, finding binaries), `resp` (a minimal Redis protocol client), `redis_server`,
`cluster` (Redis Cluster orchestration), `pg_wire` (a minimal PostgreSQL protocol client) and
`postgres_server`; fault injection on a real server is in `faults` and `replication` (a
primary + replica pair with a failover). This module re-exports the servers' public names,
so `from support.servers import RedisServer` keeps working.

Nothing here talks to the system services on the default ports (6379, 5432); nothing here
needs redis-py or a PostgreSQL driver: readiness checks speak the wire protocols directly.
"""

from __future__ import annotations

from .cluster import CLUSTER_SLOTS, ClusterNodeInfo, RedisCluster, start_redis_cluster
from .pg_wire import PostgresError
from .postgres_server import PostgresServer, postgres_os_user, postgres_version, start_postgres
from .process import HOST, ServerStartError, find_free_port, which_or_none
from .redis_server import RedisServer, redis_server_version, start_redis
from .resp import RedisReplyError, redis_command

__all__ = [
    "CLUSTER_SLOTS",
    "HOST",
    "ClusterNodeInfo",
    "PostgresError",
    "PostgresServer",
    "RedisCluster",
    "RedisReplyError",
    "RedisServer",
    "ServerStartError",
    "find_free_port",
    "postgres_os_user",
    "postgres_version",
    "redis_command",
    "redis_server_version",
    "start_postgres",
    "start_redis",
    "start_redis_cluster",
    "which_or_none",
]
