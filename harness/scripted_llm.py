"""A scripted OpenAI-compatible chat server on 127.0.0.1 that streams replies like the real API."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from harness.loopback import LoopbackServer

Replies = list[str] | Callable[[list[dict[str, Any]]], str]

MODEL_ID = "scripted-tutor"


def unused_base_url() -> str:
    """Return an OpenAI-style base URL on a loopback port that nothing listens on (the "LLM down" case)."""
    # Binding without listening keeps the port reserved only while the socket is open, so we close it and
    # rely on the kernel not handing the same ephemeral port out again within a test's lifetime.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _words(text: str) -> Iterator[str]:
    """Split text into word-sized deltas that concatenate back to the exact text."""
    first = True
    for word in text.split(" "):
        yield word if first else " " + word
        first = False


class ScriptedLLM(LoopbackServer):
    """An OpenAI-compatible `/v1/chat/completions` server answering from a script, in its own thread.

    Running its own event loop in a thread lets sync bench code and any test event loop call it alike.
    """

    def __init__(
        self,
        replies: Replies,
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        fail_with_status: int | None = None,
    ) -> None:
        """Answer each request with the next reply (cycled) or with `replies(messages)` if callable."""
        super().__init__()
        if isinstance(replies, list) and not replies:
            raise ValueError("replies must not be empty")
        self._replies = replies
        self._cycle = itertools.cycle(replies) if isinstance(replies, list) else None
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.fail_with_status = fail_with_status
        self.requests: list[dict[str, Any]] = []
        # time.monotonic() at which each request arrived, parallel to `requests` (benchmarks time turns by it).
        self.request_times: list[float] = []
        self._lock = threading.Lock()

    thread_name = "scripted-llm"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    # -- behaviour ---------------------------------------------------------------------------------

    def _next_reply(self, messages: list[dict[str, Any]]) -> str:
        with self._lock:
            if self._cycle is not None:
                return str(next(self._cycle))
        assert callable(self._replies)
        return self._replies(messages)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "tests"}],
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return self._error(400, "invalid_request_error", "body is not JSON")
        with self._lock:
            self.requests.append(body)
            self.request_times.append(arrived)
        if self.fail_with_status is not None:
            return self._error(self.fail_with_status, "server_error", "scripted failure")
        messages = body.get("messages")
        if not isinstance(messages, list):
            return self._error(400, "invalid_request_error", "'messages' is required")
        reply = self._next_reply(messages)
        model = str(body.get("model") or MODEL_ID)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            return await self._stream(request, body, reply, model, completion_id, created)
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(messages, reply),
            }
        )

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        reply: str,
        model: str,
        completion_id: str,
        created: int,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_scripted",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await response.write(f"data: {data}\n\n".encode())

        try:
            await send(chunk({"role": "assistant", "content": "", "refusal": None}, None))
            if self.first_token_delay:
                await asyncio.sleep(self.first_token_delay)
            for i, word in enumerate(_words(reply)):
                if i and self.token_delay:
                    await asyncio.sleep(self.token_delay)
                await send(chunk({"content": word}, None))
            await send(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage_chunk = chunk({}, None)
                usage_chunk["choices"] = []
                usage_chunk["usage"] = _usage(body.get("messages") or [], reply)
                await send(usage_chunk)
            await send("[DONE]")
            await response.write_eof()
        except ConnectionResetError:
            # The client hung up mid-stream (e.g. barge-in cancelled the LLM call): nothing to finish.
            pass
        return response

    @staticmethod
    def _error(status: int, kind: str, message: str) -> web.Response:
        return web.json_response(
            {"error": {"message": message, "type": kind, "param": None, "code": None}}, status=status
        )


def _usage(messages: list[Any], reply: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
