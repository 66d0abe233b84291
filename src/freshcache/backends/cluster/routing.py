"""How a call travels, the same for the asyncio and the sync backend: which primary gets which
items, what a pipeline carries for one command or a batch, how its replies are read, how the
failures of work spread over several nodes are reported. No I/O: the backends do that."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import redis.exceptions

from freshcache.backends.cluster.commands import Item
from freshcache.backends.cluster.topology import Topology

T = TypeVar("T")


def group(items: Iterable[Item], topology: Topology) -> dict[str, list[tuple[int, Item]]]:
    """Items by the primary that serves them, each with its index in ``items``."""
    groups: dict[str, list[tuple[int, Item]]] = {}
    for index, item in enumerate(items):
        groups.setdefault(topology.owner(item[0]), []).append((index, item))
    return groups


def queue_call(
    pipe: Any,
    command: tuple[Any, ...],
    options: dict[str, Any],
    asking: bool,
    acks: int,
    wait_ms: int,
) -> None:
    """One command on a pipeline. ASKING holds for the next command on the same connection
    only, and WAIT covers the writes made on its own connection: both are pipelined with it."""
    if asking:
        pipe.execute_command("ASKING")
    pipe.execute_command(*command, **options)
    if acks:
        pipe.execute_command("WAIT", acks, wait_ms)


def call_reply(topology: Topology, address: str, replies: Any, asking: bool, acks: int) -> Any:
    """The reply to the command ``queue_call`` queued; raises the error it got (a MOVED or ASK
    for the caller to follow), or if too few replicas acknowledged."""
    result = replies[1 if asking else 0]
    if isinstance(result, Exception):
        raise result
    if acks:
        topology.check_acks(address, replies[-1], acks)
    return result


def queue_batch(pipe: Any, items: Iterable[tuple[int, Item]], acks: int, wait_ms: int) -> None:
    """Items for one node on one pipeline (with WAIT last if ``acks``)."""
    for _, (_, command, options) in items:
        pipe.execute_command(*command, **options)
    if acks:
        pipe.execute_command("WAIT", acks, wait_ms)


def batch_replies(
    topology: Topology, address: str, items: list[tuple[int, Item]], results: list[Any], acks: int
) -> Iterator[tuple[int, Item, Any]]:
    """The replies to ``queue_batch``, in order, with each item and its index. A redirected
    item comes with its MOVED or ASK error, for the caller to send again; any other error is
    raised when its turn comes (after the redirections before it were followed)."""
    if acks:
        topology.check_acks(address, results.pop(), acks)
    for (index, item), result in zip(items, results, strict=True):
        redirected = isinstance(result, redis.exceptions.AskError)  # MOVED or ASK
        if isinstance(result, BaseException) and not redirected:
            raise topology.failed(result, address) from result
        yield index, item, result


def queue_topology_query(pipe: Any) -> None:
    """What a refresh asks one node, in one round trip (``Topology.answered`` reads it)."""
    pipe.execute_command("CLUSTER", "SLOTS")
    pipe.execute_command("CLUSTER", "NODES")


def settled(outcomes: Iterable[T | BaseException]) -> list[T]:
    """The outcomes of parts that all ran to the end (on several nodes): the first failure is
    raised, once every node has had its share."""
    done = list(outcomes)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in done if not isinstance(outcome, BaseException)]


def placed(count: int, outcomes: Iterable[list[tuple[int, Any]] | BaseException]) -> list[Any]:
    """The replies of a batch split by node (``group``), back in the batch's order."""
    results: list[Any] = [None] * count
    for outcome in settled(outcomes):
        for index, result in outcome:
            results[index] = result
    return results
