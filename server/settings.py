"""One typed settings object, read from config.toml and overridden by TUTOR_<SECTION>__<KEY> variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources import DefaultSettingsSource

ENV_PREFIX = "TUTOR_"


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The live lessons' sections (the voice backend and each stage it uses) live here too, so that settings
# depend on nothing above them and server/pipeline/ imports its settings from this module.


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
    # "auto": the OpenAI-compatible endpoint at base_url when it answers at start, else the embedded runtime.
    # "openai": that endpoint only (lessons are refused while it does not answer). "embedded": llama.cpp
    # in-process on `model` (a .gguf file under voice.models_dir, or the bundled demonstration model).
    provider: Literal["auto", "openai", "embedded"] = "auto"
    base_url: str = "http://127.0.0.1:11434/v1"
    # The endpoint's model name, or with the embedded runtime a GGUF file (any other name: the bundled model).
    model: str = "llama3.2"
    api_key: SecretStr | None = None
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=1, le=4096)
    timeout_secs: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=1, ge=0, le=10)
    # How often the server checks that its language model still answers (and at once after a failed reply).
    health_interval_secs: float = Field(default=30.0, gt=0)
    # The embedded runtime: tokens of context (prompt + reply), threads per generating copy, layers offloaded to
    # a GPU (llama.cpp built with CUDA; 0 = CPU only), and copies of the model generating side by side
    # (0 = one per CPU slot for a model under 1 GB, else one).
    context_size: int = Field(default=2048, ge=256, le=131072)
    threads: int = Field(default=1, ge=1, le=64)
    # Threads that read a prompt (one batch, which they share well; 0 = every core the process may use).
    batch_threads: int = Field(default=0, ge=0, le=64)
    # The embedded model's reply stops after this many sentences (0 = at max_tokens): a small model ignores
    # "one to three sentences" and would talk for a minute.
    max_sentences: int = Field(default=3, ge=0, le=50)
    gpu_layers: int = Field(default=0, ge=-1)
    instances: int = Field(default=0, ge=0, le=16)
    # Whether the embedded model also writes what no learner waits for (recaps, the learner's facts, a quiz's
    # judgement): token by token after every lesson's model calls, giving its copy up to any lesson that needs it.
    # Off: only an OpenAI-compatible endpoint writes them, and with the embedded model they are stored as failed.
    background_work: bool = True


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


# What one live lesson costs, in CPU cores, at the pace of bench/voice.py's concurrency runs (a turn every few
# seconds; docs/benchmarks.md, "Voice"): the speech stages (WebRTC, VAD, smart-turn, Whisper, piper) with the
# language model elsewhere, 15% of a core;
SPEECH_CORES_PER_LESSON = 0.15
# and what the bundled model adds when it runs in-process on the CPU (25% of a core a lesson in all).
# language_model.py scales it by file size for another GGUF: llama.cpp reads every weight for every token.
BUNDLED_LLM_CORES_PER_LESSON = 0.10


class TeachingSettings(_Section):
    """How a companion teaches (server/teaching.py): each style's instruction, added to the system prompt."""

    explain: str = (
        "Teach by explaining: introduce one idea at a time with a simple example, then ask a short question to "
        "check the student followed."
    )
    socratic: str = (
        "Teach the Socratic way: guide the student with one short question at a time so they work things out "
        "themselves. When the student is working on a problem, never give its answer or do it for them, even if "
        "they ask for it: ask a question that leads them to the next step instead. When they get it right, say "
        "so and ask them why it works."
    )
    # {questions}: the open review questions from the learner's past recaps with this companion, one a line.
    quiz: str = (
        "Teach by quizzing: ask the student these review questions from earlier lessons, one at a time, and "
        "wait for each answer. Say whether it is right; if it is not, explain briefly, then go on to the next. "
        "When they are done, ask new short questions on the topic.\nReview questions:\n{questions}"
    )
    # A quiz with no open review questions (no recaps yet, or every question answered right).
    quiz_without_questions: str = (
        "Teach by quizzing: ask the student short questions on the topic, one at a time, say whether each "
        "answer is right and explain briefly when it is not."
    )
    # How many open review questions a quiz lists (the least asked first).
    quiz_questions: int = Field(default=5, ge=1, le=20)
    # Socratic lessons: said instead of a reply that would state the answer to a sum the learner is working on
    # (server/pipeline/socratic.py); {problem} is the sum as the learner said it ("12 times 7").
    socratic_guiding_question: str = (
        "Let's work that out together instead of me telling you. What could be a first step for {problem}?"
    )
    # After a quiz lesson the language model judges which review questions were answered right; a judgement
    # taking longer is given up (logged) and the lesson's progress is not stored.
    judge_timeout_secs: float = Field(default=30.0, gt=0, le=300)


