"""The Alembic migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from myhibachi import migrate
from myhibachi.db import Database
from myhibachi.models import Base


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        "tables": sorted(t for t in inspector.get_table_names() if t != "alembic_version"),
        "columns": sorted(c["name"] for c in inspector.get_columns("bookings"))
        if inspector.has_table("bookings")
        else [],
        "indexes": sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes("bookings")
        )
        if inspector.has_table("bookings")
        else [],
    }


async def test_upgrade_downgrade_and_models_agree(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate.upgrade(db)
        await migrate.upgrade(db)  # idempotent
        assert await migrate.current_revision(db) == migrate.head_revision()
        async with db.engine.connect() as conn:
            schema = await conn.run_sync(_schema)
        table = Base.metadata.tables["bookings"]
        assert schema["tables"] == ["bookings"]
        assert schema["columns"] == sorted(c.name for c in table.columns)
        assert schema["indexes"] == sorted(
            (i.name, tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes
        )
        assert ("uq_bookings_active_seat", ("event_date", "time_slot", "chef_seat"), True) in (
            schema["indexes"]
        )

        await migrate.downgrade(db, "base")
        async with db.engine.connect() as conn:
            assert (await conn.run_sync(_schema))["tables"] == []
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()
