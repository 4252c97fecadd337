"""Voices by name: only the installed voices are offered (by name, language and a gender only where known), a
companion's voice is checked against them, old "male"/"female" companions speak as before, and each local voice
has a short spoken preview."""

from __future__ import annotations

import io
import json
import os
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from quart import Quart
from sqlalchemy import update

from server.app import create_app
from server.lesson_recorder import stored_lessons
from server.pipeline.models import SharedModels, load_models
from server.pipeline.service import VoiceService
from server.pipeline.stt import WhisperOptions, transcribe_pcm
from server.settings import Settings, VoiceSettings
from server.state import get_state
from server.store.models import Companion
from server.voices import BUNDLED_VOICE, bundled_voice_path, catalogue, piper_catalogue
from tests.conftest import companion_body, create_companion, make_settings, register

# The bundled voice's model under other speakers' names: a woman the table of known piper voices names, and a
# speaker nobody has told us about.
ALBA = "en_GB-alba-medium"
MYSTERY = "de_DE-mystery-low"
BRITISH = {"code": "en_GB", "name_english": "English", "country_english": "Great Britain"}
GERMAN = {"code": "de_DE", "name_english": "German", "country_english": "Germany"}
INSTALLED = [BUNDLED_VOICE, MYSTERY, ALBA]