# Lessons are taken until this share of the cores is spoken for: turns come in bursts, and a reply waits when
# they coincide. On 2 cores that is 8 lessons with the model elsewhere (the most that answered within 2 s at
# p95 in the benchmark) and 4 with the bundled model.
LESSON_CPU_HEADROOM = 0.6


class VoiceSettings(_Section):
    backend: Literal["local", "vapi"] = "local"
    # Load every model when the server starts (else on the first lesson).
    preload: bool = True
    # Live lessons one server process takes at once; more get a 503 (0 = no limit). "auto" divides the cores
    # the process may use by what a lesson costs with the chosen stages (lesson_limit, docs/deploy.md "Size").
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
    teaching: TeachingSettings = Field(default_factory=TeachingSettings)

    @field_validator("packet_ms", mode="before")
    @classmethod
    def _packet_ms_from_text(cls, value: Any) -> Any:
        # An environment variable is text, and pydantic matches a number Literal only against numbers.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    def silence_warning_lead(self) -> float:
        """How long before a silent lesson ends the learner is warned (seconds)."""
        return min(self.silence_warning_secs, self.silence_timeout_secs / 2)

    def lesson_limit(self, cpus: int, llm_cores_per_lesson: float = 0.0) -> int:
        """How many live lessons a process on `cpus` cores takes (0 = no limit); `llm_cores_per_lesson` is what
        the language model costs this machine per lesson (0 when it runs elsewhere)."""
        if self.max_live_lessons == "auto":
            per_lesson = SPEECH_CORES_PER_LESSON + max(0.0, llm_cores_per_lesson)
            return max(1, int(max(1, cpus) * LESSON_CPU_HEADROOM / per_lesson + 1e-9))
        return self.max_live_lessons


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Where the SQLite file, the generated session key and uploads live.
    data_dir: str = "data"
    # From the environment only; generated once into data_dir when unset.
    secret_key: SecretStr | None = None
    # The address learners use, for SSO redirects and Vapi webhooks; empty = taken from each request.
    public_url: str = ""
    # Secure cookies need HTTPS; keep false for plain-HTTP loopback use.
    secure_cookies: bool = False
    log_level: str = "INFO"
    # How often a process records that it is alive. Lessons held by a process silent for three beats are
    # ended with `server-restart` by another process (or this one after a restart).
    heartbeat_secs: float = Field(default=10, gt=0, le=3600)


class DatabaseSettings(_Section):
    # Empty = SQLite at <data_dir>/tutor.db.
    url: str = ""
    pool_size: int = Field(default=10, ge=1, le=200)
    echo: bool = False
    # SQLite is always migrated at start; with PostgreSQL and several processes run `tutor db upgrade` instead.
    auto_migrate: bool = False


class SSOSettings(_Section):
    enabled: bool = False
    issuer: str = ""
    client_id: str = ""
    client_secret: SecretStr | None = None
    scopes: str = "openid email profile"
    button_label: str = "Sign in with your school"
    # A claim in the ID token (e.g. "groups") whose values map to plans through plan_map.
    plan_claim: str = ""
    plan_map: dict[str, Literal["free", "core", "pro"]] = Field(default_factory=dict)
    # The same for roles: a claim whose values map to roles through role_map (the highest mapped role wins).
    role_claim: str = ""
    role_map: dict[str, Literal["learner", "teacher", "admin"]] = Field(default_factory=dict)


