"""A voice's preview: one short sentence in that voice, synthesized once per process with the shared model."""

from __future__ import annotations

import asyncio
import io
import time
import wave

from server.pipeline.models import SharedModels
from server.pipeline.tts import phonemize, synthesize_sentence

# No lesson waits for a preview: it queues behind the lessons' urgent model calls for up to this long (then it
# takes its turn, so a busy server still answers it), on the low-priority synthesis pool.
PREVIEW_PATIENCE_SECS = 2.0
# Silence after the sentence, so a browser's player does not clip the last word.
TRAILING_SILENCE_SECS = 0.25


async def preview_wav(models: SharedModels, voice_id: str) -> bytes | None:
    """The voice's preview as a WAV at the voice's own sample rate; None when no such voice is loaded."""
    cached = models.previews.get(voice_id)
    if cached is not None:
        return cached
    voice = models.catalogue.get(voice_id) if models.catalogue is not None else None
    loaded = models.voices.get(voice_id)
    if voice is None or loaded is None:
        return None
    gate, urgent_at = models.compute.gate, time.monotonic() + PREVIEW_PATIENCE_SECS

    def synthesize() -> bytes:
        sentences = phonemize(loaded, voice.preview_sentence, models.phonemizer_lock)
        with gate.slot(urgent_at):
            pcm = b"".join(synthesize_sentence(loaded, p, 1.0, loaded.sample_rate) for p in sentences)
        return _wav(pcm + bytes(2 * int(loaded.sample_rate * TRAILING_SILENCE_SECS)), loaded.sample_rate)

    loop = asyncio.get_running_loop()
    wav = await loop.run_in_executor(models.compute.tts_background_executor, synthesize)
    # Two first requests at once both synthesize it; either result is the same sentence.
    models.previews[voice_id] = wav
    return wav


def _wav(pcm: bytes, sample_rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return out.getvalue()
