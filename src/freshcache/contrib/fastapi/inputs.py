"""What a route's response depends on, read from its signature at decoration time.

FastAPI declares a route's inputs in its signature: path and query parameters, ``Header()`` and
``Cookie()`` parameters, and dependencies (``Depends``/``Security``) with inputs of their own.
From that, this module derives, without running anything:

- which parameters are framework objects (``Request``, ``Response``, ...), never part of a key;
- the request headers the key depends on (for ``Vary``);
- whether the response depends on *who calls*: a security scheme, a cookie, or an
  ``Authorization`` header anywhere in the dependency tree that is not itself in the key.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import params
from fastapi.security import APIKeyCookie, APIKeyHeader, APIKeyQuery
from fastapi.security.base import SecurityBase
from starlette.background import BackgroundTasks
from starlette.requests import HTTPConnection
from starlette.responses import Response

#: Parameters of these types are filled by the framework: never in a key.
FRAMEWORK_TYPES: tuple[type, ...] = (HTTPConnection, Response, BackgroundTasks)
#: Request headers that carry the caller's identity.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_MAX_DEPTH = 32  # dependency trees deeper than this are a mistake, not a design


@dataclasses.dataclass(frozen=True, slots=True)
class RouteInputs:
    """What one route's response depends on."""

    signature: inspect.Signature  # annotations resolved (PEP 563 strings evaluated)
    framework_params: tuple[str, ...]  # Request, Response, BackgroundTasks, ...
    request_param: str | None  # the endpoint's own Request parameter, if it has one
    response_params: tuple[str, ...]  # Response parameters (headers set on them go out too)
    vary: tuple[str, ...]  # headers read by key parameters (Header(), Cookie())
    caller_inputs: tuple[str, ...]  # why the response depends on the caller, if it does
    credential_headers: tuple[str, ...]  # headers the caller's identity is read from


def resolved_signature(func: Callable[..., Any]) -> inspect.Signature:
    """``func``'s signature with string annotations evaluated in its module.

    For a class (a class used as a dependency) the parameters are those of ``__init__``, and
    so are the annotations, falling back to the class's own (dataclasses, pydantic models).
    """
    signature = inspect.signature(func)
    try:
        if inspect.isclass(func):
            hints = {
                **typing.get_type_hints(func, include_extras=True),
                **typing.get_type_hints(func.__init__, include_extras=True),
            }
        else:
            hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        name = getattr(func, "__qualname__", repr(func))
        raise TypeError(f"freshcache: cannot resolve the annotations of {name}: {exc}") from None
    return signature.replace(
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
        ],
        return_annotation=hints.get("return", signature.return_annotation),
    )


def _markers(param: inspect.Parameter) -> tuple[Any, list[Any]]:
    """The parameter's type and its FastAPI markers (from ``Annotated`` and the default)."""
    annotation = param.annotation
    found: list[Any] = []
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
        found.extend(metadata)
    if param.default is not inspect.Parameter.empty:
        found.append(param.default)
    return annotation, found


def _header_name(param: inspect.Parameter, marker: params.Header) -> str:
    if marker.alias:
        return str(marker.alias).lower()
    name = param.name.replace("_", "-") if marker.convert_underscores else param.name
    return name.lower()


def _is_framework(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, FRAMEWORK_TYPES)


def _scheme_inputs(scheme: SecurityBase) -> tuple[str, list[str]]:
    """A security scheme's description and the headers it reads the credential from."""
    name = type(scheme).__name__
    if isinstance(scheme, APIKeyHeader):
        return f"security scheme {name}", [scheme.model.name.lower()]
    if isinstance(scheme, APIKeyCookie):
        return f"security scheme {name}", ["cookie"]
    if isinstance(scheme, APIKeyQuery):
        return f"security scheme {name}", []  # in the URL: the query is already in the key
    return f"security scheme {name}", ["authorization"]  # HTTP auth, OAuth2, OpenID Connect


def _dependency_call(marker: params.Depends, annotation: Any) -> Any:
    return marker.dependency if marker.dependency is not None else annotation


def _walk_dependency(
    call: Any, path: str, depth: int, seen: set[int]
) -> Iterator[tuple[str, list[str]]]:
    """(reason, credential headers) for every caller-identifying input under ``call``."""
    if isinstance(call, SecurityBase):
        reason, headers = _scheme_inputs(call)
        yield f"{reason} (in {path})", headers
        return
    if depth > _MAX_DEPTH or id(call) in seen or not callable(call):
        return
    seen.add(id(call))
    target = call if inspect.isroutine(call) or inspect.isclass(call) else call.__call__
    try:
        signature = resolved_signature(target)
    except (TypeError, ValueError):
        return  # a builtin or an odd callable: nothing FastAPI would read either
    for param in signature.parameters.values():
        yield from _walk_param(param, f"{path} -> {param.name}", depth + 1, seen)


def _walk_param(
    param: inspect.Parameter, path: str, depth: int, seen: set[int]
) -> Iterator[tuple[str, list[str]]]:
    annotation, markers = _markers(param)
    for marker in markers:
        if isinstance(marker, params.Cookie):
            yield f"cookie parameter {param.name!r} (in {path})", ["cookie"]
        elif isinstance(marker, params.Header):
            header = _header_name(param, marker)
            if header in CREDENTIAL_HEADERS:
                yield f"header {header!r} (in {path})", [header]
        elif isinstance(marker, params.Security):
            yield f"Security() dependency (in {path})", ["authorization"]
            yield from _walk_dependency(_dependency_call(marker, annotation), path, depth, seen)
        elif isinstance(marker, params.Depends):
            yield from _walk_dependency(_dependency_call(marker, annotation), path, depth, seen)


def analyse(endpoint: Callable[..., Any], key_excluded: frozenset[str]) -> RouteInputs:
    """Read ``endpoint``'s inputs; ``key_excluded`` are the parameters left out of the key."""
    signature = resolved_signature(endpoint)
    name = getattr(endpoint, "__qualname__", repr(endpoint))
    framework: list[str] = []
    request_param: str | None = None
    response_params: list[str] = []
    vary: list[str] = []
    caller: list[str] = []
    credentials: list[str] = []
    seen: set[int] = set()
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(
                f"freshcache: route {name} takes *{param.name}; FastAPI routes declare each "
                "input by name, and so must a cached route"
            )
        annotation, markers = _markers(param)
        if _is_framework(annotation):
            framework.append(param.name)
            if request_param is None and issubclass(annotation, HTTPConnection):
                request_param = param.name
            if issubclass(annotation, Response):
                response_params.append(param.name)
            continue
        in_key = param.name not in key_excluded
        for marker in markers:
            # A Header()/Cookie() parameter in the key makes the key follow that header.
            if in_key and isinstance(marker, params.Cookie):
                vary.append("cookie")
            elif in_key and isinstance(marker, params.Header):
                vary.append(_header_name(param, marker))
        if in_key and not any(isinstance(m, params.Depends) for m in markers):
            continue  # a plain input in the key: whatever it carries, the key carries too
        for reason, headers in _walk_param(param, f"{name}({param.name})", 1, seen):
            caller.append(reason)
            credentials.extend(headers)
    return RouteInputs(
        signature=signature,
        framework_params=tuple(framework),
        request_param=request_param,
        response_params=tuple(response_params),
        vary=tuple(dict.fromkeys(vary)),
        caller_inputs=tuple(caller),
        credential_headers=tuple(dict.fromkeys(credentials)),
    )