class ThrottleSettings(_Section):
    # Failed sign-ins counted per account (normalized email) and per client address within a window; reaching
    # the count locks that key for lock_seconds, doubling at each further lock up to max_lock_seconds.
    account_failures: int = Field(default=5, ge=1, le=1000)
    # Higher than per account: a whole school behind one NAT address shares this count.
    address_failures: int = Field(default=50, ge=1, le=100000)
    window_seconds: int = Field(default=900, ge=1, le=86400)
    lock_seconds: int = Field(default=30, ge=1, le=86400)
    max_lock_seconds: int = Field(default=900, ge=1, le=86400)


class AuthSettings(_Section):
    allow_registration: bool = True
    session_days: int = Field(default=14, ge=1, le=365)
    min_password_length: int = Field(default=8, ge=6, le=128)
    # Addresses of reverse proxies whose X-Forwarded-For is believed when counting failed sign-ins per address;
    # empty: the connection's own address counts (behind a proxy, that is the proxy's for every learner).
    trusted_proxies: list[str] = Field(default_factory=list)
    throttle: ThrottleSettings = Field(default_factory=ThrottleSettings)
    sso: SSOSettings = Field(default_factory=SSOSettings)


Limit = int | Literal["unlimited"]


class PlanLimits(_Section):
    companions: Limit
    lessons: Limit

    @field_validator("companions", "lessons")
    @classmethod
    def _non_negative(cls, value: Limit) -> Limit:
        if isinstance(value, int) and value < 0:
            raise ValueError('must be a whole number >= 0 or "unlimited"')
        return value


class PlansSettings(_Section):
    # "all-time" counts every lesson ever started (as the original app did); "month" counts the calendar month (UTC).
    lesson_period: Literal["all-time", "month"] = "all-time"
    default_plan: Literal["free", "core", "pro"] = "free"
    free: PlanLimits = Field(default_factory=lambda: PlanLimits(companions=3, lessons=10))
    core: PlanLimits = Field(default_factory=lambda: PlanLimits(companions=10, lessons="unlimited"))
    pro: PlanLimits = Field(default_factory=lambda: PlanLimits(companions="unlimited", lessons="unlimited"))


class ClassesSettings(_Section):
    # How long a class's join code works; a teacher can issue a new one at any time. 0 = it never expires.
    join_code_days: int = Field(default=14, ge=0, le=3650)


class RetentionSettings(_Section):
    # Transcripts of lessons started more than this many days ago are deleted by the server (0 = kept for good);
    # an administrator can change it in the page, which then wins over this default.
    days: int = Field(default=0, ge=0, le=36500)
    # How often each server process deletes them.
    interval_secs: float = Field(default=3600, gt=0, le=7 * 86400)


class VapiSettings(_Section):
    public_key: str = ""
    private_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # The id of a Bearer-token credential created in Vapi's dashboard holding webhook_secret; the assistant names
    # it so Vapi authenticates its webhooks to us. Empty: rely on an organisation-wide server secret at Vapi.
    server_credential_id: str = ""
    # Where the page loads the @vapi-ai/web SDK from; empty = the copy installed from npm under web/vendor/.
    sdk_url: str = ""
    transcriber_provider: str = "deepgram"
    transcriber_model: str = "nova-2"
    model_provider: str = "openai"
    model: str = "gpt-4o-mini"
    voice_provider: str = "11labs"
    voices: dict[str, str] = Field(
        default_factory=lambda: {
            "male.formal": "c6SfcYrb2t09NHXiT80T",
            "male.casual": "2BJW5coyhAzSr8STdHbE",
            "female.formal": "sarah",
            "female.casual": "ZIlrSGI4jZqobxRKprJz",
        }
    )


class ObservabilitySettings(_Section):
    # Sentry is switched on by the SENTRY_DSN environment variable.
    metrics: bool = True
    # From the environment only: a Prometheus scraper sends "Authorization: Bearer <token>".
    metrics_token: SecretStr | None = None


Severity = Literal["low", "medium", "high"]


class SafetyCategory(_Section):
    """One kind of harm the local check looks for (server/safety.py), and how bad a match is."""

    severity: Severity = "high"
    # Words and phrases, matched as whole words whatever their case; a space also matches a hyphen, and an
    # apostrophe may be left out ("youre" matches "you're").
    words: list[str] = Field(default_factory=list)
    # Regular expressions (Python's syntax), matched case-insensitively; (?-i:...) makes a part case-sensitive.
    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        import re

        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from exc
        return patterns


