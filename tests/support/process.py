"""Process bookkeeping for the private test servers: spawning, stopping, never leaking.

Every server is a child process of the test run, tracked until it is stopped, and stopped at
interpreter exit (an `atexit` guard). On Linux, children started from the main thread also
get PR_SET_PDEATHSIG=SIGKILL, so a test run killed with SIGKILL does not leave them behind.
Also here: free ports on 127.0.0.1, finding server binaries off PATH, and `ManagedServer`,
the context-manager base of every server class.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

HOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    """A server process could not be started or never became ready."""


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_LIVE: set[_Stoppable] = set()
_LIVE_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def track(obj: _Stoppable) -> None:
    global _ATEXIT_REGISTERED
    with _LIVE_LOCK:
        if not _ATEXIT_REGISTERED:
            atexit.register(_stop_all)
            _ATEXIT_REGISTERED = True
        _LIVE.add(obj)


def untrack(obj: _Stoppable) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(obj)


def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for obj in live:
        # At exit, one server that refuses to stop must not keep the others running.
        with contextlib.suppress(Exception):
            obj.stop()


_PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return fn


def _child_setup() -> Callable[[], None] | None:
    """A preexec_fn that makes the child die with us, or None where that is not possible.

    The parent-death signal fires when the *thread* that forked the child exits, so it is
    only set for children started from the main thread (a server started in a worker thread
    would otherwise die with that thread). CPython runs preexec_fn after setuid/setgid, which
    matters: a credential change clears the parent-death signal.
    """
    prctl = _prctl()  # resolved in the parent: the child only makes one plain call
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    user: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        if user is None:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                process_group=0,  # a Ctrl-C in the terminal is for pytest, not the servers
                preexec_fn=_child_setup(),  # only prctl: see _child_setup
            )
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            process_group=0,
            preexec_fn=_child_setup(),
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
        )


def end_process(proc: subprocess.Popen[bytes], *signals: tuple[int, float]) -> None:
    """Wait for `proc`, sending each (signal, grace seconds) in turn; SIGKILL as the last resort."""
    for sig, grace in signals:
        if proc.poll() is not None:
            break
        if sig:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()


def log_tail(path: Path | None, lines: int = 25) -> str:
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (log is empty)"


# Ports and executables.


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (servers retry if they lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def find_free_cluster_port() -> int:
    """A free port P whose cluster bus port P+10000 is free too (works on every Redis version)."""
    for _ in range(200):
        port = find_free_port()
        if port + 10000 <= 65535 and port_is_free(port + 10000):
            return port
    raise ServerStartError("no free port P with P+10000 free on 127.0.0.1")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def which_or_none(name: str) -> str | None:
    """`shutil.which(name)`, then the places where packages put server binaries off PATH.

    /usr/lib/postgresql/*/bin (Debian/Ubuntu; newest version first), /usr/local/bin, /usr/sbin.
    """
    found = shutil.which(name)
    if found:
        return found
    pg_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for directory in [*pg_dirs, "/usr/local/bin", "/usr/sbin"]:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def version_of(executable: str, pattern: str) -> str | None:
    try:
        out = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, out)
    return match.group(1) if match else None


# Redis


class ManagedServer:
    """``with Server() as server:`` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
