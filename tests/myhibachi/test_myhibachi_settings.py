"""Settings: defaults that need no server; the environment switches database and cache."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pydantic import ValidationError

from myhibachi.settings import DEFAULT_DATABASE_URL, Settings, SettingsError, load_settings

_ENV = (
    "DATABASE_URL",
    "FRESHCACHE_URL",
    "FRESHCACHE_NAMESPACE",
    "MYHIBACHI_MAX_BODY_BYTES",
    "MYHIBACHI_MAX_ERROR_ENTRIES",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_run_without_a_server() -> None:
    settings = Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.cache_url == "memory://"
    assert settings.cache_namespace == "myhibachi"
    assert settings.invalidation == "granular"
    assert settings.time_slots == ("12:00", "15:00", "18:00", "21:00")
    assert settings.chefs_per_slot == 3
    assert settings.max_body_bytes == 65536
    assert settings.max_error_entries == 20


def test_environment_switches_database_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/bookings")
    monkeypatch.setenv("FRESHCACHE_URL", "redis://cache:6379/0")
    monkeypatch.setenv("FRESHCACHE_NAMESPACE", "staging")
    monkeypatch.setenv("MYHIBACHI_TIME_SLOTS", "17:30, 11:00")
    monkeypatch.setenv("MYHIBACHI_CHEFS_PER_SLOT", "5")
    monkeypatch.setenv("MYHIBACHI_INVALIDATION", "broad")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://u@db/bookings"
    assert settings.cache_url == "redis://cache:6379/0"
    assert settings.cache_namespace == "staging"
    assert settings.time_slots == ("11:00", "17:30")
    assert settings.chefs_per_slot == 5
    assert settings.invalidation == "broad"


@pytest.mark.parametrize(
    "overrides",
    [
        {"time_slots": ("25:00",)},
        {"time_slots": ()},
        {"time_slots": ("12:00", "12:00")},
        {"chefs_per_slot": 0},
        {"invalidation": "sometimes"},
        {"max_body_bytes": 1023},
        {"max_body_bytes": 64 * 1024 * 1024 + 1},
        {"max_error_entries": 0},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYHIBACHI_MAX_BODY_BYTES", "1048576")
    monkeypatch.setenv("MYHIBACHI_MAX_ERROR_ENTRIES", "5")
    settings = load_settings()
    assert settings.max_body_bytes == 1048576
    assert settings.max_error_entries == 5


def test_bad_settings_name_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYHIBACHI_MAX_BODY_BYTES", "lots")
    monkeypatch.setenv("MYHIBACHI_MAX_ERROR_ENTRIES", "0")
    monkeypatch.setenv("MYHIBACHI_TIME_SLOTS", "9" * 10_000)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid settings:"
    assert {line.split(":")[0].strip() for line in lines[1:]} == {
        "MYHIBACHI_MAX_BODY_BYTES",
        "MYHIBACHI_MAX_ERROR_ENTRIES",
        "MYHIBACHI_TIME_SLOTS",
    }
    assert "greater than or equal to 1" in str(raised.value)
    assert len(str(raised.value)) < 1000  # a 10,000-character value is not echoed whole


def test_aliased_settings_are_named_by_their_variable() -> None:
    with pytest.raises(SettingsError, match="FRESHCACHE_NAMESPACE"):
        load_settings(cache_namespace=123)


def test_price_rules() -> None:
    settings = Settings()
    monday = dt.date(2030, 6, 3)
    saturday = dt.date(2030, 6, 8)
    assert monday.weekday() == 0
    assert saturday.weekday() == 5
    assert settings.price_for(4, monday) == Decimal("550.00")  # the minimum
    assert settings.price_for(12, monday) == Decimal("720.00")  # 12 x 60
    assert settings.price_for(12, saturday) == Decimal("792.00")  # +10 % on weekends


def test_the_near_cache_is_on_by_default_with_redis_only() -> None:
    from myhibachi.settings import load_settings

    assert load_settings(cache_url="memory://").cache_near_lease == 0.0
    assert load_settings(cache_url="redis://cache:6379/0").cache_near_lease == 0.05
    assert load_settings(cache_url="redis://cache:6379/0", near_lease=0).cache_near_lease == 0.0
    assert load_settings(cache_url="memory://", near_lease=0.2).cache_near_lease == 0.0
