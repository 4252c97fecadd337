"""A companion's materials: the files its author attaches, split into passages and found by full-text search, so
that on each learner turn the best passages for what was said join the tutor's context.

Files are PDF (its text through pypdf), Markdown or plain UTF-8 text, within the configured sizes. A file that
is not what its name says, is too big, is encrypted or has no text is refused with a 4xx before anything is
written; one that is accepted is stored with all its passages, and so indexed, in one transaction (and deleted
the same way). Materials belong to the companion: its author manages them, and learners see only their names
(cited under the tutor's lines) unless the author allows downloading one.

The search on a lesson's turn runs within materials.search_budget_ms (an indexed query of a few milliseconds,
measured in tests/test_materials.py); one that takes longer is given up, and the tutor answers without passages.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts import CurrentUser
from server.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from server.pipeline.compute import thread_pool
from server.settings import MaterialsSettings, Settings
from server.store import companions as companion_store
from server.store import materials as store
from server.store.db import Database
from server.store.models import Companion
from server.timeutil import as_utc

log = logging.getLogger(__name__)

EXTRAS_KEY = "materials"
Kind = Literal["pdf", "markdown", "text"]
MEDIA_TYPES: dict[Kind, str] = {"pdf": "application/pdf", "markdown": "text/markdown", "text": "text/plain"}
EXTENSIONS: dict[str, Kind] = {
    ".pdf": "pdf",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
}
MAX_FILENAME = 200

# A passage is about a paragraph: long enough to hold an idea, short enough that three of them stay a small part
# of a small model's context. Paragraphs are joined up to WORDS_MIN, and none goes over WORDS_MAX.
WORDS_MIN = 60
WORDS_MAX = 120
EXCERPT_CHARS = 160
# What the learner said, as search terms: its words, less those that say nothing about the subject.
MAX_TERMS = 24
_WORD = re.compile(r"[^\W_]+")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each few for from further get got had has have
    having he her here hers herself him himself his how i if in into is it its itself just know let like me mean
    more most my myself no nor not now of off oh ok okay on once only or other our ours ourselves out over own
    please really right said same say says she should so some such tell than thank thanks that the their theirs
    them themselves then there these they thing things think this those through to too uh um under until up us
    very want was we well were what when where which while who whom why will with would yeah yes you your yours
    yourself yourselves""".split()
)


# -- what the page shows -----------------------------------------------------------------------------------------


class MaterialOut(BaseModel):
    id: int
    filename: str
    media_type: str
    size_bytes: int
    passages_count: int
    allow_download: bool
    # Whether the viewer may download the file: its author always, anyone else only when the author allows it.
    downloadable: bool
    created_at: datetime


class MaterialList(BaseModel):
    items: list[MaterialOut]
    # The viewer is the companion's author, who uploads, deletes and allows downloads.
    can_manage: bool
    max_file_bytes: int
    max_companion_bytes: int
    used_bytes: int


class MaterialPatch(BaseModel):
    allow_download: bool


def _out(record: store.MaterialRecord, author: bool) -> MaterialOut:
    return MaterialOut(
        id=record.id,
        filename=record.filename,
        media_type=record.media_type,
        size_bytes=record.size_bytes,
        passages_count=record.passages_count,
        allow_download=record.allow_download,
        downloadable=author or record.allow_download,
        created_at=as_utc(record.created_at),
    )


@dataclass(frozen=True)
class Download:
    filename: str
    media_type: str
    content: bytes


# -- reading a file into passages --------------------------------------------------------------------------------


