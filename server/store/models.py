"""The tables: users, companions, lessons with their transcripts, bookmarks, and the running server instances."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names make Alembic migrations portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc"),
        CheckConstraint("plan IN ('free', 'core', 'pro')", name="plan"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str] = mapped_column(String(10), default="free")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set by an administrator (`tutor users disable`): the account can neither sign in nor use a session.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Companion(Base):
    __tablename__ = "companions"
    __table_args__ = (
        CheckConstraint("duration BETWEEN 1 AND 120", name="duration"),
        CheckConstraint("voice IN ('male', 'female')", name="voice"),
        CheckConstraint("style IN ('formal', 'casual')", name="style"),
        # The library lists newest first, optionally within one subject; topic and name ride in the subject
        # index so counting a subject's search matches reads the index alone. The library leaves archived
        # companions out, so archived_at rides in both (a partial index would not count as covering in SQLite).
        Index("ix_companions_subject_search", "subject", "created_at", "topic", "name", "archived_at"),
        Index("ix_companions_created", "created_at", "archived_at"),
        Index("ix_companions_author_created", "author_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(20))
    topic: Mapped[str] = mapped_column(String(200))
    voice: Mapped[str] = mapped_column(String(10))
    style: Mapped[str] = mapped_column(String(10))
    duration: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # Set when its author deletes a companion that has lessons: it leaves the library, its lessons keep it.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    author: Mapped[User] = relationship(lazy="raise")


class Lesson(Base):
    __tablename__ = "lessons"
    __table_args__ = (
        Index("ix_lessons_learner_started", "learner_id", "started_at"),
        Index("ix_lessons_started", "started_at"),
        Index("ix_lessons_companion", "companion_id"),
        # A hosted (Vapi) call belongs to one lesson. A unique index rather than a constraint: adding an index
        # leaves SQLite's table in place, where a constraint would rebuild it (and a rebuilt parent table
        # cascades deletes onto transcript_entries).
        Index("ix_lessons_external_call_id", "external_call_id", unique=True),
        # The sweep after a crash looks for open lessons by holder on every heartbeat; only open ones are indexed.
        Index(
            "ix_lessons_open_holder",
            "holder",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # NULL once the companion is erased (its author's account was deleted); the snapshot below still names it.
    companion_id: Mapped[int | None] = mapped_column(ForeignKey("companions.id", ondelete="SET NULL"))
    # The companion as it was when the lesson started. Nullable only so that bulk loaders (bench/api.py) that
    # insert lessons directly keep working; lessons.start() always fills them.
    companion_name: Mapped[str | None] = mapped_column(String(100))
    companion_subject: Mapped[str | None] = mapped_column(String(20))
    companion_topic: Mapped[str | None] = mapped_column(String(200))
    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    length_seconds: Mapped[int | None] = mapped_column(Integer)
    end_reason: Mapped[str | None] = mapped_column(String(64))
    # Hosted mode: the Vapi call id, and when its end-of-call report was stored (after which it is final).
    external_call_id: Mapped[str | None] = mapped_column(String(100))
    call_reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The server instance running a local lesson's pipeline (NULL for hosted lessons): when it dies, another
    # instance ends the lesson.
    holder: Mapped[str | None] = mapped_column(String(64))

    companion: Mapped[Companion | None] = relationship(lazy="raise")


class TranscriptEntry(Base):
    __tablename__ = "transcript_entries"
    __table_args__ = (
        UniqueConstraint("lesson_id", "position", name="uq_transcript_entries_lesson_position"),
        # A retried webhook carries the same external id, so it cannot add an utterance twice.
        Index("ix_transcript_entries_lesson_external", "lesson_id", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    # Set for utterances that came from a hosted call's webhook; NULL for the local pipeline's.
    external_id: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Bookmark(Base):
    __tablename__ = "bookmarks"
    __table_args__ = (Index("ix_bookmarks_learner_created", "learner_id", "created_at"),)

    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    companion_id: Mapped[int] = mapped_column(ForeignKey("companions.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ServerInstance(Base):
    """A running server process; its heartbeat says it still holds its lessons."""

    __tablename__ = "server_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ServerSession(Base):
    """A signed-in browser: the cookie holds a random token, the row only its SHA-256 (a leaked row signs no one in)."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user", "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")


class SignInFailure(Base):
    """Failed sign-ins for one key ("email:<address>" or "ip:<address>") in the current counting window."""

    __tablename__ = "sign_in_failures"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # How many locks in a row this key has earned; each lasts twice the one before, up to the cap.
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
