"""The process's language model: which provider answers lessons, its one client, and whether it answers now."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import openai
from openai import AsyncOpenAI

from server.pipeline.embedded_llm import (
    BETTER_MODEL_HINT,
    BUNDLED_MODEL_NAME,
    DEMO_NOTICE,
    EmbeddedModelError,
    EmbeddedRuntime,
    bundled_model_path,
    resolve_model_path,
)
from server.pipeline.llm_client import llm_client
from server.settings import BUNDLED_LLM_CORES_PER_LESSON

if TYPE_CHECKING:
    from server.pipeline.compute import CpuGate
    from server.settings import VoiceSettings

log = logging.getLogger(__name__)

# A health probe waits at most this long: it runs while learners wait for a lesson to start.
PROBE_TIMEOUT_SECS = 3.0
# Failures reported by lessons re-check at most this often.
RECHECK_AFTER_FAILURE_SECS = 2.0
# Models at least this large run as a single copy by default (a 7B Q4 is ~4.5 GB a copy).
LARGE_MODEL_BYTES = 1 << 30

Provider = Literal["openai", "embedded"]


@dataclass(frozen=True)
class LLMStatus:
    """What the server knows of its language model; `detail` is for operators (log, doctor, administrators)."""

    available: bool
    provider: Provider
    model: str
    demo: bool
    detail: str
    checked_at: float

    @property
    def learner_notice(self) -> str:
        """What a learner is told about the model before a lesson ("" for a real model)."""
        return DEMO_NOTICE if self.demo else ""


def operator_hint(voice: VoiceSettings) -> str:
    """What an operator does when no language model answers."""
    llm = voice.llm
    return (
        f"start an OpenAI-compatible server at {llm.base_url} serving {llm.model!r} (e.g. `ollama serve`, "
        f"`python -m llama_cpp.server --model FILE.gguf`), or set voice.llm.base_url / voice.llm.model "
        '(TUTOR_VOICE__LLM__BASE_URL / TUTOR_VOICE__LLM__MODEL), or voice.llm.provider = "embedded"; '
        + BETTER_MODEL_HINT
    )


class _SharedRuntimes:
    """Embedded runtimes by (file, shape), loaded once per process and shared by every app that asks (tests and
    benchmarks run many apps in one process; a server runs one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: dict[tuple[object, ...], tuple[EmbeddedRuntime, int]] = {}

    def get(self, key: tuple[object, ...], build: Callable[[], EmbeddedRuntime]) -> EmbeddedRuntime:
        """The runtime for `key`, built (blocking) if no app holds one; release() it when done."""
        with self._lock:
            found = self._runtimes.get(key)
            runtime = found[0] if found is not None else build()
            self._runtimes[key] = (runtime, (found[1] if found is not None else 0) + 1)
            return runtime

    def release(self, runtime: EmbeddedRuntime) -> None:
        """One app less holds it; it stays loaded for the next (a process loads each model once)."""
        with self._lock:
            for key, (held, count) in list(self._runtimes.items()):
                if held is runtime:
                    self._runtimes[key] = (held, max(0, count - 1))
                    return

    def close_all(self) -> None:
        """Free every model before the interpreter tears down the modules llama.cpp's finalizers need."""
        with self._lock:
            runtimes = [runtime for runtime, _ in self._runtimes.values()]
            self._runtimes.clear()
        for runtime in runtimes:
            runtime.close()


_RUNTIMES = _SharedRuntimes()
atexit.register(_RUNTIMES.close_all)


class LanguageModel:
    """Resolves the provider at start, holds the client every lesson shares, and keeps its status current.

    The status is checked at start, every `voice.llm.health_interval_secs`, and again soon after a lesson
    reports a failed reply; a lesson is refused while it is unavailable (before it counts against the plan).
    """

    def __init__(self, voice: VoiceSettings, cpus: int, gate: Callable[[], CpuGate | None] = lambda: None) -> None:
        """`gate()`: the CPU gate of the speech models the lessons run on, or None before they load."""
        self._voice = voice
        self._gate = gate
        self._cpus = max(1, cpus)
        self._client: AsyncOpenAI | None = None
        self._runtime: EmbeddedRuntime | None = None
        self._status: LLMStatus | None = None
        self._starting: asyncio.Lock | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._warming: set[asyncio.Task[None]] = set()
        # A custom GGUF's size against the bundled model's (cores_per_lesson).
        self._size_scale: float | None = None

    @property
    def status(self) -> LLMStatus | None:
        return self._status

    @property
    def runtime(self) -> EmbeddedRuntime | None:
        return self._runtime

    @property
    def client(self) -> AsyncOpenAI:
        if self._client is None:
            self._client = llm_client(self._voice.llm)
        return self._client

    @property
    def model_name(self) -> str:
        """The model name each request carries."""
        return self._runtime.name if self._runtime is not None else self._voice.llm.model

    def cores_per_lesson(self) -> float:
        """What the model costs this machine's CPU per live lesson (settings.lesson_limit): nothing for an
        endpoint or a model on a GPU, the measured cost of the bundled model scaled by file size otherwise."""
        runtime = self._runtime
        if runtime is None or runtime.gpu_layers != 0:
            return 0.0
        if runtime.demo:
            return BUNDLED_LLM_CORES_PER_LESSON
        if self._size_scale is None:  # asked on every offer: the files are looked at once
            bundled = bundled_model_path()
            self._size_scale = runtime.path.stat().st_size / bundled.stat().st_size if bundled is not None else 1.0
        return BUNDLED_LLM_CORES_PER_LESSON * self._size_scale

    async def start(self) -> LLMStatus:
        """Choose the provider and check it once (idempotent); starts the regular checks."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._status is None:
                self._status = await self._resolve()
                self._log(self._status)
                if self._monitor is None:
                    self._wake = asyncio.Event()
                    self._monitor = asyncio.create_task(self._watch(), name="llm-health")
        return self._status

    async def ready(self) -> LLMStatus:
        """The current status, checking first if nothing has been checked yet."""
        return self._status if self._status is not None else await self.start()

    def warm(self, system_prompt: str, greeting: str) -> None:
        """A lesson is starting: let the embedded model read its prompt while the greeting plays (no-op for an
        endpoint). Runs in the background; a failure only costs the first answer its head start."""
        runtime = self._runtime
        if runtime is None:
            return
        messages = [{"role": "system", "content": system_prompt}, {"role": "assistant", "content": greeting}]
        task = asyncio.create_task(runtime.warm(messages, self._gate()), name="llm-warm")
        self._warming.add(task)
        task.add_done_callback(self._warmed)

    def _warmed(self, task: asyncio.Task[None]) -> None:
        self._warming.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("voice: reading a lesson's prompt ahead failed: %s", task.exception())

    async def write(
        self,
        purpose: str,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        timeout_secs: float,
        temperature: float = 0.2,
        schema: dict[str, Any] | None = None,
    ) -> str | None:
        """A whole answer for work that no learner waits for (`purpose`: "a recap", "a quiz's judgement"), or
        None when no model can give one now (logged). An endpoint is asked like any client would, within
        `timeout_secs`; the embedded model writes it at the lowest priority (EmbeddedRuntime.write), held to
        `schema` (a JSON schema) when given, unless voice.llm.background_work is off."""
        status = self._status or await self.ready()  # loaded once per process, by whoever asks first
        if not status.available:
            log.info("voice: no language model answers now to write %s", purpose)
            return None
        runtime = self._runtime
        if status.provider == "embedded":
            if runtime is None or not self._voice.llm.background_work:
                log.info("voice: %s is not written by the embedded model (voice.llm.background_work)", purpose)
                return None
            return await runtime.write(
                messages, max_tokens=max_tokens, temperature=temperature, schema=schema, gate=self._gate()
            )
        client = self.client.with_options(timeout=timeout_secs, max_retries=0)
        try:
            response = await client.chat.completions.create(
                model=self.model_name,
                messages=messages,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=max_tokens,
            )
        except openai.APIError as exc:
            log.warning("voice: the language model failed to write %s (%s: %s)", purpose, type(exc).__name__, exc)
            return None
        return (response.choices[0].message.content if response.choices else None) or ""

    def prompt_chars(self, max_tokens: int) -> int | None:
        """About how many characters of prompt fit beside an answer of `max_tokens` (None: the endpoint's
        own limit, not known here). Counted at 3 characters a token, which English prose exceeds."""
        runtime = self._runtime
        if runtime is None:
            return None
        return max(0, runtime.context_size - min(max_tokens, runtime.context_size // 2) - 64) * 3

    def report_failure(self) -> None:
        """A lesson's reply failed: check again soon, so the next lesson is refused if nothing answers."""
        if self._wake is not None:
            self._wake.set()

    async def _resolve(self) -> LLMStatus:
        llm = self._voice.llm
        if llm.provider in ("auto", "openai"):
            status = await self._probe()
            if status.available or llm.provider == "openai":
                return status
            log.info("voice: nothing answered at %s (%s); using the embedded model", llm.base_url, status.detail)
            if self._client is not None:
                await self._client.close()
                self._client = None
        return await self._load_embedded()

    async def _probe(self, *, generate: bool = False) -> LLMStatus:
        """Ask the endpoint for its models (cheap: nothing is generated), or with `generate` (after a failed
        reply, or where the endpoint has no model list) for a one-token reply."""
        llm = self._voice.llm
        client = self.client.with_options(timeout=PROBE_TIMEOUT_SECS, max_retries=0)
        started = time.monotonic()
        try:
            if not generate:
                try:
                    await client.models.list()
                except openai.NotFoundError:
                    generate = True
            if generate:
                await client.chat.completions.create(
                    model=llm.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
                )
        except openai.APIConnectionError:
            return self._made(False, "openai", False, f"nothing answers at {llm.base_url}")
        except openai.AuthenticationError:
            return self._made(False, "openai", False, f"{llm.base_url} refused the API key (TUTOR_VOICE__LLM__API_KEY)")
        except openai.NotFoundError:
            return self._made(False, "openai", False, f"{llm.base_url} does not serve model {llm.model!r}")
        except openai.APIError as exc:
            return self._made(False, "openai", False, f"{llm.base_url} answered with an error: {exc}")
        took = time.monotonic() - started
        return self._made(True, "openai", False, f"{llm.model} at {llm.base_url} (answered in {took * 1000:.0f} ms)")

    async def _load_embedded(self) -> LLMStatus:
        voice = self._voice
        llm = voice.llm
        try:
            path, demo = resolve_model_path(llm, voice.models_dir)
        except EmbeddedModelError as exc:
            return self._made(False, "embedded", False, str(exc))
        instances = llm.instances or (self._cpus if path.stat().st_size < LARGE_MODEL_BYTES else 1)
        name = BUNDLED_MODEL_NAME if demo else path.stem
        batch_threads = llm.batch_threads or self._cpus
        key = (str(path), llm.context_size, llm.threads, batch_threads, llm.gpu_layers, instances)

        def build() -> EmbeddedRuntime:
            runtime = EmbeddedRuntime(
                path,
                demo=demo,
                name=name,
                context_size=llm.context_size,
                threads=llm.threads,
                gpu_layers=llm.gpu_layers,
                instances=instances,
                batch_threads=batch_threads,
            )
            runtime.load()
            return runtime

        try:
            self._runtime = await asyncio.to_thread(_RUNTIMES.get, key, build)
        except EmbeddedModelError as exc:
            return self._made(False, "embedded", demo, str(exc))
        self._client = llm_client(llm, embedded=self._runtime, gate=self._gate)
        runtime = self._runtime
        detail = (
            f"embedded {name} ({Path(path).name}, {runtime.instances} cop{'y' if runtime.instances == 1 else 'ies'}, "
            f"{llm.threads} thread{'s' if llm.threads > 1 else ''} each, loaded in {runtime.load_secs:.2f} s)"
        )
        if demo:
            detail += f": the bundled demonstration model, whose answers are often wrong; {BETTER_MODEL_HINT}"
        return self._made(True, "embedded", demo, detail)

    def _made(self, available: bool, provider: Provider, demo: bool, detail: str) -> LLMStatus:
        model = self._runtime.name if provider == "embedded" and self._runtime is not None else self._voice.llm.model
        return LLMStatus(available, provider, model, demo, detail, time.monotonic())

    def _log(self, status: LLMStatus) -> None:
        if status.available:
            (log.warning if status.demo else log.info)("voice: language model: %s", status.detail)
        else:
            log.error(
                "voice: no language model answers (%s): lessons are refused until one does; %s",
                status.detail,
                operator_hint(self._voice),
            )

    async def _watch(self) -> None:
        assert self._wake is not None
        while True:
            failed = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._voice.llm.health_interval_secs)
                failed = True
                await asyncio.sleep(RECHECK_AFTER_FAILURE_SECS)
            self._wake.clear()
            await self.check(generate=failed)

    async def check(self, *, generate: bool = False) -> LLMStatus:
        """Check the model now (with `generate`, by a one-token reply) and log a change."""
        previous = self._status
        if self._runtime is not None:
            status = self._made(True, "embedded", self._runtime.demo, previous.detail if previous else "loaded")
        else:
            status = await self._probe(generate=generate)
        self._status = status
        if previous is None or previous.available != status.available:
            self._log(status)
        return status

    async def close(self) -> None:
        for task in (self._monitor, *self._warming):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._monitor = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runtime is not None:
            _RUNTIMES.release(self._runtime)
            self._runtime = None
