"""``@cached_route``: a FastAPI route whose response is cached with freshcache's promise.

The response is cached by the same machinery as ``@cached``: the key is built from the
route's parameters with the same binding rules (``{namespace}:{key_prefix}:{qualname}:{hash}``),
so ``@invalidate_cache("booking:*")`` on a write, or ``cache.invalidate(...)``, invalidates the
route's entries too, and a response computed from data older than a write is never served
after that write's invalidation returned.

Each computed entry carries a new ETag. A request with a matching ``If-None-Match`` gets a 304,
but only after the entry was validated against the current generation tokens (the same one
round trip as any hit): an ETag of an invalidated entry never gets a 304.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from freshcache import Cache, cached
from freshcache.contrib.fastapi.conditional import (
    asks_for_fresh,
    if_none_match_matches,
    new_etag,
)
from freshcache.contrib.fastapi.inputs import RouteInputs, analyse
from freshcache.contrib.fastapi.stored import (
    StoredResponse,
    Uncacheable,
    response_adapter,
    store,
    to_response,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Names the wrapper adds to the route's signature; chosen so no route has them already.
REQUEST_PARAM = "freshcache_request_"
CALLER_PARAM = "freshcache_caller_"
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
#: The request whose computation is running: concurrent requests for one key share one
#: computation, and a response that must not be shared has to say whose it is.
_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "freshcache_route_request", default=None
)


class RouteCacheError(TypeError):
    """A route that cannot be cached as declared (found at decoration, before serving)."""


def cached_route(
    ttl: float | datetime.timedelta | None = None,
    key_prefix: str | None = None,
    *,
    exclude: Sequence[str] = (),
    per_user: str | None = None,
    shared: bool = False,
    user_dependent: bool = False,
    no_cache_refreshes: bool = True,
    cache_control: str | None = None,
    cacheable_status: Sequence[int] = (200,),
    response_model: Any = None,
    version: str | int | None = None,
    cache: Cache | None = None,
) -> Callable[[F], F]:
    """Cache a FastAPI route's response; put it *below* ``@app.get(...)``.

    - ``ttl``, ``key_prefix``, ``exclude``, ``version``, ``cache``: as for ``@cached``. The key
      holds every route parameter not excluded; framework objects (``Request``, ``Response``,
      ``BackgroundTasks``) are left out on their own. Exclude dependencies that are tools, not
      inputs (database sessions).
    - ``per_user``: what identifies the caller, as ``"param"`` or ``"param.attr"`` (for
      example ``"user.id"`` with ``user = Depends(current_user)``); its value joins the key.
      Required when the route depends on the caller: a security scheme, a ``Security()``
      dependency, a cookie or an ``Authorization`` header anywhere among its dependencies, or
      ``user_dependent=True`` (say so when the route reads the caller from the ``Request``).
      ``shared=True`` says instead that every caller gets the same response.
    - ``no_cache_refreshes``: a request with ``Cache-Control: no-cache`` recomputes the entry
      (and stores it, with a new ETag) instead of reading it. Off: the header is ignored.
    - ``cache_control``: the response's ``Cache-Control``; default ``no-cache`` (clients may
      keep the response but revalidate it, and a revalidation is answered with 304 only while
      the entry is current), ``private, no-cache`` for per-user routes.
    - ``cacheable_status``: responses with another status are returned and not stored.
    - ``response_model``: the model a returned value is validated and serialised with
      (default: the return annotation), as FastAPI's ``response_model``.
    """
    if per_user is not None and shared:
        raise RouteCacheError("freshcache: per_user= and shared=True contradict each other")
    statuses = frozenset(cacheable_status)

    def decorate(endpoint: F) -> F:
        name = getattr(endpoint, "__qualname__", repr(endpoint))
        if not callable(endpoint):
            raise RouteCacheError(f"freshcache: @cached_route applied to {endpoint!r}")
        excluded = frozenset((exclude,) if isinstance(exclude, str) else exclude)
        inputs = analyse(endpoint, excluded)
        caller_value = _caller_reader(per_user, inputs, name)
        _require_caller_key(inputs, name, per_user, shared, user_dependent)
        plan = _RoutePlan(
            endpoint=endpoint,
            inputs=inputs,
            caller_value=caller_value,
            statuses=statuses,
            adapter=response_adapter(
                response_model
                if response_model is not None
                else _none_if_empty(inputs.signature.return_annotation)
            ),
            vary=_vary(inputs, per_user is not None),
            cache_control=cache_control
            or ("private, no-cache" if per_user is not None else "no-cache"),
            no_cache_refreshes=no_cache_refreshes,
        )
        compute = cached(
            ttl=ttl,
            key_prefix=key_prefix,
            exclude=tuple(sorted(excluded | set(inputs.framework_params))),
            version=version,
            cache=cache,
        )(plan.render_function())
        return plan.wrapper(compute)  # type: ignore[return-value]

    return decorate


def _none_if_empty(annotation: Any) -> Any:
    return None if annotation is inspect.Signature.empty else annotation


def _caller_reader(
    per_user: str | None, inputs: RouteInputs, name: str
) -> Callable[[dict[str, Any]], Any] | None:
    """A function of the call's arguments that returns the caller's identity."""
    if per_user is None:
        return None
    if not isinstance(per_user, str) or not all(p.isidentifier() for p in per_user.split(".")):
        raise RouteCacheError(
            f"freshcache: per_user={per_user!r} must name a parameter or a parameter's "
            "attribute, e.g. 'user' or 'user.id'"
        )
    root, *attrs = per_user.split(".")
    if root not in inputs.signature.parameters:
        raise RouteCacheError(
            f"freshcache: per_user={per_user!r} of route {name}: {root!r} is not one of its "
            f"parameters ({', '.join(inputs.signature.parameters) or 'none'})"
        )

    def read(arguments: dict[str, Any]) -> Any:
        value = arguments[root]
        for attr in attrs:
            value = getattr(value, attr)
        return value

    return read


def _require_caller_key(
    inputs: RouteInputs, name: str, per_user: str | None, shared: bool, user_dependent: bool
) -> None:
    if per_user is not None or shared:
        return
    reasons = list(inputs.caller_inputs)
    if user_dependent:
        reasons.insert(0, "user_dependent=True")
    if reasons:
        raise RouteCacheError(
            f"freshcache: route {name} depends on the caller ({'; '.join(reasons[:3])}) but "
            "its cache key does not: pass per_user='user.id' (a parameter or attribute that "
            "identifies the caller) so one caller's response is never served to another, or "
            "shared=True if every caller gets the same response"
        )


def _vary(inputs: RouteInputs, per_user: bool) -> str:
    headers = list(inputs.vary)
    if per_user:
        headers.extend(inputs.credential_headers or ("authorization", "cookie"))
    return ", ".join(h.title() for h in dict.fromkeys(headers))


class _RoutePlan:
    """Everything decided at decoration time; the per-request path only follows it."""

    def __init__(
        self,
        *,
        endpoint: Callable[..., Any],
        inputs: RouteInputs,
        caller_value: Callable[[dict[str, Any]], Any] | None,
        statuses: frozenset[int],
        adapter: Any,
        vary: str,
        cache_control: str,
        no_cache_refreshes: bool,
    ) -> None:
        self.endpoint = endpoint
        self.inputs = inputs
        self.caller_value = caller_value
        self.statuses = statuses
        self.adapter = adapter
        self.vary = vary
        self.cache_control = cache_control
        self.no_cache_refreshes = no_cache_refreshes
        self.is_async = inspect.iscoroutinefunction(endpoint)
        # The endpoint's own Request parameter, or the one the wrapper adds.
        self.request_param = inputs.request_param or REQUEST_PARAM

    def render_function(self) -> Callable[..., Awaitable[StoredResponse]]:
        """The function ``@cached`` caches: the endpoint's parameters (plus the caller's
        identity) in, the stored response out. It carries the endpoint's name and module, so
        its keys are the ones a ``@cached`` function of that name would have."""
        endpoint = self.endpoint
        call_endpoint = self._call_endpoint
        statuses = self.statuses
        adapter = self.adapter
        injected = self.injected

        async def render(**arguments: Any) -> StoredResponse:
            arguments.pop(CALLER_PARAM, None)
            result = await call_endpoint(arguments)
            response = to_response(result, adapter, injected(arguments))
            return store(response, new_etag(), statuses, _request.get())

        parameters = [
            p for p in self.inputs.signature.parameters.values() if p.name != REQUEST_PARAM
        ]
        if self.caller_value is not None:
            parameters.append(inspect.Parameter(CALLER_PARAM, inspect.Parameter.KEYWORD_ONLY))
        render.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            parameters, return_annotation=StoredResponse
        )
        render.__annotations__ = {"return": StoredResponse}
        render.__name__ = getattr(endpoint, "__name__", "route")
        render.__qualname__ = getattr(endpoint, "__qualname__", render.__name__)
        render.__module__ = getattr(endpoint, "__module__", __name__)
        return render

    def injected(self, arguments: dict[str, Any]) -> list[Response]:
        return [arguments[name] for name in self.inputs.response_params]

    async def _call_endpoint(self, arguments: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.endpoint(**arguments)
        return await run_in_threadpool(self.endpoint, **arguments)

    def wrapper(self, compute: Any) -> Callable[..., Awaitable[Response]]:
        """The function FastAPI calls: the route's signature (plus a Request if it had none)."""
        plan = self
        own_request = self.inputs.request_param is not None

        # Name, module and docstring of the endpoint, but no __wrapped__: FastAPI unwraps a
        # callable to decide whether to await it, and this wrapper is async even when the
        # endpoint is not.
        @functools.wraps(self.endpoint, updated=())
        async def route(**arguments: Any) -> Response:
            request: Request = arguments[plan.request_param]
            if not own_request:
                del arguments[REQUEST_PARAM]
            if request.method not in CACHEABLE_METHODS:
                result = await plan._call_endpoint(arguments)
                return to_response(result, plan.adapter, plan.injected(arguments))
            if plan.caller_value is not None:
                arguments[CALLER_PARAM] = plan.caller_value(arguments)
            _request.set(request)  # seen by the computation, even in a shared flight's task
            refresh = plan.no_cache_refreshes and asks_for_fresh(
                request.headers.get("cache-control"), request.headers.get("pragma")
            )
            try:
                entry: StoredResponse = await (
                    compute.warm(**arguments) if refresh else compute(**arguments)
                )
            except Uncacheable as outcome:
                if outcome.request is request:
                    return outcome.response
                # This request joined another one's computation (single-flight), and that
                # response is not to be shared (it sets a cookie, has a background task, ...):
                # this request gets its own.
                result = await plan._call_endpoint(arguments)
                return to_response(result, plan.adapter, plan.injected(arguments))
            return plan.respond(entry, request.headers.get("if-none-match"))

        parameters = list(self.inputs.signature.parameters.values())
        if not own_request:
            parameters.append(
                inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
            )
        route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            parameters, return_annotation=self.inputs.signature.return_annotation
        )
        del route.__wrapped__
        route.__annotations__ = {}
        return route

    def respond(self, entry: StoredResponse, if_none_match: str | None) -> Response:
        headers = {"etag": entry.etag, "cache-control": self.cache_control}
        if self.vary:
            headers["vary"] = self.vary
        if if_none_match_matches(if_none_match, entry.etag):
            return Response(status_code=304, headers=headers)
        response = Response(content=entry.body, status_code=entry.status_code)
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in entry.headers
        ] + [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        response.headers["content-length"] = str(len(entry.body))
        return response