def clean_filename(name: str) -> str:
    """The file's own name (no folders), printable, at most MAX_FILENAME characters with its extension kept."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = " ".join(base.split()).strip(". ")
    if len(base) > MAX_FILENAME:
        stem, dot, ext = base.rpartition(".")
        ext = ext[:16] if dot else ""
        base = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext if ext else base[:MAX_FILENAME]
    if not base:
        raise BadRequest("invalid_filename", "The file needs a name, such as handout.pdf.")
    return base


def kind_of(filename: str) -> Kind:
    _, dot, ext = filename.lower().rpartition(".")
    kind = EXTENSIONS.get(f".{ext}") if dot else None
    if kind is None:
        raise BadRequest("unsupported_type", "Materials can be PDF (.pdf), Markdown (.md) or plain text (.txt) files.")
    return kind


def _sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", paragraph) if s]


def _split_long(paragraph: str) -> list[str]:
    """A paragraph longer than WORDS_MAX, cut at sentence ends into pieces of at most WORDS_MAX words."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in _sentences(paragraph):
        words = sentence.split()
        while len(words) > WORDS_MAX:  # a sentence without an end in sight: cut by words
            if current:
                pieces.append(" ".join(current))
                current = []
            pieces.append(" ".join(words[:WORDS_MAX]))
            words = words[WORDS_MAX:]
        if current and len(current) + len(words) > WORDS_MAX:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk(paragraphs: Iterable[str]) -> list[str]:
    """Paragraphs as passages of about WORDS_MIN to WORDS_MAX words, in order; a short tail joins the one before."""
    passages: list[str] = []
    current: list[str] = []
    count = 0

    def flush() -> None:
        nonlocal current, count
        if current:
            passages.append(" ".join(current))
        current, count = [], 0

    for paragraph in paragraphs:
        words = paragraph.split()
        if not words:
            continue
        if len(words) > WORDS_MAX:
            flush()
            passages.extend(_split_long(" ".join(words)))
            continue
        if count and count + len(words) > WORDS_MAX:
            flush()
        current.append(" ".join(words))
        count += len(words)
        if count >= WORDS_MIN:
            flush()
    if current:
        if passages and count < WORDS_MIN // 3 and len(passages[-1].split()) + count <= WORDS_MAX + WORDS_MIN // 3:
            passages[-1] = f"{passages[-1]} {' '.join(current)}"
        else:
            passages.append(" ".join(current))
    return passages


def _paragraphs(text: str) -> list[str]:
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MARKS = re.compile(r"(\*\*|__|\*|`|~~)")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def _markdown_text(line: str) -> str:
    line = _IMAGE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _LIST_MARK.sub("", line)
    line = line.lstrip("> ")
    return _MARKS.sub("", line)


def split_markdown(text: str) -> list[store.NewPassage]:
    """Passages under each heading (a heading always starts a new passage), each carrying its heading."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    block: list[str] = []
    fenced = False

    def end_block() -> None:
        if block:
            sections[-1][1].append(" ".join(block))
            block.clear()

    for raw in text.splitlines():
        if _FENCE.match(raw):
            fenced = not fenced
            continue
        found = None if fenced else _HEADING.match(raw)
        if found:
            end_block()
            sections.append((_markdown_text(found.group(2)).strip()[:MAX_FILENAME] or None, []))
        elif not raw.strip():
            end_block()
        else:
            block.append(raw.strip() if fenced else _markdown_text(raw).strip())
    end_block()
    passages: list[store.NewPassage] = []
    for heading, paragraphs in sections:
        for piece in chunk(paragraphs):
            passages.append(store.NewPassage(position=len(passages) + 1, text=piece, heading=heading))
    return passages


def split_text(text: str) -> list[store.NewPassage]:
    return [store.NewPassage(position=i, text=piece) for i, piece in enumerate(chunk(_paragraphs(text)), start=1)]


def _decode(content: bytes) -> str:
    if content.startswith(b"%PDF-"):
        raise BadRequest("not_text", "This file is a PDF: upload it with a .pdf name.")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("not_utf8", "Markdown and text files must be UTF-8 text; this one is not.") from None
    if "\x00" in text:
        raise BadRequest("not_text", "This file holds binary data, not text.")
    return text


def split_pdf(content: bytes, max_pages: int) -> list[store.NewPassage]:
    """Each page's text as passages (none spans two pages, so a citation names its page)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # The header may follow a few bytes of junk (the format allows 1024), but it must be there.
    if b"%PDF-" not in content[:1024]:
        raise BadRequest("not_a_pdf", "This file is named .pdf but is not a PDF.")
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted:
            raise BadRequest("encrypted_pdf", "This PDF is protected by a password: save a copy without one.")
        if len(reader.pages) > max_pages:
            raise BadRequest("too_many_pages", f"This PDF has more than {max_pages} pages; split it into parts.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except BadRequest:
        raise
    # pypdf reports a damaged file with errors of many kinds (its own, and the parsers' below it).
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError, OSError) as exc:
        raise BadRequest("unreadable_pdf", "This PDF is damaged and cannot be read.") from exc
    passages: list[store.NewPassage] = []
    for number, page_text in enumerate(pages, start=1):
        cleaned = page_text.replace("\x00", "")
        for piece in chunk(_paragraphs(cleaned)):
            passages.append(store.NewPassage(position=len(passages) + 1, text=piece, page=number))
    return passages