def _default_safety_categories() -> dict[str, SafetyCategory]:
    # Chosen for a tutor that talks with children: first-person and directed phrases rather than single words,
    # so "the cell kills bacteria" or "Cleopatra's death" in a lesson is not a flag (tests/test_safety.py).
    # fmt: off
    return {
        "self_harm": SafetyCategory(
            words=[
                "kill myself", "killing myself", "kill my self", "end my life", "ending my life",
                "take my own life", "want to die", "wanna die", "want to be dead", "wish I was dead",
                "wish I were dead", "better off dead", "hurt myself", "hurting myself", "harm myself",
                "harming myself", "cut myself", "cutting myself", "self harm", "suicidal",
                "want to commit suicide", "going to commit suicide", "thinking about suicide",
                "no reason to live", "don't want to live", "do not want to live", "don't want to be alive",
                "kill yourself", "hurt yourself", "you should die",
            ],
        ),
        "abuse": SafetyCategory(
            words=[
                "you are stupid", "you're stupid", "you are worthless", "you're worthless", "you are useless",
                "you're useless", "you are an idiot", "you're an idiot", "nobody likes you", "no one likes you",
                "everyone hates you", "I hate you", "I will kill you", "I'll kill you", "I'm going to kill you",
                "our little secret", "don't tell your parents", "do not tell your parents",
                "don't tell your teacher", "do not tell your teacher",
            ],
            # A learner telling of someone hurting them: "my stepdad hits me", "he touched me".
            patterns=[
                r"\b(?:my|he|she|they)\b(?:\s+[\w']+){0,3}?\s+"
                r"(?:hits|hit|beats|beat|kicks|kicked|punches|punched|hurts|hurt|touches|touched)\s+me\b"
            ],
        ),
        "sexual": SafetyCategory(
            words=[
                "porn", "porno", "pornography", "nudes", "send nudes", "sexy", "have sex", "having sex",
                "had sex", "blowjob", "masturbate", "masturbating", "horny", "take off your clothes",
                "take your clothes off", "send me a picture of you", "send me a photo of you",
                "send me a picture of yourself", "send me a photo of yourself",
            ],
        ),
        "personal_data": SafetyCategory(
            severity="medium",
            words=[
                "my phone number is", "my address is", "my home address is", "what's your address",
                "what is your address", "what's your home address", "what is your home address",
                "where do you live", "what's your phone number", "what is your phone number",
            ],
            patterns=[
                # Phone numbers: 555-123-4567, (555) 123 4567, 07700 900123, +44 7700 900123.
                r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)|\d{2,5})(?:[\s.-]?\d{3,4}){2}(?!\w)",
                # E-mail addresses, written or as speech-to-text writes them ("ann at school dot org").
                r"[\w.+-]@[\w-]+(?:\.[\w-]+)+",
                r"\b\w+ at \w+ dot (?:com|org|net|edu|gov|co|uk|ac)\b",
                # Street addresses: a house number, a capitalised name, a street word ("42 Baker Street").
                r"\b\d{1,5}[A-Za-z]?\s+(?-i:(?:[A-Z][\w'.-]*\s+){1,3}"
                r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Court|Ct|Boulevard|Blvd|Way|Close|Place|"
                r"Terrace|Crescent|Grove|Gardens))\b",
            ],
        ),
    }
    # fmt: on


class SafetySettings(_Section):
    """Screening of every final utterance in a lesson (server/safety.py, server/pipeline/screening.py)."""

    enabled: bool = True
    # After the local check, off the audio path: "model" asks the configured language model to classify each
    # utterance the local lists let through (only an OpenAI-compatible endpoint that answers: the embedded model
    # would take the lessons' cores); "off" keeps to the local check. A moderation_url wins over both.
    classifier: Literal["model", "off"] = "model"
    # An OpenAI-compatible API with /moderations (e.g. "https://api.openai.com/v1"); empty = not used.
    moderation_url: str = ""
    moderation_model: str = "omni-moderation-latest"
    moderation_api_key: SecretStr | None = None
    # A classification taking longer is given up (logged); the utterance keeps its local verdict.
    classifier_timeout_secs: float = Field(default=10.0, gt=0, le=120)
    # Said instead of a tutor reply the local check flags; {topic}, {subject} and {name} come from the companion.
    redirect_message: str = "Let's get back to our lesson on {topic}."
    # Said instead of a reply when a learner says something flagged high (self-harm, abuse): set the school's own
    # contacts here.
    support_message: str = (
        "I'm really glad you told me, and I care about how you feel. "
        "Please tell a trusted adult, like your teacher or a parent, right now. "
        "If you are in danger, call the emergency number where you live straight away."
    )
    categories: dict[str, SafetyCategory] = Field(default_factory=_default_safety_categories)


