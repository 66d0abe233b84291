"""The ``myhibachi`` command: serve, seed, migrate."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from myhibachi.settings import DEFAULT_DATABASE_URL, Settings, SettingsError, load_settings

app = typer.Typer(
    help="MyHibachi booking service (FastAPI + SQLAlchemy + freshcache).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy async URL (default: DATABASE_URL or SQLite)"),
]


def _settings(database_url: str | None, overrides: dict[str, object] | None = None) -> Settings:
    """Settings from the environment, then ``overrides``, then an explicit --database-url.
    Bad settings stop the command before anything starts, with one line per bad value."""
    values = dict(overrides or {})
    if database_url:
        values["database_url"] = database_url
    try:
        return load_settings(**values)
    except SettingsError as exc:
        console.print(str(exc), markup=False, highlight=False, emoji=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="SQLite + memory:// cache, seeded with demo data")
    ] = False,
    database_url: DatabaseUrl = None,
    cache_url: Annotated[
        str | None, typer.Option("--cache-url", help="memory:// or redis://... (FRESHCACHE_URL)")
    ] = None,
    bookings: Annotated[int, typer.Option(help="demo bookings to seed with --demo")] = 400,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run the service with uvicorn (JSON logs on stderr)."""
    import uvicorn

    from myhibachi.api import create_app
    from myhibachi.observability import configure_logging

    overrides: dict[str, object] = {}
    if demo:
        # The README's first command: no server needed, whatever the environment says.
        overrides.update(
            database_url=DEFAULT_DATABASE_URL,
            cache_url="memory://",
            demo=True,
            demo_bookings=bookings,
        )
    if cache_url:
        overrides["cache_url"] = cache_url
    settings = _settings(database_url, overrides)
    configure_logging(log_level.upper())
    console.print(
        f"[bold]MyHibachi[/] on [link]http://{host}:{port}[/] "
        f"(database {settings.database_url.split('://')[0]}, cache {settings.cache_url})"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        log_level=log_level.lower(),
    )


@app.command()
def seed(
    bookings: Annotated[int, typer.Option(min=0, help="demo bookings that should exist")] = 400,
    database_url: DatabaseUrl = None,
    random_seed: Annotated[int, typer.Option("--seed", help="random seed")] = 2025,
) -> None:
    """Add demo bookings until there are N (idempotent), then invalidate the cached reads."""
    settings = _settings(database_url)
    added = asyncio.run(_seed(settings, bookings, random_seed))
    console.print(f"[green]seeded[/] {added} new demo bookings ({bookings} wanted)")


async def _seed(settings: Settings, bookings: int, random_seed: int) -> int:
    import freshcache
    from myhibachi import migrate
    from myhibachi.db import Database
    from myhibachi.seed import count_demo, seed_demo

    db = Database(settings.database_url)
    try:
        await migrate.upgrade(db)
        missing = max(bookings - await count_demo(db), 0)
        with Progress(
            TextColumn("seeding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=missing < 1000,
        ) as progress:
            task = progress.add_task("seed", total=missing)
            added = await seed_demo(
                db,
                settings,
                bookings,
                seed=random_seed,
                progress=lambda n: progress.advance(task, n),
            )
        if added:
            # A running service may have cached stats and availability: drop them all.
            cache = freshcache.configure(
                url=settings.cache_url,
                namespace=settings.cache_namespace,
                timeout=settings.cache_timeout,
                near_lease=settings.cache_near_lease,
            )
            await cache.invalidate("booking:*")
            await cache.aclose()
        return added
    finally:
        await db.dispose()


@app.command("migrate")
def migrate_command(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Apply the Alembic migrations (to head by default)."""
    settings = _settings(database_url)
    current = asyncio.run(_migrate(settings, revision))
    console.print(f"[green]database at revision[/] {current}")


async def _migrate(settings: Settings, revision: str) -> str | None:
    from myhibachi import migrate
    from myhibachi.db import Database

    db = Database(settings.database_url)
    try:
        await migrate.upgrade(db, revision)
        return await migrate.current_revision(db)
    finally:
        await db.dispose()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
