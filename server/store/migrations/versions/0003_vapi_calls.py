"""hosted calls: lessons remember their Vapi call, transcript entries their webhook id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 11:20:00.000000

Only nullable columns and indexes are added, never constraints: SQLite adds those in place, where a constraint
would rebuild `lessons` through batch mode, and dropping the old parent table cascades deletes onto
`transcript_entries` while foreign keys are on. The unique indexes give the same guarantee as constraints.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lessons", sa.Column("external_call_id", sa.String(length=100), nullable=True))
    op.add_column("lessons", sa.Column("call_reported_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_lessons_external_call_id", "lessons", ["external_call_id"], unique=True)
    op.add_column("transcript_entries", sa.Column("external_id", sa.String(length=100), nullable=True))
    op.create_index(
        "ix_transcript_entries_lesson_external",
        "transcript_entries",
        ["lesson_id", "external_id"],
        unique=True,
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35) rather than batch mode, for the same reason as above.
    op.drop_index("ix_transcript_entries_lesson_external", table_name="transcript_entries")
    op.drop_column("transcript_entries", "external_id")
    op.drop_index("ix_lessons_external_call_id", table_name="lessons")
    op.drop_column("lessons", "call_reported_at")
    op.drop_column("lessons", "external_call_id")