class AlertSettings(_Section):
    """Where high-severity safety flags are sent besides the console (server/alerts.py)."""

    # E-mail to the learner's teachers and the administrators; empty smtp_host = no e-mail.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    mail_from: str = "tutor@localhost"
    # Addresses that get every alert too (a safeguarding lead).
    extra_recipients: list[str] = Field(default_factory=list)
    # An HTTP endpoint that gets each alert as JSON (a chat or ticketing system's webhook); empty = none.
    webhook_url: str = ""
    webhook_token: SecretStr | None = None
    timeout_secs: float = Field(default=10.0, gt=0, le=120)
    # A failed delivery is tried again after retry_secs, then twice as long each time up to max_retry_secs.
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_secs: float = Field(default=5.0, gt=0)
    max_retry_secs: float = Field(default=600.0, gt=0)


class MaterialsSettings(_Section):
    """A companion's materials (server/materials.py): the files its author attaches, and their passages in lessons."""

    # Off: no passages join the tutor's context (uploads still work).
    enabled: bool = True
    # One file at most, and all of one companion's files together.
    max_file_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    max_companion_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=4 * 1024 * 1024 * 1024)
    # A longer PDF is refused (split it): reading each page's text costs time on upload.
    max_pdf_pages: int = Field(default=300, ge=1, le=10_000)
    # The best passages for what the learner said that join the model's context on each turn; 0: none.
    passages_per_turn: int = Field(default=3, ge=0, le=10)
    # A search taking longer is given up and the tutor answers without passages (the query takes a few ms).
    search_budget_ms: int = Field(default=150, ge=1, le=5000)
    # The system message before the passages, which follow as "[1] (handout.pdf, p. 2) ...".
    prompt: str = (
        "Passages from your teacher's materials that may help with what the learner just said. Use them only "
        "if they are relevant, keep your reply short and spoken, and say which passage you used as [1], [2] and so on:"
    )


class RecapSettings(_Section):
    """Recaps written after every lesson and the memory the next lesson with the same companion starts from
    (server/recaps.py). The caps below keep that memory to about 300 tokens of the prompt (bench/memory.py)."""

    enabled: bool = True
    # A lesson where the learner said fewer utterances or words than this gets `too_short_message`, not a recap
    # (and the model is not asked).
    min_learner_utterances: int = Field(default=2, ge=0, le=1000)
    min_learner_words: int = Field(default=8, ge=0, le=100000)
    too_short_message: str = "This lesson was too short for a recap: talk a little longer next time for one."
    # The recap request: its time limit, the answer's length, and how much of a long transcript it reads (the
    # latest part).
    timeout_secs: float = Field(default=60.0, gt=0, le=600)
    max_tokens: int = Field(default=600, ge=50, le=4096)
    transcript_max_chars: int = Field(default=8000, ge=200, le=200000)
    # What the next lesson starts from: its last `memory_recaps` recaps with the companion (each clipped to
    # `recap_words` words) and at most `memory_facts` facts about the learner (each at most `fact_words` words).
    memory_recaps: int = Field(default=2, ge=0, le=10)
    memory_facts: int = Field(default=6, ge=0, le=30)
    recap_words: int = Field(default=30, ge=5, le=200)
    fact_words: int = Field(default=15, ge=3, le=60)
    # Said instead of voice.first_message when an earlier lesson with the companion has a recap; {covered} is what
    # it covered (at most `greeting_words` words), and {topic}, {subject}, {name} come from the companion.
    welcome_back_message: str = "Welcome back! Last time we covered {covered}. Today we'll keep going with {topic}."
    greeting_words: int = Field(default=20, ge=3, le=100)
    # Heads the memory in the system prompt.
    memory_intro: str = "You have taught this learner before. Build on it, and do not recite it back to them."


