"""teaching styles and learners' review questions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:00:00.000000

`companions.teaching` (explain, socratic, quiz) is added as a plain column with its default, which leaves SQLite's
table in place (a CHECK would rebuild it); the allowed values are checked where a companion is saved.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("companions", sa.Column("teaching", sa.String(length=10), nullable=False, server_default="explain"))
    op.create_table(
        "review_progress",
        sa.Column("id", ID, nullable=False),
        sa.Column("learner_id", ID, nullable=False),
        sa.Column("companion_id", ID, nullable=False),
        sa.Column("question", sa.String(length=500), nullable=False),
        sa.Column("lesson_id", ID, nullable=True),
        sa.Column("asked_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("answered_correctly_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_asked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["users.id"], ondelete="CASCADE", name="fk_review_progress_learner_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["companion_id"], ["companions.id"], ondelete="CASCADE", name="fk_review_progress_companion_id_companions"
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"], ["lessons.id"], ondelete="SET NULL", name="fk_review_progress_lesson_id_lessons"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_progress"),
        sa.UniqueConstraint("learner_id", "companion_id", "question", name="uq_review_progress_question"),
    )


def downgrade() -> None:
    op.drop_table("review_progress")
    with op.batch_alter_table("companions") as batch_op:
        batch_op.drop_column("teaching")
