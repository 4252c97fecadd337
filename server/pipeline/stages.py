"""The factory that picks each lesson's speech stages from config: one branch per STT and TTS provider."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import openai
from openai import AsyncOpenAI
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import ErrorFrame, Frame, TranscriptionFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory, classify_http_status_code
from pipecat.utils.time import time_now_iso8601

from server.pipeline.llm_client import NO_API_KEY, openai_client
from server.pipeline.models import ModelError
from server.pipeline.stt import SharedWhisperSTTService, WhisperOptions
from server.pipeline.tts import SPOKEN_TEXT_TRANSFORMS, SharedPiperTTSService
from server.voices import hosted_catalogue

if TYPE_CHECKING:
    from server.pipeline.models import SharedModels
    from server.settings import VoiceSettings

log = logging.getLogger(__name__)

OnSegment = Callable[[str], Awaitable[None]]
# (code, message): how a stage tells the learner's page that it failed, e.g. ("stt-unavailable", "...").
OnStageError = Callable[[str, str], None]

# OpenAI's /v1/audio/speech returns 24 kHz 16-bit mono PCM for response_format "pcm".
HOSTED_TTS_SAMPLE_RATE = 24000
STT_UNAVAILABLE = "stt-unavailable"
TTS_UNAVAILABLE = "tts-unavailable"


def make_stt(
    settings: VoiceSettings,
    models: SharedModels,
    on_segment: OnSegment,
    on_error: OnStageError | None = None,
) -> FrameProcessor:
    """The lesson's speech-to-text stage for `settings.stt.provider`; `on_segment` hears each final segment."""
    stt = settings.stt
    if stt.provider == "whisper":
        if models.stt_batcher is None:
            raise ModelError('voice.stt.provider is "whisper" but the Whisper model was not loaded')
        return SharedWhisperSTTService(
            batcher=models.stt_batcher,
            options=WhisperOptions(language=stt.language, beam_size=stt.beam_size),
            on_segment=on_segment,
        )
    if stt.provider == "openai":
        return HostedSTTService(
            client=openai_client(stt.base_url, stt.api_key, stt.timeout_secs, stt.max_retries),
            base_url=stt.base_url,
            model=stt.model or "whisper-1",
            language=stt.language,
            on_segment=on_segment,
            on_error=on_error,
        )
    raise ValueError(f"unknown voice.stt.provider {stt.provider!r}")


def make_tts(
    settings: VoiceSettings,
    models: SharedModels,
    voice: str,
    style: str,
    on_error: OnStageError | None = None,
    fixed_phrases: Collection[str] = (),
) -> FrameProcessor:
    """The lesson's text-to-speech stage for `settings.tts.provider`, speaking as the companion's voice x style.

    `fixed_phrases` (the lesson's greeting, goodbye and apology) are synthesized once per process and kept.
    """
    tts = settings.tts
    if tts.provider == "piper":
        loaded, length_scale = models.voice_for(voice, style)
        return SharedPiperTTSService(
            voice=loaded,
            length_scale=length_scale,
            executor=models.compute.tts_executor,
            background_executor=models.compute.tts_background_executor,
            phonemizer_lock=models.phonemizer_lock,
            phrase_cache=models.phrase_cache,
            fixed_phrases=fixed_phrases,
            cpu_gate=models.compute.gate,
            text_transforms=SPOKEN_TEXT_TRANSFORMS,
        )
    if tts.provider == "openai":
        # With a hosted provider the voices table names the provider's voices (e.g. "alloy"), not piper models.
        spoken, length_scale = hosted_catalogue(tts).speaking(voice, style)
        return HostedTTSService(
            client=openai_client(tts.base_url, tts.api_key, tts.timeout_secs, tts.max_retries),
            base_url=tts.base_url,
            model=tts.model,
            voice=spoken.provider_voice,
            speed=round(1.0 / length_scale, 3),
            on_error=on_error,
            text_transforms=SPOKEN_TEXT_TRANSFORMS,
        )
    raise ValueError(f"unknown voice.tts.provider {tts.provider!r}")


