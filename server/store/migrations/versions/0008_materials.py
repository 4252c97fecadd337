"""a companion's materials, their passages and full-text index, and the sources of tutor lines

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:00:00.000000

The index is the database's own full-text search. On SQLite an FTS5 table over the passages (external content:
it stores only the index and reads the text from `material_passages`), kept in step by triggers, so a passage
written, changed or deleted by any path (a cascade from its material, its companion or its author included) is
indexed or dropped in the same transaction. On PostgreSQL a generated `tsvector` column with a GIN index, which
the database keeps in step itself. Neither is declared in the models (server/store/models.py says which objects
the schema comparison leaves out). A later migration that rebuilds `material_passages` on SQLite (batch mode)
drops its triggers and must create them again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_INDEX = [
    # Porter stemming over unicode61 words, as PostgreSQL's 'english' configuration stems: "networks" finds
    # "network" on either database.
    "CREATE VIRTUAL TABLE material_passages_fts USING fts5(heading, text, content='material_passages', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER material_passages_fts_insert AFTER INSERT ON material_passages BEGIN "
    "INSERT INTO material_passages_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text); END",
    "CREATE TRIGGER material_passages_fts_delete AFTER DELETE ON material_passages BEGIN "
    "INSERT INTO material_passages_fts(material_passages_fts, rowid, heading, text) "
    "VALUES ('delete', old.id, old.heading, old.text); END",
    "CREATE TRIGGER material_passages_fts_update AFTER UPDATE ON material_passages BEGIN "
    "INSERT INTO material_passages_fts(material_passages_fts, rowid, heading, text) "
    "VALUES ('delete', old.id, old.heading, old.text); "
    "INSERT INTO material_passages_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text); END",
]
POSTGRES_INDEX = [
    "ALTER TABLE material_passages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('english', coalesce(heading, '') || ' ' || text)) STORED",
    "CREATE INDEX ix_material_passages_search ON material_passages USING gin (search_vector)",
]


def upgrade() -> None:
    op.create_table(
        "materials",
        sa.Column("id", ID, nullable=False),
        sa.Column("companion_id", ID, nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("allow_download", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("passages_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["companion_id"], ["companions.id"], ondelete="CASCADE", name="fk_materials_companion_id_companions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_materials"),
        sa.UniqueConstraint("companion_id", "sha256", name="uq_materials_companion_sha256"),
    )
    op.create_table(
        "material_passages",
        sa.Column("id", ID, nullable=False),
        sa.Column("material_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("heading", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["material_id"], ["materials.id"], ondelete="CASCADE", name="fk_material_passages_material_id_materials"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_material_passages"),
        sa.UniqueConstraint("material_id", "position", name="uq_material_passages_material_position"),
    )
    for statement in SQLITE_INDEX if op.get_bind().dialect.name == "sqlite" else POSTGRES_INDEX:
        op.execute(statement)
    # ADD COLUMN, which SQLite does in place: transcript_entries is not rebuilt.
    op.add_column("transcript_entries", sa.Column("sources", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcript_entries") as batch_op:
        batch_op.drop_column("sources")
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER material_passages_fts_{trigger}")
        op.execute("DROP TABLE material_passages_fts")
    op.drop_table("material_passages")
    op.drop_table("materials")
