"""What @cached_route decides at decoration: caller-dependent routes need a per-user key, the
Vary header follows the key, framework objects stay out of keys and of the OpenAPI schema,
and the lifespan owns the cache."""

# No "from __future__ import annotations": routes are defined inside the tests, and FastAPI
# evaluates string annotations in the module.

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import pytest
from fastapi import Cookie, Depends, FastAPI, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer, OAuth2PasswordBearer
from fastapi_app import TOKENS, User, current_user, http_client
from future_dependencies import SessionFromCookie

import freshcache
from freshcache import Cache
from freshcache.contrib.fastapi import RouteCacheError, cache_lifespan, cached_route

oauth2 = OAuth2PasswordBearer(tokenUrl="token")
api_key = APIKeyHeader(name="X-API-Key")


def user_from_oauth(token: Annotated[str, Depends(oauth2)]) -> User:
    return TOKENS[token]


def session_user(session: Annotated[str, Cookie()]) -> User:
    return TOKENS[session]


def deeper(user: Annotated[User, Depends(session_user)]) -> int:
    return user.id


@pytest.fixture
def cache() -> Cache:
    return Cache.from_url("memory://", namespace="declarations")


@pytest.mark.parametrize(
    ("dependency", "reason"),
    [
        (Depends(current_user), "Security() dependency"),
        (Depends(user_from_oauth), "security scheme OAuth2PasswordBearer"),
        (Depends(session_user), "cookie parameter 'session'"),
        (Depends(deeper), "cookie parameter 'session'"),  # two levels down
        # a class dependency whose annotations are strings (postponed evaluation)
        (Depends(SessionFromCookie), "cookie parameter 'session'"),
        (Security(HTTPBearer()), "security scheme HTTPBearer"),
        (Depends(api_key), "security scheme APIKeyHeader"),
    ],
)
def test_a_caller_dependent_route_without_a_per_user_key_is_refused(
    cache: Cache, dependency: object, reason: str
) -> None:
    with pytest.raises(RouteCacheError) as caught:

        @cached_route(ttl=60, key_prefix="mine", exclude=("who",), cache=cache)
        async def mine(who: object = dependency) -> dict[str, int]:
            return {}

    message = str(caught.value)
    assert "mine depends on the caller" in message
    assert reason in message
    assert "per_user=" in message
    assert "shared=True" in message


def test_credential_headers_and_declared_dependence_are_refused(cache: Cache) -> None:
    with pytest.raises(RouteCacheError, match="header 'authorization'"):

        @cached_route(ttl=60, key_prefix="mine", exclude=("authorization",), cache=cache)
        async def by_header(authorization: Annotated[str, Header()]) -> dict[str, int]:
            return {}

    with pytest.raises(RouteCacheError, match="user_dependent=True"):

        @cached_route(ttl=60, key_prefix="mine", user_dependent=True, cache=cache)
        async def reads_request(request: Request) -> dict[str, int]:
            return {}


def test_shared_and_per_user_are_the_two_ways_out(cache: Cache) -> None:
    @cached_route(ttl=60, key_prefix="public", exclude=("user",), shared=True, cache=cache)
    async def public(user: Annotated[User, Depends(current_user)]) -> dict[str, int]:
        return {}

    @cached_route(ttl=60, key_prefix="mine", per_user="user.id", exclude=("user",), cache=cache)
    async def mine(user: Annotated[User, Depends(current_user)]) -> dict[str, int]:
        return {}

    with pytest.raises(RouteCacheError, match="contradict"):
        cached_route(per_user="user.id", shared=True)
    with pytest.raises(RouteCacheError, match="must name a parameter"):
        cached_route(per_user="user.id()")(mine)
    with pytest.raises(RouteCacheError, match="'account' is not one of its parameters"):

        @cached_route(ttl=60, per_user="account.id", exclude=("user",), cache=cache)
        async def wrong(user: Annotated[User, Depends(current_user)]) -> dict[str, int]:
            return {}

    @cached_route(ttl=60, key_prefix="one", exclude="user", shared=True, cache=cache)
    async def one_name(user: Annotated[User, Depends(current_user)]) -> dict[str, int]:
        return {}  # exclude= as one string means that one parameter, as for @cached

    with pytest.raises(ValueError, match="not parameters"):

        @cached_route(ttl=60, exclude=("db",), cache=cache)
        async def typo(day: str) -> dict[str, int]:
            return {}


