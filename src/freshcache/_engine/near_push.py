"""Best-effort push between processes: an invalidating process publishes what it invalidated
on a reserved channel of the namespace (``{namespace}:__near__``), and every process with a
near cache drops its matching entries when the message arrives. It shortens the time a
concurrent reader may still be served an entry validated before the write; correctness never
depends on it (the writer's commit-wait is what keeps the promise), so a lost message, a
disconnected subscriber or an unreachable server only costs that shortening.

Redis pub/sub is broadcast to every node of a Redis Cluster, so one node serves for both.

With extended leases (``near_max_age``, standalone Redis only) the subscription does more: the
subscriber sends a heartbeat every third of a lease, a ``PING`` on its own subscribed
connection, and when the answer comes back on that connection (after every message published
before the server executed the ``PING``) the entries the subscription has tracked since they
were validated are as good as validated when the heartbeat was sent (``NearCache.extend``).
No other client can answer it, and it costs one write and no reply wait on the subscriber's
thread (which may get the GIL only every few milliseconds in a busy process). Then the
writers' part is needed: each publishes after its write and waits a lease after the publish
was answered (``NearIO``)."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
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
#: Heartbeats sent and not yet back that a subscriber remembers (older ones are forgotten).
MAX_BEATS_IN_FLIGHT = 64


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
    and the stats labels another process invalidated; ``on_subscription(live)`` when the
    subscription starts or ends (it returns the subscription's number); with ``heartbeat``
    seconds, ``on_heartbeat(sent_at, subscription)`` when one of this subscriber's heartbeats
    came back, sent while ``wanted()``."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[list[tuple[str, list[str]]]], None],
        timeout: float,
        *,
        on_subscription: Callable[[bool], int] | None = None,
        on_heartbeat: Callable[[float, int], None] | None = None,
        heartbeat: float = 0.0,
        wanted: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = node_url(url)
        self.channel = channel
        self.on_message = on_message
        self.on_subscription = on_subscription
        self.on_heartbeat = on_heartbeat
        self.heartbeat = heartbeat
        self.wanted = wanted
        self.clock = clock
        self.timeout = timeout
        self.sender = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # Heartbeats in flight: nonce -> when it was sent. Any other answer to a PING (redis-py
        # sends its own health checks) extends nothing.
        self._beats: collections.OrderedDict[bytes, float] = collections.OrderedDict()
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

    def publish(self, patterns: Iterable[tuple[str, list[str]]]) -> float | None:
        """Tell the other processes; returns when the server answered (this clock), or None
        if it did not (a failure is logged, never raised)."""
        message = orjson.dumps({"from": self.sender, "patterns": list(patterns)})
        try:
            self._publisher_client().publish(self.channel, message)
        except (redis.RedisError, OSError) as exc:
            log.debug("freshcache: near push not sent: %s", exc)
            return None
        return self.clock()

    def _publisher_client(self) -> redis.Redis:
        with self._lock:
            if self._publisher is None:
                self._publisher = self._client()
            return self._publisher

    def _beat(self, pubsub: Any) -> None:
        nonce = uuid.uuid4().hex
        self._beats[nonce.encode()] = self.clock()  # before it is sent: what it proves starts
        while len(self._beats) > MAX_BEATS_IN_FLIGHT:
            self._beats.popitem(last=False)
        pubsub.ping(nonce)  # sent only: the answer is read with the messages

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
            live = False
            try:
                client = self._client()
                pubsub = client.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.channel)
                if not self._confirmed(pubsub, 1):
                    raise redis.TimeoutError("no confirmation of the subscription")
                live = True
                subscription = self._started(True)
                self.subscribed.set()
                self._serve(pubsub, subscription)
            except (redis.RedisError, OSError) as exc:
                log.debug("freshcache: near push subscriber disconnected: %s", exc)
                self._stop.wait(RETRY_SECONDS)
            except Exception:  # a bug must not end the thread: the subscription starts anew
                log.exception("freshcache: near push subscriber failed; subscribing again")
                self._stop.wait(RETRY_SECONDS)
            finally:
                self.subscribed.clear()
                if live:
                    self._started(False)
                self._beats.clear()
                if client is not None:
                    client.close()

    def _confirmed(self, pubsub: Any, count: int) -> bool:
        """Read the server's confirmation of each channel (messages cannot come before)."""
        deadline = self.clock() + self.timeout
        while count:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            message = pubsub.get_message(timeout=remaining)
            if message is not None and message.get("type") == "subscribe":
                count -= 1
        return True

    def _started(self, live: bool) -> int:
        return self.on_subscription(live) if self.on_subscription is not None else 0

    def _serve(self, pubsub: Any, subscription: int) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            wait = RETRY_SECONDS
            if self.heartbeat:
                now = self.clock()
                if now >= next_beat:
                    if self.wanted():
                        self._beat(pubsub)
                    next_beat = now + self.heartbeat
                wait = min(wait, max(0.0, next_beat - self.clock()))
            message = pubsub.get_message(timeout=wait)
            if message is None:
                continue
            if message.get("type") == "pong":
                self._came_back(message.get("data"), subscription)
            elif message.get("type") == "message":
                self._received(message.get("data"))

    def _came_back(self, nonce: Any, subscription: int) -> None:
        sent_at = self._beats.get(nonce) if isinstance(nonce, bytes) else None
        if sent_at is None:
            return
        # In order on one connection: the beats sent before this one are not coming any more.
        while self._beats:
            older, _ = self._beats.popitem(last=False)
            if older == nonce:
                break
        if self.on_heartbeat is not None:
            self.on_heartbeat(sent_at, subscription)

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