class Settings(BaseSettings):
    """The whole configuration. `Settings()` is the defaults alone; `load_settings` adds a file and an environment."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        # A partial table (`[plans.free]` with only `lessons`) keeps the defaults of the keys it leaves out.
        nested_model_default_partial_update=True,
    )

    # Instances, not factories: pydantic-settings merges a partial table onto the default instance's values.
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    plans: PlansSettings = PlansSettings()
    classes: ClassesSettings = ClassesSettings()
    retention: RetentionSettings = RetentionSettings()
    voice: VoiceSettings = VoiceSettings()
    vapi: VapiSettings = VapiSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    safety: SafetySettings = SafetySettings()
    alerts: AlertSettings = AlertSettings()
    materials: MaterialsSettings = MaterialsSettings()
    recaps: RecapSettings = RecapSettings()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{Path(self.server.data_dir).resolve() / 'tutor.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only load_settings reads a file and an environment, the ones it is handed: building a Settings
        # elsewhere (tests, tools) never picks up the process's TUTOR_* variables behind the caller's back.
        return (init_settings,)


def _secret_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in get_args(annotation):
            yield path
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _secret_keys(annotation, path)


# Every SecretStr field may only come from the environment: a value for it in config.toml is refused.
SECRET_KEYS = frozenset(_secret_keys(Settings))


def _env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace(".", "__")


def _key_of(env_name: str) -> str:
    return env_name[len(ENV_PREFIX) :].lower().replace("__", ".")


def _secrets_in(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[str]:
    for key, value in data.items():
        path = (*prefix, key)
        if path in SECRET_KEYS and value not in (None, ""):
            yield ".".join(path)
        elif isinstance(value, Mapping):
            yield from _secrets_in(value, path)


class _ConfigFile(TomlConfigSettingsSource):
    """config.toml, refused whole when it is not TOML or holds a secret."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            data = super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: not valid TOML: {exc}") from exc
        secret = next(_secrets_in(data), None)
        if secret is not None:
            raise ConfigError(f"{secret}: secrets are read only from the environment (set {_env_name(secret)})")
        return data


class _Environment(EnvSettingsSource):
    """TUTOR_<SECTION>__<KEY> variables from the mapping load_settings is given (os.environ by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        # pydantic-settings only looks for the sections it knows; an unknown one is named like an unknown key.
        for name in self.env_vars:
            if not name.startswith(ENV_PREFIX.lower()) or "__" not in name:
                continue
            section = name[len(ENV_PREFIX) :].split("__", 1)[0]
            if section not in self.settings_cls.model_fields:
                data.setdefault(section, {})
        return data

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            raise ConfigError(f"{field_name}: {_env_name(field_name)} is not valid JSON") from exc

    def explode_env_vars(self, field_name: str, field: FieldInfo, env_vars: Mapping[str, str | None]) -> dict[str, Any]:
        try:
            return super().explode_env_vars(field_name, field, env_vars)
        except ValueError:
            # A list or table given as a variable must be JSON; name the one variable that is not.
            for name, value in env_vars.items():
                try:
                    super().explode_env_vars(field_name, field, {name: value})
                except ValueError as exc:
                    raise ConfigError(f"{_key_of(name)}: {name.upper()} is not valid JSON") from exc
            raise


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from a TOML file (optional) and the environment; raise ConfigError naming a bad key."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("TUTOR_CONFIG") or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        # Highest priority first: the environment overrides the file, which overrides the defaults.
        sources = (
            _Environment(Settings, environ),
            *([_ConfigFile(Settings, Path(path))] if path is not None else []),
            DefaultSettingsSource(Settings),
        )
        # BaseSettings takes ready-made sources through _build_sources; mypy sees only the fields as arguments.
        return Settings(_build_sources=(sources, {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{key}: {err['msg']}") from exc
    except SettingsError as exc:
        raise ConfigError(str(exc)) from exc
