"""The breaker's cool-down starts short and grows while failures persist.

A stall of a fraction of a second must cost a fraction of a second of uncached reads, not the
whole ``breaker_cooldown``: the first probe comes after ``breaker_cooldown_min`` (0.1 s), each
failed probe doubles the wait up to ``breaker_cooldown``, and a success resets it. The clock
is injected: the unit tests move it by hand; the real-Redis test stalls a real server with
``DEBUG SLEEP`` and moves the cache's clock only, so its verdict never depends on speed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from freshcache import Cache
from freshcache.resilience import BreakerState, CircuitBreaker
from support.servers import RedisServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.threshold):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_cooldown_doubles_from_the_minimum_up_to_the_maximum_and_resets_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, cooldown=1.0, clock=clock, cooldown_min=0.1)
    _open(breaker)
    waits = []
    for _ in range(6):  # the backend stays down: every probe fails
        wait = breaker.current_cooldown
        clock.now += wait * 0.99
        assert not breaker.allow(), "probed before the cool-down ended"
        clock.now += wait * 0.02
        assert breaker.allow(), "no probe once the cool-down ended"
        assert breaker.state is BreakerState.HALF_OPEN
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        waits.append(wait)
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert breaker.probes == 6

    clock.now += breaker.current_cooldown * 1.01
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    # The next outage starts short again.
    _open(breaker)
    assert breaker.current_cooldown == pytest.approx(0.1)


def test_one_short_stall_costs_one_short_cooldown() -> None:
    """The measured case: a 200 ms stall used to switch the cache off for 5 s."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=5, cooldown=5.0, clock=clock)
    _open(breaker)
    clock.now += 0.2  # the stall is over after 200 ms
    assert breaker.allow()  # a probe well before the 5 s maximum
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_failures_while_open_do_not_extend_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=5.0, clock=clock, cooldown_min=0.5)
    breaker.record_failure()
    clock.now += 0.4
    breaker.record_failure()  # a call started before the breaker opened, failing late
    clock.now += 0.11
    assert breaker.allow()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"breaker_cooldown_min": -1}, "breaker_cooldown_min"),
        ({"breaker_cooldown_min": "soon"}, "breaker_cooldown_min"),
        ({"breaker_cooldown": "later"}, "breaker_cooldown"),
    ],
)
def test_bad_cooldowns_are_named(options: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Cache("memory://", **options)  # type: ignore[arg-type]


def test_the_minimum_never_exceeds_the_maximum() -> None:
    cache = Cache("memory://", breaker_cooldown=0.05)
    assert cache.breaker.cooldown_min == 0.05
    assert cache.breaker.cooldown == 0.05


@pytest.fixture
def debuggable_redis() -> Iterator[RedisServer]:
    with RedisServer(args={"enable-debug-command": "yes"}) as server:
        yield server


async def test_a_real_stall_is_probed_and_the_cache_resumes(
    debuggable_redis: RedisServer,
) -> None:
    """``DEBUG SLEEP`` stalls the real server: reads time out and stay correct, the breaker
    opens, probes come after the short cool-down, and once the server answers again one
    short cool-down later the cache serves hits (with the old fixed 5 s it still bypassed)."""
    clock = FakeClock()
    cache = Cache.from_url(debuggable_redis.url, namespace="stall", clock=clock)
    version = [1]

    @cache.cached(ttl=300, key_prefix="item")
    async def item() -> int:
        return version[0]

    assert await item() == 1
    assert await item() == 1
    hits_before = cache.stats()["item"].hits

    asleep = threading.Thread(
        target=debuggable_redis.command, args=("DEBUG", "SLEEP", "2"), kwargs={"timeout": 30}
    )
    asleep.start()
    while asleep.is_alive() and cache.breaker.state is not BreakerState.OPEN:
        assert await item() == 1  # timed out: answered by the function, correctly
    if cache.breaker.state is not BreakerState.OPEN:
        asleep.join()
        pytest.fail("the stall ended before 5 reads had timed out: nothing was tested")
    # While the server sleeps, each cool-down ends with a probe; a failed one doubles it.
    probes_while_stalled = 0
    while asleep.is_alive() and probes_while_stalled < 2:
        clock.now += cache.breaker.current_cooldown * 1.01  # just past it (floats)
        before = cache.breaker.probes
        assert await item() == 1
        probes_while_stalled += cache.breaker.probes - before
    asleep.join()

    # The server answers again: one (short) cool-down later the probe succeeds.
    assert cache.breaker.current_cooldown <= 0.4
    clock.now += cache.breaker.current_cooldown * 1.01  # just past it (floats)
    assert await item() == 1
    assert await item() == 1
    assert cache.breaker.state is BreakerState.CLOSED, cache.health()
    assert cache.breaker.probes >= 1
    assert cache.stats()["item"].hits > hits_before
    await cache.aclose()
