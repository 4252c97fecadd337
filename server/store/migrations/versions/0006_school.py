"""the school: roles, classes and their companions, safety flags and alerts, the audit log, school settings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:00:00.000000

`users.is_admin` becomes `users.role` (learner, teacher, admin), and `companions.voice` now holds an installed
voice's name, so its check on "male"/"female" goes. Both rebuild their table on SQLite, which
`Database.upgrade()` runs with foreign keys off (dropping an old parent table would otherwise cascade onto every
lesson, bookmark and session); this migration refuses to run on SQLite otherwise.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ROLE_CHECK = "role IN ('learner', 'teacher', 'admin')"


def _refuse_enforced_foreign_keys() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "0006 rebuilds `companions`, which with foreign keys enforced would delete every bookmark; "
            "run it through `tutor db upgrade`, which turns them off for the migration"
        )


def _created(column: str = "created_at") -> sa.Column:
    return sa.Column(column, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    _refuse_enforced_foreign_keys()
    op.add_column("users", sa.Column("role", sa.String(length=16), nullable=False, server_default="learner"))
    op.execute("UPDATE users SET role = 'admin' WHERE is_admin")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("is_admin")
        batch_op.create_check_constraint("role", ROLE_CHECK)

    with op.batch_alter_table("companions") as batch_op:
        batch_op.drop_constraint(op.f("ck_companions_voice"), type_="check")
        batch_op.alter_column("voice", existing_type=sa.String(length=10), type_=sa.String(length=64))

    op.create_table(
        "school_classes",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("teacher_id", ID, nullable=False),
        sa.Column("join_code", sa.String(length=16), nullable=False),
        sa.Column("join_code_expires_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(
            ["teacher_id"], ["users.id"], ondelete="CASCADE", name="fk_school_classes_teacher_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_school_classes"),
        sa.UniqueConstraint("join_code", name="uq_school_classes_join_code"),
    )
    op.create_index("ix_school_classes_teacher", "school_classes", ["teacher_id"])
    op.create_table(
        "class_members",
        sa.Column("class_id", ID, nullable=False),
        sa.Column("learner_id", ID, nullable=False),
        _created("added_at"),
        sa.ForeignKeyConstraint(
            ["class_id"], ["school_classes.id"], ondelete="CASCADE", name="fk_class_members_class_id_school_classes"
        ),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["users.id"], ondelete="CASCADE", name="fk_class_members_learner_id_users"
        ),
        sa.PrimaryKeyConstraint("class_id", "learner_id", name="pk_class_members"),
    )
    op.create_index("ix_class_members_learner", "class_members", ["learner_id"])
    op.create_table(
        "class_companions",
        sa.Column("class_id", ID, nullable=False),
        sa.Column("companion_id", ID, nullable=False),
        _created("added_at"),
        sa.ForeignKeyConstraint(
            ["class_id"], ["school_classes.id"], ondelete="CASCADE", name="fk_class_companions_class_id_school_classes"
        ),
        sa.ForeignKeyConstraint(
            ["companion_id"], ["companions.id"], ondelete="CASCADE", name="fk_class_companions_companion_id_companions"
        ),
        sa.PrimaryKeyConstraint("class_id", "companion_id", name="pk_class_companions"),
    )
    op.create_table(
        "safety_flags",
        sa.Column("id", ID, nullable=False),
        sa.Column("lesson_id", ID, nullable=False),
        sa.Column("learner_id", ID, nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        _created(),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high')", name="ck_safety_flags_severity"),
        sa.ForeignKeyConstraint(
            ["lesson_id"], ["lessons.id"], ondelete="CASCADE", name="fk_safety_flags_lesson_id_lessons"
        ),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["users.id"], ondelete="CASCADE", name="fk_safety_flags_learner_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_safety_flags"),
    )
    op.create_index("ix_safety_flags_learner_created", "safety_flags", ["learner_id", "created_at"])
    op.create_index("ix_safety_flags_lesson", "safety_flags", ["lesson_id"])
    op.create_index("ix_safety_flags_created", "safety_flags", ["created_at"])
    op.create_table(
        "alerts",
        sa.Column("id", ID, nullable=False),
        sa.Column("flag_id", ID, nullable=False),
        sa.Column("recipient_id", ID, nullable=False),
        _created(),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["flag_id"], ["safety_flags.id"], ondelete="CASCADE", name="fk_alerts_flag_id_safety_flags"
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"], ["users.id"], ondelete="CASCADE", name="fk_alerts_recipient_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_recipient_created", "alerts", ["recipient_id", "created_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("actor_id", ID, nullable=True),
        sa.Column("actor_email", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("learner_id", ID, nullable=True),
        sa.Column("lesson_id", ID, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], ondelete="SET NULL", name="fk_audit_log_actor_id_users"),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["users.id"], ondelete="SET NULL", name="fk_audit_log_learner_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"], ["lessons.id"], ondelete="SET NULL", name="fk_audit_log_lesson_id_lessons"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "school_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_school_settings"),
    )


def downgrade() -> None:
    _refuse_enforced_foreign_keys()
    for table in ("school_settings", "audit_log", "alerts", "safety_flags", "class_companions", "class_members"):
        op.drop_table(table)
    op.drop_index("ix_school_classes_teacher", table_name="school_classes")
    op.drop_table("school_classes")
    # Voices by name fall back to the two old slots, by the voice's own word where it has one.
    op.execute("UPDATE companions SET voice = 'male' WHERE voice NOT IN ('male', 'female')")
    with op.batch_alter_table("companions") as batch_op:
        batch_op.alter_column("voice", existing_type=sa.String(length=64), type_=sa.String(length=10))
        batch_op.create_check_constraint("voice", "voice IN ('male', 'female')")
    op.add_column("users", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE users SET is_admin = (role = 'admin')")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_constraint(op.f("ck_users_role"), type_="check")
        batch_op.drop_column("role")
