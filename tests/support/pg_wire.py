"""A minimal PostgreSQL frontend/backend protocol client (startup with trust auth, simple
query): enough for readiness checks and CREATE DATABASE without a driver or psql."""

from __future__ import annotations

import socket
import struct
from typing import BinaryIO


class PostgresError(RuntimeError):
    """PostgreSQL answered with an ErrorResponse; the message starts with the SQLSTATE."""


_PG_PROTOCOL_3 = 196608


def _pg_read_message(stream: BinaryIO) -> tuple[bytes, bytes]:
    header = stream.read(5)
    if len(header) != 5:
        raise ConnectionError("connection closed by the server")
    (length,) = struct.unpack("!i", header[1:])
    body = stream.read(length - 4)
    if len(body) != length - 4:
        raise ConnectionError("connection closed in the middle of a message")
    return header[:1], body


def _pg_error_text(body: bytes) -> str:
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return f"{fields.get('C', '?????')}: {fields.get('M', 'unknown error')}"


def _pg_data_row(body: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!h", body[:2])
    offset = 2
    values: list[str | None] = []
    for _ in range(count):
        (size,) = struct.unpack("!i", body[offset : offset + 4])
        offset += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[offset : offset + size].decode("utf-8", "replace"))
            offset += size
    return tuple(values)


def pg_query(
    host: str, port: int, user: str, database: str, sql: str | None, timeout: float
) -> list[tuple[str | None, ...]]:
    params = b"user\0%s\0database\0%s\0\0" % (user.encode(), database.encode())
    rows: list[tuple[str | None, ...]] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!ii", 8 + len(params), _PG_PROTOCOL_3) + params)
        with sock.makefile("rb") as stream:
            while True:  # authentication and parameter status, up to ReadyForQuery
                kind, body = _pg_read_message(stream)
                if kind == b"E":
                    raise PostgresError(_pg_error_text(body))
                if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                    raise PostgresError("the server asks for a password; expected trust auth")
                if kind == b"Z":
                    break
            if sql is not None:
                query = sql.encode() + b"\0"
                sock.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
                error: str | None = None
                while True:
                    kind, body = _pg_read_message(stream)
                    if kind == b"E":
                        error = _pg_error_text(body)
                    elif kind == b"D":
                        rows.append(_pg_data_row(body))
                    elif kind == b"Z":
                        break
                if error is not None:
                    raise PostgresError(error)
            sock.sendall(b"X" + struct.pack("!i", 4))
    return rows