async def test_vary_follows_the_headers_in_the_key(cache: Cache) -> None:
    app = FastAPI()
    computed: list[str] = []

    @app.get("/greeting")
    @cached_route(ttl=60, key_prefix="greeting", cache=cache)
    async def greeting(accept_language: Annotated[str, Header()] = "en") -> dict[str, str]:
        computed.append(accept_language)
        return {"hello": accept_language}

    @app.get("/keyed")
    @cached_route(ttl=60, key_prefix="keyed", per_user="caller", exclude=("caller",), cache=cache)
    async def keyed(caller: Annotated[str, Depends(api_key)]) -> dict[str, str]:
        return {"caller": caller}

    async with http_client(app) as client:
        en = await client.get("/greeting", headers={"accept-language": "en"})
        fr = await client.get("/greeting", headers={"accept-language": "fr"})
        assert en.headers["vary"] == "Accept-Language"
        assert (en.json(), fr.json()) == ({"hello": "en"}, {"hello": "fr"})
        again = await client.get("/greeting", headers={"accept-language": "en"})
        assert again.headers["etag"] == en.headers["etag"]
        a = await client.get("/keyed", headers={"x-api-key": "a"})
        b = await client.get("/keyed", headers={"x-api-key": "b"})
        assert a.headers["vary"] == "X-Api-Key"
        assert (a.json(), b.json()) == ({"caller": "a"}, {"caller": "b"})
    assert computed == ["en", "fr"]


async def test_framework_objects_stay_out_of_keys_and_of_the_schema(cache: Cache) -> None:
    app = FastAPI()

    @app.post("/items/{item_id}")
    @app.get("/items/{item_id}")
    @cached_route(ttl=60, key_prefix="items", cache=cache)
    async def item(item_id: int, request: Request, q: str = "") -> dict[str, object]:
        return {"id": item_id, "q": q, "method": request.method}

    schema = app.openapi()["paths"]["/items/{item_id}"]["get"]
    assert [p["name"] for p in schema["parameters"]] == ["item_id", "q"]
    async with http_client(app) as client:
        got = await client.get("/items/3", params={"q": "x"})
        assert got.json() == {"id": 3, "q": "x", "method": "GET"}
        posted = await client.post("/items/3", params={"q": "x"})
        assert posted.json()["method"] == "POST"  # only GET and HEAD are cached
        assert "etag" not in posted.headers
    (key,) = await cache.keys("items:*")
    assert key.startswith("declarations:items:test_framework_objects_stay_out_of_keys")


async def test_the_lifespan_configures_and_closes_the_cache() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("app startup")
        yield {"from": "app"}
        events.append("app shutdown")

    app = FastAPI(lifespan=cache_lifespan("memory://", namespace="lifespan", then=own))

    @app.get("/n")
    @cached_route(ttl=60, key_prefix="n")  # the default cache, bound at call time
    async def n() -> dict[str, int]:
        return {"n": 1}

    async with app.router.lifespan_context(app) as state:
        cache = app.state.freshcache
        assert cache is freshcache.get_cache()
        assert cache.namespace == "lifespan"
        assert state == {"from": "app"}
        closing = cache.aclose

        async def recorded_close() -> None:
            events.append("cache closed")
            await closing()

        cache.aclose = recorded_close
        async with http_client(app) as client:
            assert (await client.get("/n")).json() == {"n": 1}
        assert len(await cache.keys("n:*")) == 1
    assert events == ["app startup", "app shutdown", "cache closed"]
    freshcache.configure(url="memory://")  # leave an open default for the tests that follow


