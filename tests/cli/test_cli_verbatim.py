"""Keys, prefixes and patterns are printed as they are: no Rich markup, no emoji, never cut.

Rich would print ``user:id:42`` as ``user🆔42``, ``orders:new:`` as ``orders🆕`` and drop
``[bold]`` as a style tag; at 80 columns (the width of a pipe) a table would shorten long
prefixes to ``bookin…``. What the commands show must paste back into ``freshcache inspect``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from cli_support import has_whole, run

import freshcache

#: Key segments that Rich reads as emoji codes (:id:, :new:, :notes:) or as markup ([bold]).
TRICKY_RAW = ("[bold]:report:0123456789abcdef", "legacy:[red]x[/red]:0123456789abcdef")


async def store_entries(url: str, namespace: str) -> list[str]:
    """Real entries whose keys contain ``:id:`` and ``:new:``; returns their keys."""
    cache = freshcache.Cache.from_url(url, namespace=namespace, timeout=2.0)
    try:

        @cache.cached(ttl=60, key_prefix="user:id:{user_id}")
        async def get_user(user_id: int) -> dict[str, int]:
            return {"id": user_id}

        @cache.cached(ttl=60, key_prefix="orders:new")
        async def list_new_orders() -> list[int]:
            return [1, 2]

        await get_user(42)
        await list_new_orders()
        return sorted(await cache.keys("*"))
    finally:
        await cache.aclose()


@pytest.fixture
def planted(redis_url: str, unique_namespace: str, redis_client: redis.Redis) -> list[str]:
    keys = asyncio.run(store_entries(redis_url, unique_namespace))
    for raw in TRICKY_RAW:
        redis_client.set(f"{unique_namespace}:{raw}", b"x" * 10, px=60_000)
    relative = [k.removeprefix(unique_namespace + ":") for k in keys]
    assert any(":id:" in k for k in relative)
    assert any(k.startswith("orders:new:") for k in relative)
    return relative


@pytest.mark.usefixtures("narrow")
def test_keys_are_printed_verbatim_and_whole_at_80_columns(
    redis_url: str, unique_namespace: str, planted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["keys", redis_url, "*", "-n", unique_namespace], capsys)
    assert code == 0, err
    for key in [*planted, *TRICKY_RAW]:
        assert has_whole(out, key), f"{key!r} not printed whole:\n{out}"
    assert "🆔" not in out
    assert "🆕" not in out
    listed = out.splitlines()[2:-1]  # after the title and the header, before the count
    assert out.splitlines()[-1].startswith(f"{len(listed)} key(s)")
    # and freshcache's own keys (prefix and entry tokens, the server identity: "__...")
    assert len([line for line in listed if not line.split()[-1].startswith("__")]) == 4
    # Every line but the listing's own key lines fits the 80 columns.
    wide = [line for line in out.splitlines() if len(line) > 80]
    assert all(any(key in line for key in [*planted, *TRICKY_RAW]) for line in wide)


def test_a_listed_key_pastes_back_into_inspect(
    redis_url: str, unique_namespace: str, planted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["keys", redis_url, "user:*", "-n", unique_namespace], capsys)
    assert code == 0
    (line,) = [line for line in out.splitlines() if ":id:" in line and "get_user" in line]
    shown = line.split()[-1]  # the key is the last column
    code, out, err = run(["inspect", redis_url, shown, "-n", unique_namespace, "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["state"] == "entry"
    assert info["valid"] is True
    assert info["value"] == {"id": 42}

    code, out, _ = run(["inspect", redis_url, shown, "-n", unique_namespace], capsys)
    assert code == 0
    assert has_whole(out, shown) or has_whole(out, f"{unique_namespace}:{shown}")
    assert "🆔" not in out


def test_keys_json(
    redis_url: str, unique_namespace: str, planted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["keys", redis_url, "*", "-n", unique_namespace, "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["namespace"] == unique_namespace
    assert doc["complete"] is True
    listed = {k["key"]: k for k in doc["keys"]}
    users = {k: v for k, v in listed.items() if not k.startswith("__")}  # not freshcache's
    assert set(users) == {*planted, *TRICKY_RAW}
    assert all(v["ttl_ms"] is not None and 0 < v["ttl_ms"] <= 60_000 for v in users.values())
    assert all(v["bytes"] > 0 for v in users.values())


def test_invalidate_echoes_the_pattern_verbatim(
    redis_url: str, unique_namespace: str, planted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for pattern in ("user:id:*", "orders:new:*", "notes:kitchen:*"):
        code, out, err = run(["invalidate", redis_url, pattern, "-n", unique_namespace], capsys)
        assert code == 0, err
        assert f"invalidated {unique_namespace}:{pattern} (generation token replaced" in out
        assert "🎶" not in out
    code, out, _ = run(
        ["invalidate", redis_url, "user:id:*", "-n", unique_namespace, "--json"], capsys
    )
    assert code == 0
    assert json.loads(out) == {
        "namespace": unique_namespace,
        "pattern": "user:id:*",
        "kind": "generation",
        "applied": True,
    }
    code, out, _ = run(["keys", redis_url, "user:*", "-n", unique_namespace], capsys)
    (line,) = [line for line in out.splitlines() if "get_user" in line]
    code, out, _ = run(
        ["inspect", redis_url, line.split()[-1], "-n", unique_namespace, "--json"], capsys
    )
    assert json.loads(out)["valid"] is False  # the generation moved on


def test_errors_quote_user_input_verbatim(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(["keys", redis_url, "[bold]:new:[", "-n", "x"], capsys)
    assert code == 2
    assert "'[bold]:new:['" in err
    assert "🆕" not in err


def test_control_characters_cannot_reach_the_terminal(
    redis_url: str,
    unique_namespace: str,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hostile = "evil:\x1b[2J\x1b]0;owned\x07:line\nbreak"
    redis_client.set(f"{unique_namespace}:{hostile}", b"x", px=60_000)
    code, out, _ = run(["keys", redis_url, "evil:*", "-n", unique_namespace], capsys)
    assert code == 0
    assert "\x1b" not in out
    assert "\x07" not in out
    assert has_whole(out, "evil:\\x1b[2J\\x1b]0;owned\\x07:line\\x0abreak")
    code, out, _ = run(["keys", redis_url, "evil:*", "-n", unique_namespace, "--json"], capsys)
    assert [k["key"] for k in json.loads(out)["keys"]] == [hostile]  # exact in JSON
