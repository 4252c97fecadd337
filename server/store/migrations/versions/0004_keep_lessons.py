"""keep lessons: companions are archived, lessons keep a snapshot of theirs, server instances hold live lessons

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000

`lessons.companion_id` becomes nullable with ON DELETE SET NULL (it cascaded before, so erasing a companion
erased every learner's lessons with it). Changing a foreign key rebuilds `lessons` on SQLite, and dropping the
old table would cascade-delete every transcript entry if foreign keys were enforced: `Database.upgrade()` runs
SQLite migrations with `PRAGMA foreign_keys=OFF` (set before the transaction begins, where it takes effect) and
checks `PRAGMA foreign_key_check` before committing. This migration refuses to run on SQLite otherwise.

Downgrading needs every lesson to still have its companion; archived companions come back into the library.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("ended_at IS NULL")
FK = "fk_lessons_companion_id_companions"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _refuse_enforced_foreign_keys() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "0004 rebuilds `lessons`, which with foreign keys enforced would delete every transcript; "
            "run it through `tutor db upgrade`, which turns them off for the migration"
        )


def _library_indexes(archived: list[str]) -> None:
    """The library's two indexes, with `archived` (["archived_at"] or []) trailing so its counts stay index-only."""
    op.drop_index("ix_companions_subject_search", table_name="companions")
    op.drop_index("ix_companions_created", table_name="companions")
    op.create_index("ix_companions_subject_search", "companions", ["subject", "created_at", "topic", "name", *archived])
    op.create_index("ix_companions_created", "companions", ["created_at", *archived])


def upgrade() -> None:
    _refuse_enforced_foreign_keys()
    op.add_column("companions", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    _library_indexes(["archived_at"])

    op.add_column("lessons", sa.Column("companion_name", sa.String(length=100), nullable=True))
    op.add_column("lessons", sa.Column("companion_subject", sa.String(length=20), nullable=True))
    op.add_column("lessons", sa.Column("companion_topic", sa.String(length=200), nullable=True))
    op.add_column("lessons", sa.Column("holder", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE lessons SET "
        "companion_name = (SELECT c.name FROM companions c WHERE c.id = lessons.companion_id), "
        "companion_subject = (SELECT c.subject FROM companions c WHERE c.id = lessons.companion_id), "
        "companion_topic = (SELECT c.topic FROM companions c WHERE c.id = lessons.companion_id)"
    )
    # PostgreSQL alters in place; SQLite copies `lessons` into a new table (with foreign keys off, see above).
    with op.batch_alter_table("lessons") as batch_op:
        batch_op.alter_column("companion_id", existing_type=ID, nullable=True)
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.create_foreign_key(FK, "companions", ["companion_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_lessons_open_holder", "lessons", ["holder"], sqlite_where=OPEN, postgresql_where=OPEN)

    op.create_table(
        "server_instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_instances")),
    )


def downgrade() -> None:
    _refuse_enforced_foreign_keys()
    orphans = op.get_bind().exec_driver_sql("SELECT count(*) FROM lessons WHERE companion_id IS NULL").scalar()
    if orphans:
        raise RuntimeError(f"cannot downgrade below 0004: {orphans} lessons outlived their companion")
    op.drop_table("server_instances")
    op.drop_index("ix_lessons_open_holder", table_name="lessons")
    with op.batch_alter_table("lessons") as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.create_foreign_key(FK, "companions", ["companion_id"], ["id"], ondelete="CASCADE")
        batch_op.alter_column("companion_id", existing_type=ID, nullable=False)
        batch_op.drop_column("holder")
        batch_op.drop_column("companion_topic")
        batch_op.drop_column("companion_subject")
        batch_op.drop_column("companion_name")
    _library_indexes([])
    op.drop_column("companions", "archived_at")