async def test_responses_that_must_not_be_replayed_are_not_stored(cache: Cache) -> None:
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.background import BackgroundTask

    app = FastAPI()
    runs: list[str] = []

    @app.get("/login")
    @cached_route(ttl=60, key_prefix="odd", cache=cache)
    async def login() -> JSONResponse:
        runs.append("cookie")
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "for-one-caller-only")
        return response

    @app.get("/stream")
    @cached_route(ttl=60, key_prefix="odd", cache=cache)
    async def stream() -> StreamingResponse:
        runs.append("stream")

        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    @app.get("/audit")
    @cached_route(ttl=60, key_prefix="odd", cache=cache)
    async def with_task() -> JSONResponse:
        runs.append("task")
        return JSONResponse({"ok": True}, background=BackgroundTask(runs.append, "task ran"))

    async with http_client(app) as client:
        for _ in range(2):
            first = await client.get("/login")
            assert first.cookies["session"] == "for-one-caller-only"
            assert (await client.get("/stream")).content == b"ab"
            assert (await client.get("/audit")).json() == {"ok": True}
    assert runs == ["cookie", "stream", "task", "task ran"] * 2
    assert await cache.keys("odd:*") == []


async def test_a_response_that_sets_a_cookie_is_never_shared_by_a_joined_flight(
    cache: Cache,
) -> None:
    """Two concurrent requests for one key share one computation (single-flight). When that
    computation's response may not be shared (here it sets a cookie), the request that joined
    gets a response computed for itself, never the other request's cookie."""
    import asyncio

    from fastapi.responses import JSONResponse

    app = FastAPI()
    gate = asyncio.Event()
    issued: list[str] = []

    @app.get("/welcome")
    @cached_route(ttl=60, key_prefix="welcome", cache=cache)
    async def welcome() -> JSONResponse:
        session = f"session-{len(issued)}"
        issued.append(session)
        if len(issued) == 1:
            await gate.wait()  # the first computation is held while the second request joins
        response = JSONResponse({"hello": True})
        response.set_cookie("session", session)
        return response

    async with http_client(app) as client:
        first = asyncio.create_task(client.get("/welcome"))
        await wait_until(lambda: len(issued) == 1, "the first computation started")
        second = asyncio.create_task(client.get("/welcome"))
        await wait_until(lambda: cache.stats()["welcome"].misses == 2, "the second looked up")
        gate.set()
        cookies = sorted([(await first).cookies["session"], (await second).cookies["session"]])
    assert cookies == ["session-0", "session-1"]  # one each, never the same cookie twice


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until another task reaches the point the test drives it to."""
    import asyncio

    try:
        async with asyncio.timeout(10):  # a bound on a broken test, not a speed assertion
            while not condition():
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def test_headers_set_on_the_injected_response_are_stored_and_replayed(
    cache: Cache,
) -> None:
    from fastapi import Response

    app = FastAPI()
    runs: list[str] = []

    @app.get("/tagged")
    @cached_route(ttl=60, key_prefix="tagged", cache=cache)
    async def tagged(response: Response) -> dict[str, int]:
        runs.append("tagged")
        response.headers["x-computed-by"] = "worker-1"
        return {"n": 1}

    @app.get("/greets")
    @cached_route(ttl=60, key_prefix="greets", cache=cache)
    async def greets(response: Response) -> dict[str, int]:
        runs.append("greets")
        response.set_cookie("seen", "yes")
        return {"n": 2}

    async with http_client(app) as client:
        for _ in range(2):
            hit = await client.get("/tagged")
            assert hit.json() == {"n": 1}
            assert hit.headers["x-computed-by"] == "worker-1"  # on the miss and on the hit
            greeted = await client.get("/greets")
            assert greeted.cookies["seen"] == "yes"
    assert runs == ["tagged", "greets", "greets"]  # a cookie is never stored