def describe_failure(stage: str, base_url: str, env_prefix: str, exc: Exception) -> tuple[str, ErrorCategory]:
    """What the learner's page and the log say when a hosted stage fails, and pipecat's category for it."""
    fix = (
        f"start it, or point voice.{stage}.base_url ({env_prefix}__BASE_URL) at another OpenAI-compatible "
        f'endpoint, or set voice.{stage}.provider back to the local model ("whisper" / "piper")'
    )
    what = "speech-to-text" if stage == "stt" else "text-to-speech"
    if isinstance(exc, openai.APITimeoutError):
        return f"The {what} service at {base_url} did not answer in time: {fix}.", ErrorCategory.CONNECTIVITY
    if isinstance(exc, openai.APIConnectionError):
        return f"No {what} service answered at {base_url}: {fix}.", ErrorCategory.CONNECTIVITY
    if isinstance(exc, openai.APIStatusError):
        category = classify_http_status_code(exc.status_code)
        hint = f"; check {env_prefix}__API_KEY" if exc.status_code in (401, 403) else ""
        return (
            f"The {what} service at {base_url} refused the request (HTTP {exc.status_code}: {exc.message}){hint}.",
            category,
        )
    return f"The {what} service at {base_url} failed: {type(exc).__name__}: {exc}.", ErrorCategory.UNKNOWN


class HostedSTTService(OpenAISTTService):
    """pipecat's OpenAI STT (one `/v1/audio/transcriptions` call per VAD segment) against any compatible server.

    Like the local Whisper stage it reports each final segment through `on_segment`, and a failed call becomes
    an error for the learner's page instead of a transcript that never comes.
    """

    def __init__(
        self,
        *,
        client: AsyncOpenAI,
        base_url: str,
        model: str,
        language: str,
        on_segment: OnSegment | None = None,
        on_error: OnStageError | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key=NO_API_KEY,
            base_url=base_url,
            settings=OpenAISTTService.Settings(model=model, language=language),
            **kwargs,
        )
        # The base class built a client with the SDK's defaults (10 minute timeout); ours has the configured ones.
        self._client = client
        self._base_url = base_url
        self._on_segment = on_segment
        self._on_error = on_error
        self._language = Language(language) if language in Language._value2member_map_ else None

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        await self.start_processing_metrics()
        try:
            response = await self._transcribe(audio)
        except Exception as exc:
            message, category = describe_failure("stt", self._base_url, "TUTOR_VOICE__STT", exc)
            log.warning("voice: %s", message)
            if self._on_error is not None:
                self._on_error(STT_UNAVAILABLE, message)
            yield ErrorFrame(error=message, exception=exc, category=category)
            return
        finally:
            await self.stop_processing_metrics()
        text = (response.text or "").strip()
        if not text:
            return
        if self._on_segment is not None:
            await self._on_segment(text)
        yield TranscriptionFrame(text, self._user_id, time_now_iso8601(), self._language, result=response)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._client.close()


class HostedTTSService(OpenAITTSService):
    """pipecat's OpenAI TTS against any `/v1/audio/speech` server: any voice name the server knows (pipecat
    accepts only OpenAI's), the configured timeout, streamed 24 kHz PCM, and failures shown to the learner."""

    def __init__(
        self,
        *,
        client: AsyncOpenAI,
        base_url: str,
        model: str,
        voice: str,
        speed: float,
        on_error: OnStageError | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_key=NO_API_KEY,
            base_url=base_url,
            settings=OpenAITTSService.Settings(model=model, voice=voice, speed=speed),
            **kwargs,
        )
        self._client = client
        self._base_url = base_url
        self._on_error = on_error
        self._resampler = create_stream_resampler()

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        # pipecat types its settings loosely (NotGiven placeholders); read them as plain values.
        settings: Any = self._settings
        params: dict[str, Any] = {
            "input": text,
            "model": str(settings.model),
            "voice": str(settings.voice),
            "response_format": "pcm",
        }
        if isinstance(settings.speed, float) and settings.speed != 1.0:
            params["speed"] = settings.speed
        try:
            async with self._client.audio.speech.with_streaming_response.create(**params) as response:
                await self.start_tts_usage_metrics(text)
                carry = b""
                async for chunk in response.iter_bytes(self.chunk_size):
                    # Chunks may split a 16-bit sample; only whole samples go out.
                    data = carry + chunk
                    whole = len(data) - len(data) % 2
                    data, carry = data[:whole], data[whole:]
                    if not data:
                        continue
                    if self.sample_rate != HOSTED_TTS_SAMPLE_RATE:
                        data = await self._resampler.resample(data, HOSTED_TTS_SAMPLE_RATE, self.sample_rate)
                    await self.stop_ttfb_metrics()
                    yield TTSAudioRawFrame(data, self.sample_rate, 1, context_id=context_id)
        except Exception as exc:
            message, category = describe_failure("tts", self._base_url, "TUTOR_VOICE__TTS", exc)
            log.warning("voice: %s", message)
            if self._on_error is not None:
                self._on_error(TTS_UNAVAILABLE, message)
            yield ErrorFrame(error=message, exception=exc, category=category)
        finally:
            await self.stop_ttfb_metrics()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._client.close()
