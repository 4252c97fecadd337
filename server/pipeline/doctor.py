"""`tutor doctor`'s voice checks: load each local model and run it once, call each hosted endpoint once."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import openai

from server.pipeline.language_model import LanguageModel, operator_hint
from server.pipeline.llm_client import openai_client
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
# Speech to test transcription with: 16-bit mono PCM and its sample rate.
Sample = tuple[bytes, int]
DOCTOR_SENTENCE = "Hello, this is your tutor speaking."
# The doctor waits at most this long for any one hosted endpoint, whatever a lesson would wait.
DOCTOR_TIMEOUT_SECS = 15.0


def _timed(name: str, work: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = work()
    except Exception as exc:  # the doctor reports every failure instead of stopping at the first
        return name, False, f"{type(exc).__name__}: {exc}"
    return name, True, f"{detail} (loaded and ran in {time.perf_counter() - started:.1f} s)"


def _model_checks(settings: Settings) -> tuple[list[Check], Sample | None]:
    """The local models' checks, and the bundled voice's speech when piper is the TTS (a hosted STT hears it)."""
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
            phonemes = voice.voice.phonemize(DOCTOR_SENTENCE)
            spoken[name] = synthesize_sentence(voice, phonemes[0], 1.0, 16000)
            return f"{path}, {voice.sample_rate} Hz"

        return work

    if voice_settings.tts.provider == "piper":
        for name in dict.fromkeys([BUNDLED_VOICE, *(v.voice for v in voice_settings.tts.voices.values())]):
            checks.append(_timed(f"piper voice {name}", piper(name)))

    def whisper() -> str:
        model, path = load_whisper(voice_settings)
        sample = spoken.get(BUNDLED_VOICE)
        if sample is None:
            return f"{path} (not run: no speech sample)"
        heard = transcribe_pcm(model, sample, WhisperOptions(voice_settings.stt.language))
        return f"{path}, heard the tutor say {heard!r}"

    if voice_settings.stt.provider == "whisper":
        checks.insert(0, _timed("whisper STT", whisper))

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

    local_stt = voice_settings.stt.provider == "whisper"
    checks.insert(1 if local_stt else 0, _timed("silero VAD", silero))
    checks.insert(2 if local_stt else 1, _timed("smart-turn v3", smart_turn))
    sample = spoken.get(BUNDLED_VOICE)
    return checks, (sample, 16000) if sample is not None else None


def _wav(pcm: bytes, sample_rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return out.getvalue()


async def check_hosted_tts(settings: Settings) -> tuple[Check, Sample | None]:
    """Ask the hosted /v1/audio/speech for one sentence; its audio then tests the hosted STT."""
    from server.pipeline.stages import HOSTED_TTS_SAMPLE_RATE, describe_failure

    tts = settings.voice.tts
    voice = next(iter(tts.voices.values())).voice if tts.voices else "alloy"
    name = f"TTS ({tts.base_url})"
    client = openai_client(tts.base_url, tts.api_key, min(tts.timeout_secs, DOCTOR_TIMEOUT_SECS), 0)
    started = time.perf_counter()
    try:
        response = await client.audio.speech.create(
            model=tts.model, voice=voice, input=DOCTOR_SENTENCE, response_format="pcm"
        )
        pcm = response.content
    except Exception as exc:
        return (name, False, describe_failure("tts", tts.base_url, "TUTOR_VOICE__TTS", exc)[0]), None
    finally:
        await client.close()
    seconds = len(pcm) / 2 / HOSTED_TTS_SAMPLE_RATE
    took = time.perf_counter() - started
    detail = f"{tts.model} spoke {seconds:.1f} s of audio as {voice!r} in {took:.1f} s"
    return (name, seconds > 0.2, detail), (pcm, HOSTED_TTS_SAMPLE_RATE)


async def check_hosted_stt(settings: Settings, sample: Sample | None) -> Check:
    """Send the hosted /v1/audio/transcriptions one spoken sentence and say what it heard."""
    from server.pipeline.stages import describe_failure

    stt = settings.voice.stt
    name = f"STT ({stt.base_url})"
    pcm, rate = sample if sample is not None else (bytes(16000), 16000)  # half a second of silence
    client = openai_client(stt.base_url, stt.api_key, min(stt.timeout_secs, DOCTOR_TIMEOUT_SECS), 0)
    started = time.perf_counter()
    try:
        result = await client.audio.transcriptions.create(
            file=("doctor.wav", _wav(pcm, rate), "audio/wav"), model=stt.model or "whisper-1", language=stt.language
        )
    except Exception as exc:
        return name, False, describe_failure("stt", stt.base_url, "TUTOR_VOICE__STT", exc)[0]
    finally:
        await client.close()
    took = time.perf_counter() - started
    return name, True, f"{stt.model or 'whisper-1'} heard {result.text.strip()!r} in {took:.1f} s"


async def check_llm(settings: Settings) -> Check:
    """Choose the language model as a lesson would (voice.llm.provider) and ask it for a few tokens; say exactly
    what is wrong when none answers, and that the bundled model is a demonstration."""
    name = "LLM"
    model = LanguageModel(settings.voice, cpus=1)
    try:
        status = await model.start()
        if not status.available:
            return name, False, f"{status.detail}: {operator_hint(settings.voice)}"
        started = time.perf_counter()
        try:
            reply = await model.client.chat.completions.create(
                model=model.model_name,
                messages=[{"role": "user", "content": "Say hello in one word."}],
                max_tokens=5,
                timeout=min(settings.voice.llm.timeout_secs, DOCTOR_TIMEOUT_SECS),
            )
        except openai.NotFoundError:
            llm = settings.voice.llm
            return name, False, f"{llm.base_url} does not serve model {llm.model!r}: {operator_hint(settings.voice)}"
        except openai.APIError as exc:
            return name, False, f"{status.detail} answered with an error ({exc}); {operator_hint(settings.voice)}"
        text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
        took = time.perf_counter() - started
        return name, True, f"{status.detail} answered {text!r} in {took:.1f} s"
    finally:
        await model.close()


async def check_voice(settings: Settings) -> list[Check]:
    """Load each local speech model and run it once (off the event loop), call each hosted stage once (the
    hosted voice's speech is what the hosted transcription hears), then ask the LLM endpoint one question."""
    voice = settings.voice
    checks, sample = await asyncio.to_thread(_model_checks, settings)
    if voice.tts.provider != "piper":
        tts_check, hosted_sample = await check_hosted_tts(settings)
        checks.append(tts_check)
        sample = hosted_sample or sample
    if voice.stt.provider != "whisper":
        checks.insert(0, await check_hosted_stt(settings, sample))
    checks.append(await check_llm(settings))
    return checks
