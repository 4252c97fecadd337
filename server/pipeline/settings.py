"""Typed settings for live lessons: the voice backend and each stage (STT, LLM, TTS) it uses."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IceServer(_Section):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class TurnSettings(_Section):
    """How the pipeline decides the learner has finished speaking (Silero VAD + smart-turn v3)."""

    vad_confidence: float = Field(default=0.7, gt=0, lt=1)
    vad_start_secs: float = Field(default=0.2, ge=0.05, le=2)
    # Silence before the VAD reports a pause; transcription and smart-turn both start there.
    vad_stop_secs: float = Field(default=0.2, ge=0.05, le=2)
    # Silence after which the turn ends even when smart-turn thinks the learner will go on
    # (pipecat's default is 3 s, which is most of stock pipecat's slow turns).
    max_pause_secs: float = Field(default=1.0, ge=0.2, le=5)
    # The same, when the transcript so far ends with a question mark: smart-turn often takes a question said
    # with falling intonation for an unfinished turn. Set it to max_pause_secs to trust smart-turn alone.
    question_pause_secs: float = Field(default=0.3, ge=0.05, le=5)
    # Learners may talk over the tutor, which stops it speaking.
    allow_interruptions: bool = True


class STTSettings(_Section):
    provider: Literal["whisper", "openai"] = "whisper"
    # A CTranslate2 Whisper model directory, the name of one under models/, or "" for the bundled tiny.en.
    model: str = ""
    language: str = "en"
    beam_size: int = Field(default=1, ge=1, le=10)
    # One thread per call: tiny.en's matrices are too small for a second thread to pay (one utterance takes
    # 0.22 s on one thread against 0.28 s on two here), and a learner who stops talking while a call runs
    # starts at once on the other worker instead of waiting for it.
    cpu_threads: int = Field(default=1, ge=1, le=64)
    # Model calls run at once (CTranslate2 num_workers), each a batch of the utterances waiting when it
    # starts; each uses cpu_threads threads.
    workers: int = Field(default=2, ge=1, le=16)
    compute_type: str = "int8"
    # Hosted provider (an OpenAI-compatible /v1/audio/transcriptions endpoint); `model` then names the
    # provider's model ("" = "whisper-1").
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: SecretStr | None = None
    # A hosted call that takes longer fails the segment with an error event instead of stalling the lesson.
    timeout_secs: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)


class LLMSettings(_Section):
    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "llama3.2"
    api_key: SecretStr | None = None
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=1, le=4096)
    timeout_secs: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)


class TTSVoice(_Section):
    voice: str = "en_US-joe-medium"
    # piper's length_scale: above 1 speaks slower.
    length_scale: float = Field(default=1.0, gt=0.3, lt=3.0)


def _default_voices() -> dict[str, TTSVoice]:
    return {
        "male.formal": TTSVoice(length_scale=1.05),
        "male.casual": TTSVoice(length_scale=0.95),
        "female.formal": TTSVoice(length_scale=1.05),
        "female.casual": TTSVoice(length_scale=0.95),
    }


class TTSSettings(_Section):
    provider: Literal["piper", "openai"] = "piper"
    voices: dict[str, TTSVoice] = Field(default_factory=_default_voices)
    # Sentences synthesized at once across all lessons; each uses one onnxruntime thread.
    workers: int = Field(default=2, ge=1, le=16)
    # Hosted provider (an OpenAI-compatible /v1/audio/speech endpoint); the voices table then names the
    # provider's voices (e.g. "alloy"), and speed = 1 / length_scale.
    base_url: str = "http://127.0.0.1:8002/v1"
    model: str = "tts-1"
    api_key: SecretStr | None = None
    # A hosted call that takes longer fails the sentence with an error event instead of stalling the lesson.
    timeout_secs: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)


# Live lessons per CPU core that still answer within 2 s at p95 with no stalled answer, on the bundled models
# with the test clients on the same cores (bench/voice.py, docs/benchmarks.md).
LESSONS_PER_CORE = 2


class VoiceSettings(_Section):
    backend: Literal["local", "vapi"] = "local"
    # Load every model when the server starts (else on the first lesson).
    preload: bool = True
    # Live lessons one server process takes at once; more get a 503 (0 = no limit). "auto" allows
    # LESSONS_PER_CORE per CPU core the process may use, with headroom (docs/deploy.md, "Size").
    max_live_lessons: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    # An upper bound on any lesson in seconds, whatever its companion's duration (0 = none).
    max_lesson_secs: float = Field(default=0, ge=0)
    # Seconds to wait for the learner's browser to connect after the offer was answered; a lesson that has not
    # connected by then gives its voice slot back (a browser on a working network connects within a second or two).
    connect_timeout_secs: float = Field(default=10, gt=0)
    # How long a gap in the learner's packets may hold back the audio after it, waiting for the missing one.
    input_jitter_ms: int = Field(default=20, ge=0, le=160)
    # Opus packet length both ways (the answer's a=ptime): 40 ms halves the packets each lesson handles
    # against WebRTC's usual 20 ms, for 20 ms more delay at the learner's microphone.
    packet_ms: Literal[20, 40, 60] = 40

    # Log each reply's latency breakdown (VAD wait, STT, turn, LLM, TTS); watching every frame costs some CPU.
    log_latency: bool = False
    # Failed LLM turns in a row after which the lesson ends with reason "llm-unavailable".
    llm_failures_before_end: int = Field(default=3, ge=1)
    # Where a school drops extra piper voices (<name>.onnx + .onnx.json) and Whisper model directories.
    models_dir: str = "models"
    ice_servers: list[IceServer] = Field(default_factory=list)
    # The lesson ends after this long with nobody speaking, but never without a warning first: the tutor asks
    # `silence_prompt_message` and the page shows how long is left, `silence_warning_secs` before the end (at most
    # half of silence_timeout_secs). Speaking in that time keeps the lesson going.
    silence_timeout_secs: float = Field(default=60.0, gt=0)
    silence_warning_secs: float = Field(default=15.0, gt=0)
    silence_prompt_message: str = "Are you still there? Say something when you're ready to go on."
    system_prompt: str = (
        "You are a highly knowledgeable tutor teaching a real-time voice lesson with a student. "
        "Your goal is to teach the student about the topic and subject.\n"
        "Topic: {topic}. Subject: {subject}.\n"
        "Keep the conversation flowing while keeping it on the topic. "
        "From time to time check that the student is following you and understands.\n"
        "Break the topic into smaller parts and teach them one at a time.\n"
        "Keep your style of conversation {style}.\n"
        "Keep your answers short, like in a real voice conversation: one to three spoken sentences.\n"
        "Do not use any special characters, markdown, lists or emojis: your words are spoken aloud."
    )
    first_message: str = "Hello, let's start the session. Today we'll be talking about {topic}."
    goodbye_message: str = "Our time is up for today. Well done, and goodbye!"
    # Spoken (and shown) when the LLM fails or cannot be reached.
    apology_message: str = "Sorry, I can't think of an answer right now. Please try again in a moment."
    turn: TurnSettings = Field(default_factory=TurnSettings)
    stt: STTSettings = Field(default_factory=STTSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)

    def silence_warning_lead(self) -> float:
        """How long before a silent lesson ends the learner is warned (seconds)."""
        return min(self.silence_warning_secs, self.silence_timeout_secs / 2)

    def lesson_limit(self, cpus: int) -> int:
        """How many live lessons a process on `cpus` cores takes (0 = no limit)."""
        if self.max_live_lessons == "auto":
            return LESSONS_PER_CORE * max(1, cpus)
        return self.max_live_lessons