def read_passages(kind: Kind, content: bytes, max_pages: int) -> list[store.NewPassage]:
    """The file's passages (blocking: PDF parsing takes a while), or a BadRequest saying why it cannot be used."""
    if kind == "pdf":
        passages = split_pdf(content, max_pages)
    elif kind == "markdown":
        passages = split_markdown(_decode(content))
    else:
        passages = split_text(_decode(content))
    # Text a database cannot hold (lone surrogates do not come out of a strict decode; pypdf may make them).
    passages = [
        store.NewPassage(p.position, p.text.encode("utf-8", "replace").decode("utf-8"), p.page, p.heading)
        for p in passages
    ]
    if not any(p.text.strip() for p in passages):
        detail = " (a scan holds pictures of pages, not text)" if kind == "pdf" else ""
        raise BadRequest("no_text", f"No text could be read from this file{detail}.")
    return passages


# -- retrieval on a learner's turn -------------------------------------------------------------------------------


def search_terms(said: str) -> list[str]:
    """What the learner said as search terms: its words, lower-cased, without stop words, each once."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(said.lower()):
        if len(word) > 1 and word not in STOPWORDS and len(word) <= 64:
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def _excerpt(text: str) -> str:
    if len(text) <= EXCERPT_CHARS:
        return text
    cut = text[:EXCERPT_CHARS].rsplit(" ", 1)[0]
    return f"{cut}…"


def source_of(hit: store.Hit) -> dict[str, Any]:
    """How a tutor line cites a passage it was given (stored with the line, sent to the page with it)."""
    return {
        "material_id": hit.material_id,
        "material": hit.filename,
        "position": hit.position,
        "page": hit.page,
        "heading": hit.heading,
        "excerpt": _excerpt(hit.text),
    }


@dataclass(frozen=True)
class Passages:
    """The passages found for one learner turn: the system message the model reads, and their sources."""

    prompt: str
    sources: tuple[dict[str, Any], ...]


def passages_prompt(header: str, hits: Sequence[store.Hit]) -> str:
    lines = [header]
    for number, hit in enumerate(hits, start=1):
        where = f", p. {hit.page}" if hit.page is not None else f", {hit.heading}" if hit.heading else ""
        lines.append(f"[{number}] ({hit.filename}{where}) {hit.text}")
    return "\n".join(lines)


Retrieve = Callable[[str], Awaitable[Passages | None]]


class Materials:
    """The app's materials: uploads read on a thread of their own, and each lesson's search. `close` on shutdown."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings: MaterialsSettings = settings.materials
        self._db = db
        # PDF parsing holds the GIL for a while; one thread keeps it off the event loop (and lessons' audio).
        self._pool = thread_pool("materials", 1)
        # Seconds each lesson search took, newest last (tests and the bench read them).
        self.search_times: deque[float] = deque(maxlen=1000)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the author's files ------------------------------------------------------------------------------------

    async def _companion(
        self, session: AsyncSession, user: CurrentUser, companion_id: int, *, manage: bool, lock: bool = False
    ) -> Companion:
        """The companion (`lock`: locked for the transaction) if `user` may read its materials (or `manage` them)."""
        if lock:
            companion = await companion_store.lock(session, companion_id)
        else:
            companion = await companion_store.get(session, companion_id)
        if companion is None or (manage and companion.archived_at is not None):
            raise NotFound("companion_not_found", "No companion with that id.")
        if manage and companion.author_id != user.id:
            raise Forbidden("not_author", "Only the companion's author can change its materials.")
        return companion

    async def _material(self, session: AsyncSession, companion_id: int, material_id: int) -> store.MaterialRecord:
        record = await store.get(session, material_id)
        if record is None or record.companion_id != companion_id:
            raise NotFound("material_not_found", "No material with that id.")
        return record

    def _check_room(self, used: int, size: int) -> None:
        limit = self.settings.max_companion_bytes
        if used + size > limit:
            raise Conflict(
                "materials_full",
                f"This companion's materials may take {_size(limit)} in all and already take {_size(used)}: "
                "delete one to make room.",
            )

    async def upload(
        self, user: CurrentUser, companion_id: int, filename: str, content: bytes, *, allow_download: bool = False
    ) -> MaterialOut:
        """Read the file into passages, then store it with them (and so index them) in one transaction."""
        name = clean_filename(filename)
        kind = kind_of(name)
        if len(content) > self.settings.max_file_bytes:
            raise PayloadTooLarge(
                "file_too_large",
                f"A material may be at most {_size(self.settings.max_file_bytes)}; this one is {_size(len(content))}.",
            )
        if not content:
            raise BadRequest("empty_file", "This file is empty.")
        digest = hashlib.sha256(content).hexdigest()
        # Who may, and whether it fits, before the file is read: a refusal costs no parsing.
        async with self._db.read() as session:
            await self._companion(session, user, companion_id, manage=True)
            self._check_room(await store.used_bytes(session, companion_id), len(content))
        loop = asyncio.get_running_loop()
        passages = await loop.run_in_executor(self._pool, read_passages, kind, content, self.settings.max_pdf_pages)
        async with self._db.write() as session:
            # Again, inside the transaction that writes: two uploads at once must not both take the last room.
            await self._companion(session, user, companion_id, manage=True, lock=True)
            self._check_room(await store.used_bytes(session, companion_id), len(content))
            if await store.has_file(session, companion_id, digest):
                raise Conflict("already_uploaded", "This file is already one of the companion's materials.")
            record = await store.add(
                session,
                companion_id=companion_id,
                filename=name,
                media_type=MEDIA_TYPES[kind],
                content=content,
                sha256=digest,
                allow_download=allow_download,
                passages=passages,
                created_at=datetime.now(UTC),
            )
        log.info("materials: companion %s: %s stored as %d passages", companion_id, kind, len(passages))
        return _out(record, author=True)

    async def listing(self, user: CurrentUser, companion_id: int) -> MaterialList:
        async with self._db.read() as session:
            companion = await self._companion(session, user, companion_id, manage=False)
            records = await store.for_companion(session, companion_id)
        author = companion.author_id == user.id
        return MaterialList(
            items=[_out(r, author) for r in records],
            can_manage=author and companion.archived_at is None,
            max_file_bytes=self.settings.max_file_bytes,
            max_companion_bytes=self.settings.max_companion_bytes,
            used_bytes=sum(r.size_bytes for r in records),
        )

    async def set_allow_download(
        self, user: CurrentUser, companion_id: int, material_id: int, allow: bool
    ) -> MaterialOut:
        async with self._db.write() as session:
            await self._companion(session, user, companion_id, manage=True, lock=True)
            record = await self._material(session, companion_id, material_id)
            await store.set_allow_download(session, material_id, allow)
        return _out(
            store.MaterialRecord(
                record.id,
                record.companion_id,
                record.filename,
                record.media_type,
                record.size_bytes,
                allow,
                record.passages_count,
                record.created_at,
            ),
            author=True,
        )

    async def delete(self, user: CurrentUser, companion_id: int, material_id: int) -> None:
        """The material, its passages and their index entries, in one transaction."""
        async with self._db.write() as session:
            await self._companion(session, user, companion_id, manage=True, lock=True)
            await self._material(session, companion_id, material_id)
            await store.delete_material(session, material_id)

    async def download(self, user: CurrentUser, companion_id: int, material_id: int) -> Download:
        async with self._db.read() as session:
            companion = await self._companion(session, user, companion_id, manage=False)
            record = await self._material(session, companion_id, material_id)
            if companion.author_id != user.id and not record.allow_download:
                raise Forbidden(
                    "download_not_allowed", "The companion's author has not allowed this file to be downloaded."
                )
            content = await store.content(session, material_id)
        if content is None:  # deleted meanwhile
            raise NotFound("material_not_found", "No material with that id.")
        return Download(record.filename, record.media_type, content)

    # -- lessons -----------------------------------------------------------------------------------------------

    async def search(
        self, terms: Sequence[str], *, lesson_id: int | None = None, companion_id: int | None = None
    ) -> list[store.Hit]:
        """The best passages for `terms` (see search_terms) of a companion's materials, by lesson or companion."""
        k = self.settings.passages_per_turn
        started = time.perf_counter()
        hits = await self._db.read_unit(
            lambda conn: store.search(conn, terms, k, lesson_id=lesson_id, companion_id=companion_id)
        )
        self.search_times.append(time.perf_counter() - started)
        return hits

    def retriever(self, lesson_id: int) -> Retrieve | None:
        """The callback one lesson's pipeline asks on each learner turn (None when retrieval is off)."""
        settings = self.settings
        if not settings.enabled or settings.passages_per_turn < 1:
            return None
        budget = settings.search_budget_ms / 1000

        async def find(said: str) -> Passages | None:
            terms = search_terms(said)
            if not terms:
                return None
            try:
                hits = await asyncio.wait_for(self.search(terms, lesson_id=lesson_id), budget)
            except TimeoutError:
                log.warning(
                    "materials: lesson %s: the search took over %d ms; answered without passages",
                    lesson_id,
                    settings.search_budget_ms,
                )
                return None
            if not hits:
                return None
            return Passages(passages_prompt(settings.prompt, hits), tuple(source_of(h) for h in hits))

        return find


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB".replace(".0 ", " ")
    if n >= 1024:
        return f"{round(n / 1024)} KB"
    return f"{n} bytes"
