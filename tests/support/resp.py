"""A minimal RESP client (simple strings, errors, integers, bulk strings; no arrays): enough
for PING, INFO, CLUSTER INFO/NODES, CLIENT LIST, CONFIG SET, SHUTDOWN, DBSIZE, SET/GET without
depending on redis-py, so server management works whatever the client library does."""

from __future__ import annotations

import socket
from typing import BinaryIO


class RedisReplyError(RuntimeError):
    """Redis answered a command with an error reply (`-ERR ...`)."""


def _read_line(stream: BinaryIO) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    return line[:-2]


def _read_reply(stream: BinaryIO) -> str | int | None:
    line = _read_line(stream)
    kind, body = line[:1], line[1:].decode("utf-8", "replace")
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisReplyError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed in the middle of a reply")
        return data[:-2].decode("utf-8", "replace")
    raise ValueError(f"unsupported RESP reply type {kind!r} (arrays are not parsed here)")


def redis_command(host: str, port: int, *args: str, timeout: float = 2.0) -> str | int | None:
    """Send one command on a fresh connection and return its (non-array) reply."""
    encoded = [arg.encode() for arg in args]
    payload = b"*%d\r\n" % len(encoded) + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb") as stream:
            return _read_reply(stream)


def info_fields(text: str | int | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in str(text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields
