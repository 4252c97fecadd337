"""Voice routes: the installed voices as the page lists them, and a short spoken preview of each."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from quart import Blueprint, Response

from server import voices
from server.api.auth import login_required
from server.errors import NotFound, ServiceUnavailable
from server.state import get_state

bp = Blueprint("voices", __name__, url_prefix="/api/voices")

EXTRAS_KEY = "voices"
# A preview is the same sentence for the life of the process; the browser may keep it a while.
PREVIEW_CACHE_SECS = 3600


def installed() -> voices.Catalogue:
    """The voices this process offers, read once: a voice added under models/ appears after a restart, as it is
    then that the voice service loads it."""
    extras = get_state().extras
    found = extras.get(EXTRAS_KEY)
    if found is None:
        found = extras[EXTRAS_KEY] = voices.catalogue(get_state().settings)
    assert isinstance(found, voices.Catalogue)
    return found


def preview_url(voice: voices.Voice) -> str | None:
    return f"/api/voices/{quote(voice.id, safe='')}/preview" if voice.local else None


def listed() -> dict[str, Any]:
    """What /api/config says about voices: the installed ones, and the voice each legacy companion speaks with."""
    catalogue = installed()
    return {
        "voices": [voice.describe() | {"preview_url": preview_url(voice)} for voice in catalogue.voices],
        "default_voice": catalogue.default.id,
        "legacy_voices": catalogue.legacy_voices(),
    }


@bp.get("/<voice_id>/preview")
@login_required
async def preview(voice_id: str) -> Response:
    """A short sentence in the voice, as audio/wav (synthesized once per process with the shared voice)."""
    # Here, not at the top: the pipeline (pipecat) is imported only by a server that runs lessons itself.
    from server.pipeline.preview import preview_wav

    voice = installed().get(voice_id)
    if voice is None:
        raise NotFound("voice_not_found", f'No voice "{voice_id[:64]}" is installed on this server.')
    service = get_state().voice
    if not voice.local or service is None:
        raise NotFound(
            "voice_preview_unavailable",
            f"{voice.name} is spoken by the hosted voice provider, so this server has no preview of it.",
        )
    try:
        models = await service.shared_models()
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(exc.code, f"The voice preview is not available: {exc.message}") from exc
    wav = await preview_wav(models, voice.id)
    if wav is None:
        raise ServiceUnavailable(
            "voice_not_loaded", f"{voice.name} could not be loaded (the server's log says why); choose another voice."
        )
    response = Response(wav, content_type="audio/wav")
    response.headers["Cache-Control"] = f"private, max-age={PREVIEW_CACHE_SECS}"
    return response
