"""A private redis-server for one test or one session: start, stop, crash, hang, restart, and
restart from an older snapshot (a real BGSAVE, a real dump.rdb loaded at start)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

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
from .resp import RedisReplyError, info_fields, redis_command


class RedisServer(ManagedServer):
    """A private redis-server: 127.0.0.1, a free port, no persistence, data in a temp dir.

    `args` are extra configuration directives (`{"maxmemory": "10mb"}` -> `--maxmemory 10mb`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        args: Mapping[str, str] | None = None,
        executable: str | None = None,
        port_factory: Callable[[], int] = find_free_port,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self._port_factory = port_factory
        self.port: int = port if port is not None else port_factory()
        self.args: dict[str, str] = dict(args or {})
        self.executable = executable
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._paused = False
        self._started_once = False
        self._seed_rdb: Path | None = None  # loaded by the next start (restart_from_snapshot)
        self._seed_files: dict[str, bytes] = {}  # written by the next start, likewise

    # -- properties

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The process exists (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def data_dir(self) -> Path | None:
        return self._dir

    @property
    def log_path(self) -> Path | None:
        return self._dir / "redis.log" if self._dir is not None else None

    @property
    def version(self) -> str | None:
        return redis_server_version(self.executable)

    # -- lifecycle

    def start(self) -> None:
        """Start the server and wait until it answers PING (bounded by `start_timeout`)."""
        if self.running:
            return
        self._cleanup()  # after a kill(): reap it and drop its data, so the start is fresh
        exe = self.executable or which_or_none("redis-server")
        if exe is None:
            raise ServerStartError("redis-server not found on PATH")
        # A port picked by us may be taken by someone else before redis binds it: pick again.
        # A restart keeps its port, so that clients can reconnect to the same address.
        attempts = 3 if self._auto_port and not self._started_once else 1
        for attempt in range(attempts):
            try:
                self._start_once(exe)
            except ServerStartError as exc:
                lost_race = "Address already in use" in str(exc)
                self._cleanup()
                if lost_race and attempt + 1 < attempts:
                    self.port = self._port_factory()
                    continue
                raise
            self._started_once = True
            return

    def _start_once(self, exe: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix=f"freshcache-redis-{self.port}-"))
        if self._seed_rdb is not None:
            # Redis loads dir/dbfilename at start even with saving off (`--save ""`).
            shutil.copyfile(self._seed_rdb, self._dir / "dump.rdb")
        for name, content in self._seed_files.items():
            (self._dir / name).write_bytes(content)
        argv = [
            exe,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        for key, value in self.args.items():
            argv += [f"--{key.replace('_', '-')}", value]
        assert self.log_path is not None
        self._proc = spawn(argv, log_path=self.log_path, cwd=self._dir)
        track(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"redis-server on {self.host}:{self.port} exited with code "
                    f"{self._proc.returncode} before answering PING; log tail:\n"
                    f"{log_tail(self.log_path)}"
                )
            with contextlib.suppress(OSError, RedisReplyError):
                if redis_command(self.host, self.port, "PING", timeout=0.5) == "PONG":
                    # On a shared machine another redis-server may hold this port while ours
                    # is still failing to bind it: ready means *our* process answers.
                    info = info_fields(redis_command(self.host, self.port, "INFO", "server"))
                    if info.get("process_id") == str(self._proc.pid):
                        return
            if time.monotonic() > deadline:
                end_process(self._proc, (0, 0.0))
                raise ServerStartError(
                    f"redis-server on {self.host}:{self.port} did not answer PING within "
                    f"{self.start_timeout:.0f} s; log tail:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, then SIGTERM, then SIGKILL; waits for the exit; removes the data."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if self._paused:
                self.resume()
            with contextlib.suppress(OSError, RedisReplyError, ValueError):
                redis_command(self.host, self.port, "SHUTDOWN", "NOSAVE", timeout=1.0)
            end_process(proc, (0, 5.0), (signal.SIGTERM, 5.0))
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None:
            end_process(self._proc, (0, 0.0))
        self._proc = None
        self._paused = False
        untrack(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL, as a crash. The data directory stays until stop() or restart()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._paused = False

    def restart(self) -> None:
        """Stop (or clean up after a kill) and start again: same port, empty data."""
        self.stop()
        self.start()

    # -- snapshots

    def save_snapshot(self, dest: Path, timeout: float = 30.0) -> Path:
        """BGSAVE, wait until that snapshot is on disk, and copy it to `dest` (a file path).

        The copy is what the server held at BGSAVE time; writes after this call are not in it.
        """
        if self._dir is None or not self.running:
            raise RuntimeError("redis-server is not running")
        saves_before = int(self.info("persistence").get("rdb_saves", "0"))
        reply = self.command("BGSAVE")
        if reply not in ("Background saving started", "OK"):
            raise RuntimeError(f"BGSAVE answered {reply!r}")
        deadline = time.monotonic() + timeout
        while True:
            persistence = self.info("persistence")
            done = int(persistence.get("rdb_saves", "0")) > saves_before
            if done and persistence.get("rdb_bgsave_in_progress") == "0":
                if persistence.get("rdb_last_bgsave_status") != "ok":
                    raise RuntimeError(f"BGSAVE failed; log tail:\n{log_tail(self.log_path)}")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"BGSAVE did not finish within {timeout:.0f} s")
            time.sleep(0.01)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._dir / "dump.rdb", dest)
        return dest

    def restart_from_snapshot(self, snapshot: Path, keep: Sequence[str] = ()) -> None:
        """Stop the server (no save) and start it again on the same port, loading `snapshot`:
        Redis comes back with the older data, a new run_id, and no memory of later writes.
        `keep` names files of the data directory carried over as they are now (a cluster
        node's `nodes.conf`, so that it rejoins its cluster as the node it was)."""
        if not snapshot.is_file():
            raise FileNotFoundError(snapshot)
        assert self._dir is not None, "redis-server is not running"
        carried = {name: (self._dir / name).read_bytes() for name in keep}
        self.stop()
        self._seed_rdb = snapshot
        self._seed_files = carried
        try:
            self.start()
        finally:
            self._seed_rdb = None  # a later restart() is empty again, as documented
            self._seed_files = {}

    def info(self, section: str) -> dict[str, str]:
        """`INFO section` as a dict of fields (`server.info("replication")["role"]`)."""
        return info_fields(self.command("INFO", section))

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung server)."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("redis-server is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def command(self, *args: str, timeout: float = 2.0) -> str | int | None:
        """One command over a fresh connection (no redis-py needed): `server.command("DBSIZE")`."""
        return redis_command(self.host, self.port, *args, timeout=timeout)

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state} pid={self.pid}>"


def start_redis(**redis_args: str) -> RedisServer:
    """Start a private redis-server with extra directives: `start_redis(maxmemory="10mb")`."""
    server = RedisServer(args=redis_args)
    server.start()
    return server


@cache
def redis_server_version(executable: str | None = None) -> str | None:
    """'7.0.15' for the redis-server found (or given), None if there is none."""
    exe = executable or which_or_none("redis-server")
    return version_of(exe, r"v=(\d[\w.]*)") if exe else None
