"""recaps and what the tutor remembers of each learner

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:00:00.000000

Two new tables, nothing rebuilt: `lesson_recaps` (one per lesson, written by the language model when the lesson
ends) and `learner_facts` (what the tutor remembers about a learner, per companion).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lesson_recaps",
        sa.Column("lesson_id", ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("covered", sa.Text(), nullable=False),
        sa.Column("hard", sa.Text(), nullable=False),
        sa.Column("review_questions", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'ready', 'too_short', 'failed')", name="ck_lesson_recaps_status"),
        sa.ForeignKeyConstraint(
            ["lesson_id"], ["lessons.id"], ondelete="CASCADE", name="fk_lesson_recaps_lesson_id_lessons"
        ),
        sa.PrimaryKeyConstraint("lesson_id", name="pk_lesson_recaps"),
    )
    op.create_table(
        "learner_facts",
        sa.Column("id", ID, nullable=False),
        sa.Column("learner_id", ID, nullable=False),
        sa.Column("companion_id", ID, nullable=False),
        sa.Column("text", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["users.id"], ondelete="CASCADE", name="fk_learner_facts_learner_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["companion_id"], ["companions.id"], ondelete="CASCADE", name="fk_learner_facts_companion_id_companions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_learner_facts"),
    )
    op.create_index("ix_learner_facts_learner_companion", "learner_facts", ["learner_id", "companion_id"])


def downgrade() -> None:
    op.drop_index("ix_learner_facts_learner_companion", table_name="learner_facts")
    op.drop_table("learner_facts")
    op.drop_table("lesson_recaps")