def install_voice(models_dir: Path, voice_id: str, **config: Any) -> None:
    """Put a piper voice under models_dir as a school does: <id>.onnx and <id>.onnx.json."""
    bundled = bundled_voice_path()
    os.symlink(bundled, models_dir / f"{voice_id}.onnx")
    described = json.loads(Path(f"{bundled}.json").read_text(encoding="utf-8")) | config
    (models_dir / f"{voice_id}.onnx.json").write_text(json.dumps(described), encoding="utf-8")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    install_voice(folder, ALBA, dataset="alba", language=BRITISH)
    install_voice(folder, MYSTERY, dataset="mystery", language=GERMAN)
    # Not voices: a model still without its description, and one whose description is not JSON.
    os.symlink(bundled_voice_path(), folder / "en_US-copying-medium.onnx")
    os.symlink(bundled_voice_path(), folder / "en_US-broken-medium.onnx")
    (folder / "en_US-broken-medium.onnx.json").write_text("{not json", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def shared_models(models_dir: Path) -> Iterator[SharedModels]:
    """The speech models as the server loads them with these voices installed, shared by the module's apps."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    models = load_models(VoiceSettings(models_dir=str(models_dir)), cpus)
    yield models
    models.close()


@pytest.fixture
def voice_settings(tmp_path: Path, models_dir: Path, database_url: str) -> Settings:
    extra = {"DATABASE__URL": database_url} if database_url else {}
    return make_settings(tmp_path, VOICE__MODELS_DIR=str(models_dir), **extra)


async def started_app(settings: Settings, models: SharedModels | None = None) -> AsyncIterator[Quart]:
    app = create_app(settings)
    async with app.test_app():
        state = get_state(app)
        if models is not None:
            # The module's loaded models instead of loading them again for each app.
            state.voice = VoiceService(settings, stored_lessons(state.db), models=models)
        yield app


@pytest.fixture
async def app(voice_settings: Settings, shared_models: SharedModels) -> AsyncIterator[Quart]:
    async for app in started_app(voice_settings, shared_models):
        yield app


async def config(client: Any) -> dict[str, Any]:
    response = await client.get("/api/config")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def test_the_page_is_offered_exactly_the_installed_voices_by_name(client: Any) -> None:
    body = await config(client)
    by_id = {v["id"]: v for v in body["voices"]}
    # The bundled voice first (the default), then the school's, by file name; nothing half-installed or broken.
    assert [v["id"] for v in body["voices"]] == INSTALLED
    assert body["default_voice"] == BUNDLED_VOICE
    assert by_id[BUNDLED_VOICE] | {"preview_url": None} == {
        "id": BUNDLED_VOICE,
        "name": "Joe",
        "language": "English (United States)",
        "locale": "en_US",
        "gender": "male",
        "preview_url": None,
    }
    assert by_id[ALBA]["name"] == "Alba"
    assert (by_id[ALBA]["language"], by_id[ALBA]["gender"]) == ("English (Great Britain)", "female")
    # Nobody said who speaks in this one, so no gender is shown rather than a guess.
    assert (by_id[MYSTERY]["name"], by_id[MYSTERY]["language"], by_id[MYSTERY]["gender"]) == (
        "Mystery",
        "German (Germany)",
        None,
    )
    assert by_id[ALBA]["preview_url"] == f"/api/voices/{ALBA}/preview"
    # Old companions' "male"/"female" speak with the voice the voice x style table names: the bundled one.
    assert set(body["legacy_voices"]) == {"male.formal", "male.casual", "female.formal", "female.casual"}
    assert set(body["legacy_voices"].values()) == {BUNDLED_VOICE}


async def test_a_voice_the_json_says_is_a_woman_shows_as_one(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    install_voice(folder, "en_US-newcomer-medium", dataset="newcomer", gender="female")
    install_voice(folder, "en_US-chorus-medium", dataset="amy", num_speakers=4)
    voices = {v.id: v for v in piper_catalogue(VoiceSettings(models_dir=str(folder))).voices}
    assert voices["en_US-newcomer-medium"].gender == "female"
    # Several speakers: which one speaks is not the table's "amy", so no gender.
    assert voices["en_US-chorus-medium"].gender is None


async def test_a_companion_gets_an_installed_voice_and_keeps_it(client: Any) -> None:
    await register(client)
    created = await create_companion(client, voice=ALBA)
    assert created["voice"] == ALBA
    response = await client.patch(f"/api/companions/{created['id']}", json={"voice": MYSTERY})
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await (await client.get(f"/api/companions/{created['id']}")).get_json())["voice"] == MYSTERY


@pytest.mark.parametrize("voice", ["female", "male", "robot", "en_US-copying-medium", "en_US-broken-medium"])
async def test_a_voice_that_is_not_installed_is_refused_naming_those_that_are(client: Any, voice: str) -> None:
    await register(client)
    response = await client.post("/api/companions", json=companion_body(voice=voice))
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["code"] == "unknown_voice"
    assert f'"{voice}"' in error["message"]
    for name, voice_id in [("Joe", BUNDLED_VOICE), ("Alba", ALBA), ("Mystery", MYSTERY)]:
        assert f"{name} ({voice_id})" in error["message"]
    assert "Alba" in error["fields"]["voice"]
    assert (await (await client.get("/api/me/companions")).get_json())["total"] == 0

    created = await create_companion(client)
    response = await client.patch(f"/api/companions/{created['id']}", json={"voice": voice})
    assert (response.status_code, (await response.get_json())["error"]["code"]) == (400, "unknown_voice")
    assert (await (await client.get(f"/api/companions/{created['id']}")).get_json())["voice"] == BUNDLED_VOICE


async def make_legacy(app: Quart, companion_id: int, voice: str) -> None:
    """What migration 0006 leaves in a companion made before voices had names."""
    async with get_state(app).db.write() as session:
        await session.execute(update(Companion).where(Companion.id == companion_id).values(voice=voice))


async def call_voice(client: Any, companion_id: int) -> dict[str, Any]:
    response = await client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201, await response.get_data(as_text=True)
    lesson_id = (await response.get_json())["id"]
    call = await (await client.get(f"/api/lessons/{lesson_id}/call")).get_json()
    voice: dict[str, Any] = call["assistant"]["voice"]
    return voice


async def test_an_old_female_companion_speaks_with_the_default_voice(app: Quart, client: Any) -> None:
    await register(client)
    created = await create_companion(client, voice=ALBA)
    await make_legacy(app, created["id"], "female")
    shown = await (await client.get(f"/api/companions/{created['id']}")).get_json()
    assert (shown["voice"], shown["style"]) == ("female", "casual")
    # The page names the voice it speaks with through legacy_voices; the lesson speaks with that voice.
    assert (await config(client))["legacy_voices"]["female.casual"] == BUNDLED_VOICE
    assert await call_voice(client, created["id"]) == {"provider": "piper", "voiceId": BUNDLED_VOICE}
    models = get_state(app).voice
    assert models is not None
    loaded, length_scale = (await models.shared_models()).voice_for("female", "casual")
    assert (loaded.name, length_scale) == (BUNDLED_VOICE, 0.95)
    # Saving it with a voice by name makes it an ordinary companion.
    response = await client.patch(f"/api/companions/{created['id']}", json={"voice": ALBA})
    assert (await response.get_json())["voice"] == ALBA


async def test_a_school_that_gave_old_female_companions_a_voice_keeps_it(tmp_path: Path, models_dir: Path) -> None:
    table = {
        "male.formal": {"voice": BUNDLED_VOICE, "length_scale": 1.05},
        "male.casual": {"voice": BUNDLED_VOICE, "length_scale": 0.95},
        "female.formal": {"voice": ALBA, "length_scale": 1.1},
        "female.casual": {"voice": ALBA, "length_scale": 0.9},
    }
    settings = make_settings(tmp_path, VOICE__MODELS_DIR=str(models_dir), VOICE__TTS__VOICES=json.dumps(table))
    voices = catalogue(settings)
    spoken, length_scale = voices.speaking("female", "casual")
    assert (spoken.id, length_scale) == (ALBA, 0.9)
    # A voice chosen by name speaks at the rate the table gives it for the style; one the table does not name, at
    # the style's first rate there; one no longer installed, with the default voice.
    assert voices.speaking(ALBA, "formal")[1] == 1.1
    assert voices.speaking(MYSTERY, "casual") == (voices.get(MYSTERY), 0.95)
    assert voices.speaking("en_GB-removed-medium", "formal") == (voices.default, 1.05)
    async for app in started_app(settings):
        client = app.test_client()
        assert (await config(client))["legacy_voices"]["female.casual"] == ALBA
        await register(client)
        created = await create_companion(client)
        await make_legacy(app, created["id"], "female")
        assert (await call_voice(client, created["id"]))["voiceId"] == ALBA


def test_the_shared_voices_are_loaded_and_chosen_by_name(shared_models: SharedModels) -> None:
    assert set(shared_models.voices) == set(INSTALLED)
    loaded, length_scale = shared_models.voice_for(ALBA, "formal")
    assert (loaded.name, length_scale) == (ALBA, 1.05)
    loaded, length_scale = shared_models.voice_for(MYSTERY, "casual")
    assert (loaded.name, length_scale) == (MYSTERY, 0.95)
    assert shared_models.voice_for("en_GB-removed-medium", "casual")[0].name == BUNDLED_VOICE


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16), wav.getframerate()


async def test_a_voice_preview_is_real_speech_in_that_voice(client: Any, shared_models: SharedModels) -> None:
    assert (await client.get(f"/api/voices/{ALBA}/preview")).status_code == 401
    await register(client)
    response = await client.get(f"/api/voices/{ALBA}/preview")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "audio/wav"
    data = await response.get_data()
    samples, rate = read_wav(data)
    assert rate == 22050  # the voice's own rate, as its .onnx.json says
    seconds = len(samples) / rate
    assert 1.5 < seconds < 8, seconds
    assert np.abs(samples).max() > 10000
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 500
    assert shared_models.whisper is not None
    pcm16k = soxr.resample(samples.astype(np.float32) / 32768, rate, 16000)
    heard = transcribe_pcm(shared_models.whisper, (pcm16k * 32767).astype(np.int16).tobytes(), WhisperOptions())
    assert "tutor" in heard.lower(), heard

    # Synthesized once: the second learner to listen gets the same audio without another model call.
    calls = shared_models.compute.gate.calls
    again = await client.get(f"/api/voices/{ALBA}/preview")
    assert await again.get_data() == data
    assert shared_models.compute.gate.calls == calls


async def test_a_voice_in_another_language_previews_in_it(client: Any) -> None:
    await register(client)
    response = await client.get(f"/api/voices/{MYSTERY}/preview")
    assert response.status_code == 200
    samples, _ = read_wav(await response.get_data())
    assert np.abs(samples).max() > 10000


async def test_the_preview_of_a_voice_that_is_not_installed_is_not_found(client: Any) -> None:
    await register(client)
    for voice in ["female", "robot", "en_US-copying-medium", "x" * 300]:
        response = await client.get(f"/api/voices/{voice}/preview")
        assert response.status_code == 404
        error = (await response.get_json())["error"]
        assert error["code"] == "voice_not_found"
        assert "is installed" in error["message"]


VAPI_VOICES = {"Sarah": "EXAVITQu4vr4xnSDxMaL", "male.formal": "c6SfcYrb2t09NHXiT80T"}


async def test_in_hosted_mode_the_voices_are_the_providers_and_have_no_preview(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, VOICE__BACKEND="vapi", VAPI__PUBLIC_KEY="pk-test", VAPI__VOICES=json.dumps(VAPI_VOICES)
    )
    async for app in started_app(settings):
        client = app.test_client()
        body = await config(client)
        # The table's entries (config.toml's four voice x style ones among them), each by the name it has there.
        offered = {v["id"]: (v["name"], v["gender"], v["preview_url"]) for v in body["voices"]}
        assert set(offered) == {"Sarah", "male.formal", "male.casual", "female.formal", "female.casual"}
        assert offered["Sarah"] == ("Sarah", None, None)
        assert offered["male.formal"] == ("Male, formal", "male", None)
        await register(client)
        response = await client.get("/api/voices/Sarah/preview")
        assert response.status_code == 404
        error = (await response.get_json())["error"]
        assert error["code"] == "voice_preview_unavailable"
        assert "hosted voice provider" in error["message"]
        response = await client.post("/api/companions", json=companion_body())
        assert (await response.get_json())["error"]["code"] == "unknown_voice"
        created = await create_companion(client, voice="Sarah")
        assert (await call_voice(client, created["id"])) == {"provider": "11labs", "voiceId": VAPI_VOICES["Sarah"]}


async def test_with_a_hosted_tts_the_voices_are_the_ones_its_table_names(tmp_path: Path) -> None:
    table = {
        "male.formal": {"voice": "onyx", "length_scale": 1.0},
        "male.casual": {"voice": "onyx", "length_scale": 0.9},
        "female.formal": {"voice": "shimmer", "length_scale": 1.0},
        "female.casual": {"voice": "shimmer", "length_scale": 0.8},
    }
    settings = make_settings(tmp_path, VOICE__TTS__PROVIDER="openai", VOICE__TTS__VOICES=json.dumps(table))
    async for app in started_app(settings):
        client = app.test_client()
        body = await config(client)
        assert [(v["id"], v["name"], v["preview_url"]) for v in body["voices"]] == [
            ("onyx", "Onyx", None),
            ("shimmer", "Shimmer", None),
        ]
        assert body["legacy_voices"] == {
            "male.formal": "onyx",
            "male.casual": "onyx",
            "female.formal": "shimmer",
            "female.casual": "shimmer",
        }
    spoken, length_scale = catalogue(settings).speaking("shimmer", "casual")
    assert (spoken.provider_voice, round(1 / length_scale, 3)) == ("shimmer", 1.25)
