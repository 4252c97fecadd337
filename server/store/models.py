"""The tables: users, companions, lessons with their transcripts, bookmarks, running server instances, and the school's
classes, safety flags, alerts, audit log and settings."""

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
    LargeBinary,
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
        CheckConstraint("role IN ('learner', 'teacher', 'admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str] = mapped_column(String(10), default="free")
    # learner, teacher (runs classes) or admin (runs the school).
    role: Mapped[str] = mapped_column(String(16), default="learner")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set by an administrator (`tutor users disable`): the account can neither sign in nor use a session.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Companion(Base):
    __tablename__ = "companions"
    __table_args__ = (
        CheckConstraint("duration BETWEEN 1 AND 120", name="duration"),
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
    # An installed voice's name (e.g. "en_US-joe-medium"); "male"/"female" in companions made before 0006.
    voice: Mapped[str] = mapped_column(String(64))
    style: Mapped[str] = mapped_column(String(10))
    # How it teaches: explain, socratic or quiz (server/teaching.py); checked where a companion is saved.
    teaching: Mapped[str] = mapped_column(String(10), default="explain", server_default="explain")
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
    # The teacher's passages a tutor line was given (JSON: material, position, page, heading, excerpt); NULL for
    # the learner's lines and for tutor lines that drew on none (server/materials.py).
    sources: Mapped[str | None] = mapped_column(Text)


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


class SchoolClass(Base):
    """A teacher's class: learners join it with its code, and its companions show first for them."""

    __tablename__ = "school_classes"
    __table_args__ = (Index("ix_school_classes_teacher", "teacher_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    join_code: Mapped[str] = mapped_column(String(16), unique=True)
    join_code_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClassMember(Base):
    __tablename__ = "class_members"
    __table_args__ = (Index("ix_class_members_learner", "learner_id"),)

    class_id: Mapped[int] = mapped_column(ForeignKey("school_classes.id", ondelete="CASCADE"), primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ClassCompanion(Base):
    __tablename__ = "class_companions"

    class_id: Mapped[int] = mapped_column(ForeignKey("school_classes.id", ondelete="CASCADE"), primary_key=True)
    companion_id: Mapped[int] = mapped_column(ForeignKey("companions.id", ondelete="CASCADE"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SafetyFlag(Base):
    """An utterance the screening flagged, with what it was, how bad, who said it and what the tutor did."""

    __tablename__ = "safety_flags"
    __table_args__ = (
        CheckConstraint("severity IN ('low', 'medium', 'high')", name="severity"),
        Index("ix_safety_flags_learner_created", "learner_id", "created_at"),
        Index("ix_safety_flags_lesson", "lesson_id"),
        Index("ix_safety_flags_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))  # "user" (the learner) or "assistant" (the tutor)
    text: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))  # self_harm, abuse, sexual, personal_data, ...
    severity: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))  # local, model, moderation
    action: Mapped[str] = mapped_column(String(16), default="none")  # replaced, support, none
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Alert(Base):
    """A high-severity flag brought to one teacher's or administrator's attention in the console."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_recipient_created", "recipient_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("safety_flags.id", ondelete="CASCADE"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """Who read or changed what: every transcript a teacher or administrator opens, every account change."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # Kept when the account goes: the email is the record of who it was.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_email: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))  # e.g. transcript.read, user.disable, user.plan
    learner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"))
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SchoolSetting(Base):
    """A setting an administrator changes in the page (registration open, retention days); config gives defaults."""

    __tablename__ = "school_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- materials ---


class Material(Base):
    """A file a companion's author attached (PDF, Markdown or plain text), split into passages for the tutor."""

    __tablename__ = "materials"
    __table_args__ = (
        # The same file twice on one companion would only repeat its passages.
        UniqueConstraint("companion_id", "sha256", name="uq_materials_companion_sha256"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    companion_id: Mapped[int] = mapped_column(ForeignKey("companions.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Learners may download the file itself; without it they only ever see its name, cited under the tutor's lines.
    allow_download: Mapped[bool] = mapped_column(Boolean, default=False)
    # The file in the database, not the data directory: every server process sharing the database serves it, and
    # deleting the material removes it in the same transaction as its passages. Listings never load it.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    passages_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MaterialPassage(Base):
    """One passage of a material (about a paragraph), as the full-text index finds it and the tutor is given it."""

    __tablename__ = "material_passages"
    __table_args__ = (UniqueConstraint("material_id", "position", name="uq_material_passages_material_position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, ... in the file's order
    page: Mapped[int | None] = mapped_column(Integer)  # a PDF's page (from 1); None for text
    heading: Mapped[str | None] = mapped_column(String(200))  # the Markdown heading it sits under
    text: Mapped[str] = mapped_column(Text)


# The full-text index is the database's own and so not declared above (migration 0008 makes it, and
# server/store/materials.py queries it): SQLite's FTS5 table over the passages with its shadow tables and triggers,
# PostgreSQL's generated tsvector column and its GIN index. The schema comparison (Alembic's autogenerate, the
# migration test) leaves them out through this.
SEARCH_INDEX_TABLE = "material_passages_fts"
SEARCH_INDEX_COLUMN = "search_vector"
SEARCH_INDEX_NAME = "ix_material_passages_search"


def declared_in_models(_obj: object, name: str | None, type_: str, reflected: bool, _compare_to: object) -> bool:
    """Alembic's include_object: False for the full-text index's objects, which the database keeps itself."""
    if not reflected or name is None:
        return True
    if type_ == "table":
        return not (name == SEARCH_INDEX_TABLE or name.startswith(SEARCH_INDEX_TABLE + "_"))
    return not (type_ == "column" and name == SEARCH_INDEX_COLUMN) and not (
        type_ == "index" and name == SEARCH_INDEX_NAME
    )


# --- teaching ---


class ReviewProgress(Base):
    """A review question of a learner's past recaps with one companion that a quiz asked, and how they answered."""

    __tablename__ = "review_progress"
    __table_args__ = (UniqueConstraint("learner_id", "companion_id", "question", name="uq_review_progress_question"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    companion_id: Mapped[int] = mapped_column(ForeignKey("companions.id", ondelete="CASCADE"))
    # The question as the recap wrote it (the recaps' review_questions are plain text).
    question: Mapped[str] = mapped_column(String(500))
    # The lesson in which it was last asked.
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"))
    asked_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The first time the learner answered it right (as the model judged the quiz's transcript).
    answered_correctly_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_asked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- recaps and memory ---


class LessonRecap(Base):
    """What the language model wrote about a finished lesson: what it covered, what was hard, review questions."""

    __tablename__ = "lesson_recaps"
    __table_args__ = (CheckConstraint("status IN ('pending', 'ready', 'too_short', 'failed')", name="status"),)

    lesson_id: Mapped[int] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Ready: the model's words; too_short: the sentence saying so; pending and failed: empty.
    covered: Mapped[str] = mapped_column(Text, default="")
    hard: Mapped[str] = mapped_column(Text, default="")
    # A JSON list of two or three questions.
    review_questions: Mapped[str] = mapped_column(Text, default="[]")
    # The model that wrote it (NULL when none did).
    model: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LearnerFact(Base):
    """Something the tutor remembers about a learner (level, interests, a recurring mistake), per companion.

    Goes with the companion (CASCADE): the memory is that companion's, and erasing it leaves nothing behind.
    """

    __tablename__ = "learner_facts"
    __table_args__ = (Index("ix_learner_facts_learner_companion", "learner_id", "companion_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    learner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    companion_id: Mapped[int] = mapped_column(ForeignKey("companions.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
