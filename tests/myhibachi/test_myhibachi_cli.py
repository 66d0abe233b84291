"""The myhibachi command: migrate, seed (idempotent), and serve --demo's settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from myhibachi import cli
from myhibachi.db import Database
from myhibachi.seed import count_demo
from myhibachi.settings import Settings

runner = CliRunner()


def _count(url: str) -> int:
    async def run() -> int:
        db = Database(url)
        try:
            return await count_demo(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_migrate_then_seed_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("FRESHCACHE_URL", raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.sqlite3"
    result = runner.invoke(cli.app, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "0001" in result.output

    first = runner.invoke(cli.app, ["seed", "--bookings", "1200", "--database-url", url])
    assert first.exit_code == 0, first.output
    assert "1200 new" in first.output
    assert _count(url) == 1200

    again = runner.invoke(cli.app, ["seed", "--bookings", "1200", "--database-url", url])
    assert again.exit_code == 0
    assert "0 new" in again.output
    more = runner.invoke(cli.app, ["seed", "--bookings", "1250", "--database-url", url])
    assert "50 new" in more.output
    assert _count(url) == 1250


def test_serve_demo_uses_sqlite_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(app: object, **kwargs: object) -> None:
        seen.update(kwargs, app=app)

    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://elsewhere/db")
    monkeypatch.setenv("FRESHCACHE_URL", "redis://elsewhere:1/0")
    monkeypatch.setattr("uvicorn.run", fake_run)
    monkeypatch.setattr("myhibachi.observability.configure_logging", lambda level: None)
    created: list[Settings] = []

    def fake_create_app(settings: Settings) -> str:
        created.append(settings)
        return "app"

    monkeypatch.setattr("myhibachi.api.create_app", fake_create_app)
    result = runner.invoke(cli.app, ["serve", "--demo", "--port", "8123"])
    assert result.exit_code == 0, result.output
    (settings,) = created
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.cache_url == "memory://"
    assert settings.demo is True
    assert seen["port"] == 8123
    assert seen["host"] == "127.0.0.1"


def test_serve_refuses_bad_settings_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: started.append(app))
    monkeypatch.setenv("MYHIBACHI_MAX_BODY_BYTES", "12")
    result = runner.invoke(cli.app, ["serve", "--demo"])
    assert result.exit_code == 2
    assert "invalid settings:" in result.output
    assert "MYHIBACHI_MAX_BODY_BYTES: Input should be greater than or equal to 1024" in (
        result.output
    )
    assert "Traceback" not in result.output
    assert started == []


def test_help_lists_the_commands() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "seed", "migrate"):
        assert command in result.output
