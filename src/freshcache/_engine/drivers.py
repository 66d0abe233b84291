"""The two drivers of the procedures (``flows``): one awaits each operation, the other runs it
plainly. A failed operation is thrown back into the procedure, which decides what to do."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, TypeVar

from freshcache._engine.ops import BackendOp, Compute, FlightPool, Flow, Shared, Sleep
from freshcache._engine.spec import FunctionSpec
from freshcache.backends import BackendSet
from freshcache.stampede import AsyncSingleFlight, SyncSingleFlight

T = TypeVar("T")


class Flights:
    """The single-flight tables of one engine: values and token creations apart, so a token
    creation never waits on a value computation."""

    __slots__ = ("async_tokens", "async_values", "sync_tokens", "sync_values")

    def __init__(self) -> None:
        self.async_values = AsyncSingleFlight()
        self.async_tokens = AsyncSingleFlight()
        self.sync_values = SyncSingleFlight()
        self.sync_tokens = SyncSingleFlight()


class Drivers:
    __slots__ = ("backends", "flights")

    def __init__(self, backends: BackendSet, flights: Flights) -> None:
        self.backends = backends
        self.flights = flights

    async def run_async(
        self,
        flow: Flow[T],
        spec: FunctionSpec | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> T:
        """Run a flow for an async caller: each operation awaited, failures thrown back in."""
        backend = self.backends.async_backend
        flights = self.flights
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, error = None, None
            try:
                if isinstance(op, BackendOp):
                    reply = await op.on_async(backend)
                elif isinstance(op, Compute):
                    assert spec is not None
                    reply = await spec.func(*args, **(kwargs or {}))
                elif isinstance(op, Shared):
                    pool = (
                        flights.async_values
                        if op.pool is FlightPool.VALUES
                        else flights.async_tokens
                    )
                    # A joiner's flow is created but never started: that costs nothing.
                    shared = functools.partial(self.run_async, op.make(), spec, args, kwargs)
                    reply = await pool.run(op.key, shared)
                elif isinstance(op, Sleep):
                    await asyncio.sleep(op.seconds)
                else:
                    reply = flights.async_values.in_flight(op.key)
            except BaseException as exc:  # the flow decides; what it does not catch rises
                error = exc

    def run_sync(
        self,
        flow: Flow[T],
        spec: FunctionSpec | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> T:
        """Run a flow for a sync caller."""
        backend = self.backends.sync_backend
        flights = self.flights
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            reply, error = None, None
            try:
                if isinstance(op, BackendOp):
                    reply = op.on_sync(backend)
                elif isinstance(op, Compute):
                    assert spec is not None
                    reply = spec.func(*args, **(kwargs or {}))
                elif isinstance(op, Shared):
                    pool = (
                        flights.sync_values if op.pool is FlightPool.VALUES else flights.sync_tokens
                    )
                    shared = functools.partial(self.run_sync, op.make(), spec, args, kwargs)
                    reply = pool.run(op.key, shared)
                elif isinstance(op, Sleep):
                    time.sleep(op.seconds)
                else:
                    reply = flights.sync_values.in_flight(op.key)
            except BaseException as exc:
                error = exc
