"""`tutor doctor`'s voice checks: load each model, run it once, and ask the LLM endpoint one question."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import openai

from server.pipeline.models import (
    BUNDLED_VOICE,
    _onnx_session,
    load_voice,
    load_whisper,
    resolve_voice_path,
    silero_vad_path,
    smart_turn_path,
)

if TYPE_CHECKING:
    from server.settings import Settings

Check = tuple[str, bool, str]


def _timed(name: str, work: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = work()
    except Exception as exc:  # the doctor reports every failure instead of stopping at the first
        return name, False, f"{type(exc).__name__}: {exc}"
    return name, True, f"{detail} (loaded and ran in {time.perf_counter() - started:.1f} s)"


def _model_checks(settings: Settings) -> list[Check]:
    from server.pipeline.stt import WhisperOptions, transcribe_pcm
    from server.pipeline.tts import synthesize_sentence

    voice_settings = settings.voice
    checks: list[Check] = []
    spoken: dict[str, bytes] = {}

    def piper(name: str) -> Callable[[], str]:
        def work() -> str:
            path = resolve_voice_path(voice_settings, name)
            if path is None:
                raise FileNotFoundError(
                    f"{voice_settings.models_dir}/{name}.onnx (+ .onnx.json) not found; "
                    f"lessons use {BUNDLED_VOICE} instead"
                )
            voice = load_voice(name, path)
            phonemes = voice.voice.phonemize("Hello, this is your tutor speaking.")
            spoken[name] = synthesize_sentence(voice, phonemes[0], 1.0, 16000)
            return f"{path}, {voice.sample_rate} Hz"

        return work

    if voice_settings.tts.provider == "piper":
        for name in dict.fromkeys([BUNDLED_VOICE, *(v.voice for v in voice_settings.tts.voices.values())]):
            checks.append(_timed(f"piper voice {name}", piper(name)))
    else:
        checks.append(("TTS", True, f"hosted ({voice_settings.tts.provider}) at {voice_settings.tts.base_url}"))

    def whisper() -> str:
        model, path = load_whisper(voice_settings)
        sample = spoken.get(BUNDLED_VOICE)
        if sample is None:
            return f"{path} (not run: no speech sample)"
        heard = transcribe_pcm(model, sample, WhisperOptions(voice_settings.stt.language))
        return f"{path}, heard the tutor say {heard!r}"

    if voice_settings.stt.provider == "whisper":
        checks.insert(0, _timed("whisper STT", whisper))
    else:
        checks.insert(0, ("STT", True, f"hosted ({voice_settings.stt.provider}) at {voice_settings.stt.base_url}"))

    def silero() -> str:
        session = _onnx_session(silero_vad_path(), threads=1)
        from server.pipeline.turn import speech_probability

        speech_probability(session, np.zeros(512, dtype=np.int16))
        return str(silero_vad_path())

    def smart_turn() -> str:
        from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

        session = _onnx_session(smart_turn_path(), threads=1)
        features = compute_whisper_log_mel_features(np.zeros(8 * 16000, dtype=np.float32), do_normalize=True)
        session.run(None, {"input_features": features[np.newaxis]})
        return str(smart_turn_path())

    checks.insert(1, _timed("silero VAD", silero))
    checks.insert(2, _timed("smart-turn v3", smart_turn))
    return checks


def llm_hint(settings: Settings) -> str:
    return (
        "set voice.llm.base_url (TUTOR_VOICE__LLM__BASE_URL) to an OpenAI-compatible endpoint and "
        "voice.llm.model (TUTOR_VOICE__LLM__MODEL) to a model it serves"
    )


async def check_llm(settings: Settings) -> Check:
    """Ask the configured endpoint for a few tokens; say exactly what is wrong when it does not answer."""
    from server.pipeline.service import make_llm_client

    llm = settings.voice.llm
    name = "LLM"
    client = make_llm_client(settings)
    started = time.perf_counter()
    try:
        reply = await client.chat.completions.create(
            model=llm.model,
            messages=[{"role": "user", "content": "Say hello in one word."}],
            max_tokens=5,
            timeout=min(llm.timeout_secs, 15.0),
        )
    except openai.APIConnectionError:
        return name, False, f"nothing answers at {llm.base_url}: start an LLM server there, or {llm_hint(settings)}"
    except openai.AuthenticationError:
        return name, False, f"{llm.base_url} refused the API key: set TUTOR_VOICE__LLM__API_KEY"
    except openai.NotFoundError:
        return name, False, f"{llm.base_url} does not serve model {llm.model!r}: {llm_hint(settings)}"
    except openai.APIError as exc:
        return name, False, f"{llm.base_url} answered with an error ({exc}); {llm_hint(settings)}"
    finally:
        await client.close()
    text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
    took = time.perf_counter() - started
    return name, True, f"{llm.model} at {llm.base_url} answered {text!r} in {took:.1f} s"


async def check_voice(settings: Settings) -> list[Check]:
    """Load every speech model and run it once (off the event loop), then call the LLM endpoint once."""
    checks = await asyncio.to_thread(_model_checks, settings)
    checks.append(await check_llm(settings))
    return checks
