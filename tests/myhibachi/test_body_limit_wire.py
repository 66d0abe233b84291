"""The body cap on the wire: `myhibachi serve --demo` under uvicorn on a free loopback port,
spoken to over raw sockets (so the test controls what is sent and when) and with httpx.

What is asserted is the promise, never a speed: the 413 arrives without the body having
been sent, the server's peak memory does not grow by the size of a hostile body, and the
connection stays usable.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hibachi_support import LiveServer, booking_payload, live_process

MB = 1024 * 1024
LIMIT = 64 * 1024  # the default
TIMEOUT = 60  # seconds: a server that waited for the body would hang until this


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_process(tmp_path_factory.mktemp("wire"), bookings=5) as live:
        yield live


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what uvicorn sends here)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _post_head(extra: str = "") -> bytes:
    return (
        "POST /api/bookings HTTP/1.1\r\nHost: myhibachi.test\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_a_declared_50_mb_body_gets_413_before_any_of_it_is_sent(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_post_head(f"Content-Length: {50 * MB}\r\n"))
        status, _headers, body = _read_response(sock)  # not one byte of the body sent
    assert status == 413
    assert json.loads(body) == {"detail": f"request body too large: the limit is {LIMIT} bytes"}


def test_expect_100_continue_gets_the_413_instead_of_continue(server: LiveServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_post_head(f"Expect: 100-continue\r\nContent-Length: {50 * MB}\r\n"))
        status, _headers, _body = _read_response(sock)
    assert status == 413


def test_a_chunked_body_is_refused_mid_stream_and_the_connection_stays_usable(
    server: LiveServer,
) -> None:
    piece = b" " * 16384
    with _connect(server) as sock:
        sock.sendall(_post_head("Transfer-Encoding: chunked\r\n"))
        for _ in range(LIMIT // len(piece) + 1):
            sock.sendall(_chunk(piece))
        status, _headers, body = _read_response(sock)  # the body is not finished yet
        assert status == 413
        assert b"limit is 65536 bytes" in body
        # The rest of the body is discarded by the server as it comes; then the same
        # connection carries the next request.
        for _ in range(8):
            sock.sendall(_chunk(piece))
        sock.sendall(b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: myhibachi.test\r\n\r\n")
        status, _headers, body = _read_response(sock)
    assert status == 200
    assert json.loads(body)["database"]["ok"] is True


def test_50_mb_posts_leave_the_server_memory_flat(server: LiveServer) -> None:
    """Before the cap, one 50 MB POST took the server from ~95 MB to ~1 GB and sent back
    419 MB. Now each is a small 413, sent whole or streamed, and the server's peak RSS
    grows by far less than one body."""
    before = server.peak_rss_bytes()
    with httpx.Client(base_url=server.base, timeout=TIMEOUT) as client:
        sized = client.post(
            "/api/bookings",
            content=json.dumps({"note": "x" * (50 * MB)}).encode(),
            headers={"content-type": "application/json"},
        )

        def streamed() -> Iterator[bytes]:
            for _ in range(50 * 16):
                yield b" " * (64 * 1024)

        chunked = client.post(
            "/api/bookings", content=streamed(), headers={"content-type": "application/json"}
        )
        for response in (sized, chunked):
            assert response.status_code == 413
            assert len(response.content) < 100
        assert client.post("/api/bookings", json=booking_payload()).status_code == 201
    growth = server.peak_rss_bytes() - before
    assert growth < 16 * MB, f"peak RSS grew by {growth / MB:.1f} MB"


def test_the_limit_is_set_by_the_environment(tmp_path: Path) -> None:
    env = {"MYHIBACHI_MAX_BODY_BYTES": "2048"}
    with live_process(tmp_path, bookings=0, env=env) as live, _connect(live) as sock:
        sock.sendall(_post_head("Content-Length: 2049\r\n"))
        status, _headers, body = _read_response(sock)
    assert status == 413
    assert b"limit is 2048 bytes" in body
