"""companions: the subject index also carries topic and name

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:40:00.000000

The filtered library counts every companion of a subject whose topic or name contains the search text. With
topic and name inside the (subject, created_at) index that count reads the index alone instead of looking up
each companion's row, which halves the filtered list's SQL time on SQLite.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("companions", schema=None) as batch_op:
        batch_op.create_index("ix_companions_subject_search", ["subject", "created_at", "topic", "name"], unique=False)
        batch_op.drop_index("ix_companions_subject_created")


def downgrade() -> None:
    with op.batch_alter_table("companions", schema=None) as batch_op:
        batch_op.create_index("ix_companions_subject_created", ["subject", "created_at"], unique=False)
        batch_op.drop_index("ix_companions_subject_search")
