"""A private PostgreSQL cluster: initdb into a temp dir, postgres on a free port."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from .pg_wire import PostgresError, pg_query
from .process import (
    HOST,
    ManagedServer,
    ServerStartError,
    end_process,
    find_free_port,
    log_tail,
    spawn,
    track,
    untrack,
    version_of,
    which_or_none,
)


def postgres_os_user() -> pwd.struct_passwd | None:
    """Who runs initdb and postgres: ourselves unless we are root (PostgreSQL refuses root).

    As root: $FRESHCACHE_TEST_PG_USER, else `nobody`, else `postgres`. `nobody` comes first
    on purpose: the cluster trusts every local TCP connection, and a superuser can run
    programs as the server's OS account (COPY ... FROM PROGRAM); as `nobody` that reaches
    nothing, as `postgres` it would reach the system's own PostgreSQL data.
    """
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("FRESHCACHE_TEST_PG_USER")
    for name in [wanted] if wanted else ["nobody", "postgres"]:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerStartError(
        "running as root, and no unprivileged user to run PostgreSQL as "
        f"(tried {wanted or 'nobody, postgres'}; set FRESHCACHE_TEST_PG_USER)"
    )


_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresServer(ManagedServer):
    """A private PostgreSQL cluster: initdb into a temp dir, postgres on 127.0.0.1:<free port>.

    Superuser `postgres`, trust authentication, fsync/synchronous_commit/full_page_writes off
    (nothing here needs to survive a power cut). As root, runs as an unprivileged OS user
    (see postgres_os_user).
    """

    superuser = "postgres"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        bindir: str | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self.port: int = port if port is not None else find_free_port()
        self.bindir = bindir
        self.settings: dict[str, str] = {
            "listen_addresses": host,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.start_timeout = start_timeout
        self.os_user: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        """`postgresql+asyncpg://postgres@127.0.0.1:PORT/DB`; `driver=""` for `postgresql://`."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.superuser}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """The plain libpq form, for asyncpg.connect() or psycopg."""
        return self.url(driver="")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._dir / "postgres.log" if self._dir is not None else None

    @property
    def version(self) -> str | None:
        postgres = self._binary("postgres", required=False)
        return postgres_version(postgres) if postgres else None

    def _binary(self, name: str, *, required: bool = True) -> str | None:
        bindir = self.bindir
        if bindir is None:
            initdb = which_or_none("initdb")
            bindir = os.path.dirname(os.path.realpath(initdb)) if initdb else None
        path = os.path.join(bindir, name) if bindir else which_or_none(name)
        if path and os.access(path, os.X_OK):
            return path
        if required:
            raise ServerStartError(f"{name} not found (looked in {bindir or 'PATH'})")
        return None

    def start(self) -> None:
        if self.running:
            return
        self.stop()  # after a crash: drop the old data directory first
        initdb = self._binary("initdb")
        postgres = self._binary("postgres")
        assert initdb is not None
        assert postgres is not None
        user = postgres_os_user()
        self.os_user = user.pw_name if user else None
        self._dir = Path(tempfile.mkdtemp(prefix="freshcache-pg-"))
        track(self)
        try:
            if user is not None:
                os.chown(self._dir, user.pw_uid, user.pw_gid)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self._dir),
                "LC_ALL": "C",
                "LANG": "C",
            }
            data = self._dir / "data"
            assert self.log_path is not None
            init = spawn(
                [initdb, "-D", str(data), "-U", self.superuser, "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync"],
                log_path=self.log_path, cwd=self._dir, env=env, user=user,
            )  # fmt: skip
            try:
                code = init.wait(self.start_timeout)
            except subprocess.TimeoutExpired:
                end_process(init, (0, 0.0))
                code = -1
            if code != 0:
                raise ServerStartError(
                    f"initdb failed (exit {code}, as {self.os_user or 'ourselves'}); "
                    f"log tail:\n{log_tail(self.log_path)}"
                )
            attempts = 3 if self._auto_port else 1
            for attempt in range(attempts):
                argv = [postgres, "-D", str(data), "-p", str(self.port), "-k", str(self._dir)]
                for key, value in self.settings.items():
                    argv += ["-c", f"{key}={value}"]
                self._proc = spawn(argv, log_path=self.log_path, cwd=self._dir, env=env, user=user)
                try:
                    self._wait_ready()
                    return
                except ServerStartError as exc:
                    lost_race = "already in use" in str(exc)
                    end_process(self._proc, (signal.SIGQUIT, 5.0))
                    self._proc = None
                    if lost_race and attempt + 1 < attempts:
                        self.port = find_free_port()
                        continue
                    raise
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        while True:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"postgres on {self.host}:{self.port} exited with code "
                    f"{self._proc.returncode}; log tail:\n{log_tail(self.log_path)}"
                )
            try:
                pg_query(self.host, self.port, self.superuser, "postgres", None, 1.0)
            except (OSError, PostgresError) as exc:
                last = str(exc)  # 57P03: the database system is starting up
            else:
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"postgres on {self.host}:{self.port} not ready within "
                    f"{self.start_timeout:.0f} s ({last}); log tail:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; removes the data."""
        if self._proc is not None:
            end_process(self._proc, (signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0))
            self._proc = None
        untrack(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[str | None, ...]]:
        """Run SQL with the simple query protocol; rows as tuples of text (None for NULL)."""
        return pg_query(self.host, self.port, self.superuser, database, sql, 10.0)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (a plain identifier); returns its asyncpg URL."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} is not a plain identifier")
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state} pid={self.pid}>"


def start_postgres() -> PostgresServer:
    """Start a private PostgreSQL cluster and wait until it accepts connections."""
    server = PostgresServer()
    server.start()
    return server


@cache
def postgres_version(executable: str | None = None) -> str | None:
    """'15.14' for the postgres found (next to initdb, or given), None if there is none."""
    exe = executable
    if exe is None:
        initdb = which_or_none("initdb")
        beside = (
            os.path.join(os.path.dirname(os.path.realpath(initdb)), "postgres") if initdb else ""
        )
        exe = beside if beside and os.path.exists(beside) else which_or_none("postgres")
    return version_of(exe, r"\(PostgreSQL\)\s+(\d[\w.]*)") if exe else None
