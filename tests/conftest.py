"""Session-wide fixtures: the servers the tests talk to, and fault-injection proxies.

By default every server is private to the test run (a child process on a free port of
127.0.0.1, its data in a temp dir), started on first use and stopped at the end. The
environment can point the run at existing servers instead:

- ``REDIS_URL``: the Redis behind ``redis_url``. It may be shared, so tests that use
  ``redis_url`` keep their keys under ``unique_namespace`` and NEVER flush. A test that stops,
  restarts, pauses or flushes Redis uses ``private_redis``, which is always its own server.
- ``DATABASE_URL``: the PostgreSQL behind ``postgres_url`` (``postgres://``, ``postgresql://``
  or ``postgresql+<driver>://``; the fixture always returns the ``postgresql+asyncpg://`` form).
- ``REDIS_CLUSTER_URL``: the cluster behind ``redis_cluster_url`` (``redis+cluster://h:p,...``).
- ``CI=true`` (or ``1``): a server binary that is missing fails the tests that need it;
  without CI they are skipped, with the reason.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# `support` lives beside this file. Under pytest's default import mode this directory is
# already on sys.path; appending it (never prepending: it must not shadow installed packages)
# keeps the import working under --import-mode=importlib or if tests/ becomes a package.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.append(_TESTS_DIR)

from support import ci_strict, require  # noqa: E402
from support.proxy import FaultProxy  # noqa: E402
from support.servers import (  # noqa: E402
    PostgresServer,
    RedisCluster,
    RedisServer,
    postgres_os_user,
    postgres_version,
    redis_server_version,
    which_or_none,
)

# What this run started, and how long each start took: printed in the terminal summary.
_STARTED: list[str] = []


def _redact(url: str) -> str:
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)


def _timed_start(label: str, start: Callable[[], None], where: Callable[[], str]) -> None:
    began = time.perf_counter()
    start()
    _STARTED.append(f"{label} on {where()}: started in {time.perf_counter() - began:.2f} s")


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's private redis-server (skipped when REDIS_URL names another one)."""
    if os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is set, so there is no private session redis-server")
    require("redis-server")
    server = RedisServer()
    _timed_start(f"redis: private redis-server {server.version}", server.start, lambda: server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """REDIS_URL, or the private session server's URL. Use unique keys; never flush."""
    from_env = os.environ.get("REDIS_URL")
    if from_env:
        return from_env
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A fresh redis-server for one test: stop, kill, restart, pause or flush it freely."""
    require("redis-server")
    with RedisServer() as server:
        yield server


# -- PostgreSQL ----------------------------------------------------------------------------

_PG_SCHEME = re.compile(r"^(postgres|postgresql)(\+[\w.]+)?://", re.IGNORECASE)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL (skipped when DATABASE_URL names another one)."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is set, so there is no private session PostgreSQL")
    require("initdb", "postgres")
    server = PostgresServer()

    def where() -> str:
        return f"{server.host}:{server.port} (as OS user {server.os_user or 'self'})"

    _timed_start(f"postgres: private PostgreSQL {server.version}", server.start, where)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """DATABASE_URL, or the private server's: always as `postgresql+asyncpg://...`."""
    from_env = os.environ.get("DATABASE_URL")
    if from_env:
        if not _PG_SCHEME.match(from_env):
            pytest.fail(
                f"DATABASE_URL={_redact(from_env)} is not a PostgreSQL URL: unset it to use "
                "a private PostgreSQL, or point it at one",
                pytrace=False,
            )
        return _PG_SCHEME.sub("postgresql+asyncpg://", from_env, count=1)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_url: str) -> str:
    """The same database as a plain `postgresql://` DSN, for asyncpg.connect() or psycopg."""
    return postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)


# -- Redis Cluster -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """The session's private 3+3 cluster, started on first use. Do not kill its nodes: a test
    that needs a failover starts its own RedisCluster (see tests/support/test_support.py)."""
    if os.environ.get("REDIS_CLUSTER_URL"):
        pytest.skip("REDIS_CLUSTER_URL is set, so there is no private session cluster")
    require("redis-server", "redis-cli")
    cluster = RedisCluster()
    _timed_start(
        f"redis cluster: private 3+3 cluster of redis-server {redis_server_version()}",
        cluster.start,
        lambda: cluster.url,
    )
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(request: pytest.FixtureRequest) -> str:
    """REDIS_CLUSTER_URL, or the private session cluster's `redis+cluster://...` URL."""
    from_env = os.environ.get("REDIS_CLUSTER_URL")
    if from_env:
        return from_env
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url


# -- Per-test helpers ----------------------------------------------------------------------


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str, int], FaultProxy]]:
    """`fault_proxy(host, port)` -> a started FaultProxy in front of it, closed after the test."""
    proxies: list[FaultProxy] = []

    def make(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def unique_namespace() -> str:
    """A fresh key namespace, e.g. 't-1a2b3c4d': the only keys a test may touch in redis_url."""
    return f"t-{uuid.uuid4().hex[:8]}"


# -- Reporting -----------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines: list[str] = []
    redis_version = redis_server_version()
    if os.environ.get("REDIS_URL"):
        lines.append(f"redis: REDIS_URL={_redact(os.environ['REDIS_URL'])} (shared: never flush)")
    elif redis_version:
        lines.append(
            f"redis: private redis-server {redis_version} on 127.0.0.1:<free port>, "
            "started on first use"
        )
    else:
        lines.append("redis: redis-server not found")

    if os.environ.get("DATABASE_URL"):
        lines.append(f"postgres: DATABASE_URL={_redact(os.environ['DATABASE_URL'])}")
    elif which_or_none("initdb") and (pg_version := postgres_version()):
        initdb = which_or_none("initdb") or ""
        bindir = os.path.dirname(os.path.realpath(initdb))
        try:
            account = postgres_os_user()
            user = f"OS user {account.pw_name}" if account else "ourselves"
        except RuntimeError as exc:
            user = f"nobody: {exc}"
        lines.append(
            f"postgres: private PostgreSQL {pg_version} from {bindir} as {user} "
            "on 127.0.0.1:<free port>, started on first use"
        )
    else:
        lines.append("postgres: initdb/postgres not found")

    if os.environ.get("REDIS_CLUSTER_URL"):
        lines.append(f"redis cluster: REDIS_CLUSTER_URL={_redact(os.environ['REDIS_CLUSTER_URL'])}")
    elif redis_version and which_or_none("redis-cli"):
        lines.append(
            f"redis cluster: private 3 primaries + 3 replicas (redis-server {redis_version}), "
            "started on first use"
        )
    else:
        lines.append("redis cluster: redis-server or redis-cli not found")

    if ci_strict():
        lines.append(f"CI={os.environ.get('CI')}: missing services fail, never skip")
    else:
        lines.append("CI not set: tests that need a missing service are skipped")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _STARTED:
        terminalreporter.write_sep("-", "servers started by this run")
        for line in _STARTED:
            terminalreporter.write_line(line)
