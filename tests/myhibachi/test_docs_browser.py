"""/docs (Swagger UI) and /redoc render every operation in a headless Chromium whose network
is closed: their scripts and styles come from the service itself, not from a CDN."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html
from hibachi_support import OFFLINE, live_server, run_chromium

pytestmark = pytest.mark.browser

# Time for the page's scripts to fetch /openapi.json and render (virtual time: Chromium
# ends as soon as the page is idle, and this is only the upper bound).
RENDER = "--virtual-time-budget=30000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(tmp_path_factory.mktemp("docs"), bookings=5) as base:
        yield base


def _operations(base: str) -> set[tuple[str, str]]:
    schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
    return {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_the_browser_network_is_closed(tmp_path: Path) -> None:
    """The control: FastAPI's stock /docs loads Swagger UI from this CDN URL; in the test
    browser that script does not load, so a page that needed it could not render."""
    cdn = inspect.signature(get_swagger_ui_html).parameters["swagger_js_url"].default
    assert cdn.startswith("https://")
    page = tmp_path / "cdn.html"
    page.write_text(
        '<!DOCTYPE html><html><body data-cdn="pending">'
        f'<script src="{cdn}" onload="document.body.dataset.cdn=\'loaded\'"'
        " onerror=\"document.body.dataset.cdn='blocked'\"></script></body></html>"
    )
    dom = run_chromium(page.as_uri(), *OFFLINE, RENDER, "--dump-dom")
    assert 'data-cdn="blocked"' in dom


def test_docs_page_renders_every_operation_offline(server: str) -> None:
    html = httpx.get(f"{server}/docs", timeout=10).text
    assert not re.search(r"""(src|href)=["']https?://""", html), "the page links off the service"

    dom = run_chromium(f"{server}/docs", *OFFLINE, RENDER, "--dump-dom")
    rendered = set(
        re.findall(
            r'opblock-summary-method">([A-Z]+)<.*?opblock-summary-path" data-path="([^"]+)"',
            dom,
            flags=re.S,
        )
    )
    expected = _operations(server)
    assert len(expected) >= 8
    assert rendered == expected


def test_redoc_page_renders_the_operations_offline(server: str) -> None:
    html = httpx.get(f"{server}/redoc", timeout=10).text
    assert not re.search(r"""(src|href)=["']https?://""", html), "the page links off the service"

    dom = run_chromium(f"{server}/redoc", *OFFLINE, RENDER, "--dump-dom")
    for summary in ("Book a chef for an event", "pending -&gt; confirmed", "Dashboard statistics"):
        assert summary in dom, summary
    for _method, path in _operations(server):
        assert path in dom, path
