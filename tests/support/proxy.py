"""A TCP proxy that injects network faults between a client and a server.

The proxy runs its own asyncio loop in a daemon thread, so the same object works from sync
tests and from async tests (its methods block only briefly, to hand work to that thread).

Modes (`set_mode`):

- ``pass``: forward both ways.
- ``refuse``: close the listening socket, so new connects get ECONNREFUSED at once, and
  reset (RST) every existing connection, both sides.
- ``blackhole``: a network partition. New connections are accepted and read from, but no
  upstream connection is made and nothing is forwarded or answered. Existing connections
  stall in both directions; their upstream connections stay open. Bytes read meanwhile are
  held (up to ~4 MiB per direction, then TCP backpressure), not dropped.
- ``delay``: forward, each chunk delivered `delay` seconds after it was read (added latency;
  chunks keep their order, throughput is not limited).

Switching back to ``pass`` (or ``delay``) re-opens the listener on the same port if it was
closed, and heals a blackhole: connections that were stalled, and not reset, resume and
deliver what they held, in order, like a partition that heals before TCP gives up. Clients
that gave up meanwhile (a timeout, then a close) simply see their connection go away. To
simulate a partition that ends with broken connections, call ``reset_connections()`` (or
``set_mode("refuse")``) before switching back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["MODES", "FaultProxy"]

MODES = ("pass", "refuse", "blackhole", "delay")
_CHUNK = 65536
_QUEUE_CHUNKS = 64  # held per direction before backpressure (x _CHUNK bytes at most)
_CALL_TIMEOUT = 10.0
_T = TypeVar("_T")

# A queued item: (loop time when read, data); None for end of stream; OSError for a reset.
_Item = tuple[float, bytes] | OSError | None


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close at once with a reset (RST, via SO_LINGER 0), dropping unsent data."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None and not writer.transport.is_closing():
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listens on 127.0.0.1:<free port> and forwards to (target_host, target_port).

    The port is bound in the constructor and kept for the proxy's life (also across
    ``refuse``). See the module docstring for what each mode does to old and new connections.
    ``bytes_forwarded`` counts bytes delivered in both directions; ``connections_accepted``
    counts client connections (including those accepted into a blackhole).
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        # Bind now, so that the port is ours from the start (no free-port race).
        self._listen_sock: socket.socket | None = self._bind(0)
        self.port: int = self._listen_sock.getsockname()[1]
        self.mode = "pass"
        self.delay = 0.0
        self.bytes_forwarded = 0
        self.connections_accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._open: asyncio.Event | None = None  # set while forwarding (pass, delay)
        self._connections: set[_Connection] = set()
        self._closed = False
        self._closing = False  # set on the loop thread by _aclose

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- lifecycle

    def start(self) -> Self:
        if self._closed:
            raise RuntimeError("the proxy is closed")
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
                # As asyncio.run() does: whatever is still pending is cancelled, and finishes.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"FaultProxy:{self.port}", daemon=True)
        self._thread.start()
        ready.wait(_CALL_TIMEOUT)
        self._call(self._astart())
        return self

    async def _astart(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        await self._listen()

    def close(self) -> None:
        """Stop listening, reset every connection, stop the thread. Never hangs (bounded)."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._aclose(), timeout=5.0)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
        if self._listen_sock is not None:  # never started
            self._listen_sock.close()
            self._listen_sock = None

    async def _aclose(self) -> None:
        self._closing = True
        await self._unlisten()
        # Connections accepted just before the listener closed may not have reached _handle
        # yet; let them (a few loop iterations), so that they see _closing and close.
        for _ in range(5):
            await asyncio.sleep(0)
        await self._reset_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy {self.host}:{self.port} -> {self.target_host}:{self.target_port} "
            f"mode={self.mode} delay={self.delay}>"
        )

    # -- control (callable from any thread; also from a coroutine: each call is short)

    def set_mode(self, mode: str, delay: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if self._thread is None:
            self.start()
        self._call(self._aset_mode(mode, delay))

    def reset_connections(self) -> None:
        """Reset (RST) every open connection, both sides; the listener is untouched."""
        self._call(self._reset_all())

    def retarget(self, host: str, port: int) -> None:
        """Forward new connections to `host:port` from now on, and reset the open ones, as a
        failover behind a stable address does: clients reconnect to the same address and
        reach the new server."""
        if self._thread is None:
            self.start()
        self._call(self._aretarget(host, port))

    async def _aretarget(self, host: str, port: int) -> None:
        self.target_host, self.target_port = host, port
        await self._reset_all()

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = _CALL_TIMEOUT) -> _T:
        if self._loop is None or self._loop.is_closed():
            coro.close()
            raise RuntimeError("the proxy is not started, or closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("FaultProxy methods cannot be called from its own loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("the proxy thread did not answer") from None

    async def _aset_mode(self, mode: str, delay: float) -> None:
        assert self._open is not None
        self.mode, self.delay = mode, delay if mode == "delay" else 0.0
        if mode in ("pass", "delay"):
            await self._listen()
            self._open.set()
        elif mode == "blackhole":
            self._open.clear()
            await self._listen()
        else:  # refuse
            self._open.clear()
            await self._unlisten()
            for _ in range(5):  # see _aclose
                await asyncio.sleep(0)
            await self._reset_all()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = self._listen_sock or self._bind(self.port)
        self._listen_sock = None
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _reset_all(self) -> None:
        connections = list(self._connections)
        self._connections.clear()
        tasks: list[asyncio.Task[None]] = []
        for conn in connections:
            _abort(conn.client)
            _abort(conn.upstream)
            for task in conn.tasks:
                task.cancel()
            tasks.extend(conn.tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- forwarding

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or self.mode == "refuse":
            # Accepted by asyncio just before the listener closed: refuse it after the fact.
            _abort(writer)
            return
        self.connections_accepted += 1  # runs before any byte of the connection is read
        conn = _Connection(client=writer)
        self._connections.add(conn)
        task = asyncio.current_task()
        assert task is not None
        conn.tasks.add(task)
        pumps: list[asyncio.Task[None]] = []
        graceful = False
        try:
            to_upstream: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_CHUNKS)
            pumps.append(asyncio.create_task(self._read(reader, to_upstream)))
            conn.tasks.update(pumps)
            # In a blackhole, the upstream connection is only made once the partition heals.
            await self._wait_open()
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port), 5.0
                )
            except (OSError, TimeoutError):
                return  # the target is down: the client sees a reset, as from the target
            conn.upstream = up_writer
            to_client: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_CHUNKS)
            writers = [
                asyncio.create_task(self._write(to_upstream, up_writer)),
                asyncio.create_task(self._write(to_client, writer)),
            ]
            pumps += [asyncio.create_task(self._read(up_reader, to_client)), *writers]
            conn.tasks.update(pumps)
            # Each direction ends with a half-close (FIN) once delivered; a reset on either
            # side resets both.
            done, _ = await asyncio.wait(writers, return_when=asyncio.FIRST_EXCEPTION)
            graceful = all(not t.cancelled() and t.exception() is None for t in done)
            graceful = graceful and len(done) == len(writers)
        except asyncio.CancelledError:
            pass  # reset_connections(), refuse, close
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for side in (conn.client, conn.upstream):
                if graceful and side is not None:
                    side.close()
                else:
                    _abort(side)
            self._connections.discard(conn)

    async def _wait_open(self) -> None:
        assert self._open is not None
        while not self._open.is_set():
            await self._open.wait()

    async def _read(self, reader: asyncio.StreamReader, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(_CHUNK):
                await queue.put((loop.time(), data))
        except OSError as exc:
            await queue.put(exc)
        else:
            await queue.put(None)

    async def _write(self, queue: asyncio.Queue[_Item], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            await self._wait_open()
            if isinstance(item, OSError):
                raise ConnectionResetError(f"the other side failed: {item!r}")
            if item is None:  # end of stream: half-close, like the peer did
                if writer.can_write_eof():
                    writer.write_eof()
                return
            read_at, data = item
            if self.delay > 0:
                await asyncio.sleep(max(0.0, read_at + self.delay - loop.time()))
                await self._wait_open()  # a blackhole may have started meanwhile
            # No await between the check above and write(): the mode cannot change here.
            # Count first: write() may hand the bytes to the peer before the next line runs,
            # and a test thread that saw them must also see the count.
            self.bytes_forwarded += len(data)
            writer.write(data)
            await writer.drain()
