"""`tutor doctor`: what is configured, and whether each part answers."""

from __future__ import annotations

from server.settings import Settings
from server.store.db import Database

Check = tuple[str, bool, str]


async def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    db = Database(settings.database_url)
    try:
        await db.ping()
        current, head = await db.schema_status()
        if current == head:
            checks.append(("database", True, f"{settings.database_url.split('://')[0]} reachable, schema {current}"))
        else:
            checks.append(("database", False, f"schema at {current}, newest {head}: run `tutor db upgrade`"))
    except Exception as exc:  # the doctor reports every failure instead of stopping at the first
        checks.append(("database", False, f"unreachable ({type(exc).__name__}: {exc}); check database.url"))
    finally:
        await db.close()
    sso = settings.auth.sso
    if sso.enabled:
        ok = bool(sso.issuer and sso.client_id and sso.client_secret)
        checks.append(("sso", ok, f"issuer {sso.issuer}" if ok else "set issuer, client_id and the secret"))
    checks.append(("voice backend", True, settings.voice.backend))
    if settings.voice.backend == "local":
        from server.pipeline.doctor import check_voice

        checks.extend(await check_voice(settings))
    return checks
