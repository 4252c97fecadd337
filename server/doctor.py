"""`tutor doctor` and the administrator's status page: what is configured, and whether each part answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.settings import Settings
from server.store.db import Database

if TYPE_CHECKING:
    from server.pipeline.service import VoiceService

Check = tuple[str, bool, str]


async def _database(settings: Settings, db: Database) -> Check:
    try:
        await db.ping()
        current, head = await db.schema_status()
    except Exception as exc:  # the doctor reports every failure instead of stopping at the first
        return "database", False, f"unreachable ({type(exc).__name__}: {exc}); check database.url"
    if current == head:
        return "database", True, f"{settings.database_url.split('://')[0]} reachable, schema {current}"
    return "database", False, f"schema at {current}, newest {head}: run `tutor db upgrade`"


async def _running_voice(voice: VoiceService) -> list[Check]:
    """What a serving process's voice service holds now, without loading a second copy of any model."""
    if voice.started:
        models: Check = ("voice models", True, "loaded (speech recognition, voices, turn detection)")
    else:
        models = ("voice models", True, "not loaded yet: they load with the first lesson (voice.preload = false)")
    status = await voice.tutor_status()
    detail = status.detail + (" (the bundled demonstration model)" if status.demo else "")
    return [models, ("LLM", status.available, detail)]


async def run_checks(settings: Settings, db: Database | None = None, voice: VoiceService | None = None) -> list[Check]:
    """Each part's check. The command line passes nothing: the database is opened for the check and every
    local model is loaded and run once. A serving app passes its own database and voice service, so its status
    page reports what the running server holds rather than loading the models a second time beside it."""
    checks: list[Check] = []
    own_db = db is None
    database = Database(settings.database_url) if db is None else db
    try:
        checks.append(await _database(settings, database))
    finally:
        if own_db:
            await database.close()
    sso = settings.auth.sso
    if sso.enabled:
        ok = bool(sso.issuer and sso.client_id and sso.client_secret)
        checks.append(("sso", ok, f"issuer {sso.issuer}" if ok else "set issuer, client_id and the secret"))
    checks.append(("voice backend", True, settings.voice.backend))
    if settings.voice.backend == "local":
        if voice is not None:
            checks.extend(await _running_voice(voice))
        else:
            from server.pipeline.doctor import check_voice

            checks.extend(await check_voice(settings))
    return checks
