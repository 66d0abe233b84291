"""Engine and sessions from the database URL: SQLite (aiosqlite) by default, PostgreSQL (asyncpg).

SQLite notes. The file is opened in WAL mode with a busy timeout. pysqlite's own transaction
handling is switched off (it does not emit BEGIN before SELECT, which breaks SAVEPOINT and
read-then-write logic); we emit BEGIN ourselves, and ``BEGIN IMMEDIATE`` for write sessions,
so a write transaction takes SQLite's write lock before its first read: two writers
serialise instead of both reading the same free seat (the "locking read" on SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_WRITE_OPTION = "myhibachi_write"


def _prepare_sqlite_path(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """One engine, a session factory for reads and one for writes (same pool)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            _prepare_sqlite_path(url)
            kwargs["connect_args"] = {"timeout": 15}
        self.engine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        # Same pool; on SQLite its transactions start with BEGIN IMMEDIATE.
        self.write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self.reads = async_sessionmaker(self.engine, expire_on_commit=False)
        self.writes = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; its transaction (if any) is rolled back on exit."""
        async with self.reads() as session:
            yield session

    def write_session(self) -> AsyncSession:
        """A session for writes; wrap it in ``unit_of_work(session)`` to commit."""
        return self.writes()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
