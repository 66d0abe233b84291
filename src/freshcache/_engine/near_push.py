"""Best-effort push between processes: an invalidating process publishes what it invalidated
on a reserved channel of the namespace (``{namespace}:__near__``), and every process with a
near cache drops its matching entries when the message arrives. It shortens the time a
concurrent reader may still be served an entry validated before the write; correctness never
depends on it (the writer's commit-wait is what keeps the promise), so a lost message, a
disconnected subscriber or an unreachable server only costs that shortening.

Redis pub/sub is broadcast to every node of a Redis Cluster, so one node serves for both."""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis

log = logging.getLogger("freshcache")

#: Seconds between reconnection attempts of a subscriber that lost its server.
RETRY_SECONDS = 0.5
#: Bytes of a message a subscriber reads at most (a larger one is ignored).
MAX_MESSAGE_BYTES = 1024 * 1024


def node_url(url: str) -> str:
    """A plain Redis URL of the server (the first seed node of a cluster URL)."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if not scheme.endswith("+cluster"):
        return url
    parts = urllib.parse.urlsplit("//" + rest)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    first = hosts.split(",")[0].strip()
    return f"{scheme.removesuffix('+cluster')}://{userinfo}{at}{first}/0"


class Push:
    """The publisher and the subscriber of one near cache.

    ``on_message(patterns)`` is called on the subscriber's thread with the absolute patterns
    and the stats labels another process invalidated."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[list[tuple[str, list[str]]]], None],
        timeout: float,
    ) -> None:
        self.url = node_url(url)
        self.channel = channel
        self.on_message = on_message
        self.timeout = timeout
        self.sender = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._publisher: redis.Redis | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: Set while the subscriber is subscribed (tests wait for it before publishing).
        self.subscribed = threading.Event()

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
        )

    def publish(self, patterns: Iterable[tuple[str, list[str]]]) -> None:
        """Tell the other processes (best effort: a failure is logged, never raised)."""
        message = orjson.dumps({"from": self.sender, "patterns": list(patterns)})
        try:
            with self._lock:
                if self._publisher is None:
                    self._publisher = self._client()
                publisher = self._publisher
            publisher.publish(self.channel, message)
        except (redis.RedisError, OSError) as exc:
            log.debug("freshcache: near push not sent: %s", exc)

    def subscribe(self) -> None:
        """Start listening (once; a daemon thread that reconnects until ``close``)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._listen, name="freshcache-near-push", daemon=True
            )
            self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            client = None
            try:
                client = self._client()
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.channel)
                pubsub.get_message(timeout=self.timeout)  # the subscription's confirmation
                self.subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=RETRY_SECONDS)
                    if message is not None:
                        self._received(message.get("data"))
            except (redis.RedisError, OSError) as exc:
                self.subscribed.clear()
                log.debug("freshcache: near push subscriber disconnected: %s", exc)
                self._stop.wait(RETRY_SECONDS)
            finally:
                if client is not None:
                    client.close()

    def _received(self, data: Any) -> None:
        if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
            return
        try:
            message = orjson.loads(data)
            if message["from"] == self.sender:
                return
            patterns = [(str(p), [str(x) for x in labels]) for p, labels in message["patterns"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not ours: nothing on this channel is trusted beyond dropping entries
        self.on_message(patterns)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(2 * RETRY_SECONDS + self.timeout)
