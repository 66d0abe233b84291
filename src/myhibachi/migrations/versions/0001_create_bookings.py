"""Create the bookings table with its constraints and the indexes the two cached reads need.

Revision ID: 0001
Revises:
Create Date: 2025-10-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = sa.text("status IN ('pending', 'confirmed')")


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_name", sa.String(120), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("time_slot", sa.String(5), nullable=False),
        sa.Column("guests", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("chef_seat", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'cancelled')", name="ck_bookings_status"
        ),
        sa.CheckConstraint("guests BETWEEN 1 AND 100", name="ck_bookings_guests"),
        sa.CheckConstraint("chef_seat >= 1", name="ck_bookings_chef_seat"),
        sa.CheckConstraint("price_cents >= 0", name="ck_bookings_price"),
    )
    op.create_index(
        "uq_bookings_active_seat",
        "bookings",
        ["event_date", "time_slot", "chef_seat"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_index("ix_bookings_status_event_date", "bookings", ["status", "event_date"])
    op.create_index("ix_bookings_event_date", "bookings", ["event_date"])
    op.create_index("ix_bookings_email", "bookings", ["email"])


def downgrade() -> None:
    op.drop_index("ix_bookings_email", table_name="bookings")
    op.drop_index("ix_bookings_event_date", table_name="bookings")
    op.drop_index("ix_bookings_status_event_date", table_name="bookings")
    op.drop_index("uq_bookings_active_seat", table_name="bookings")
    op.drop_table("bookings")
