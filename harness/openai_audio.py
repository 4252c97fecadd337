"""An OpenAI-compatible audio server on 127.0.0.1 (transcriptions and speech) backed by the real local models."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import wave
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from harness.loopback import LoopbackServer
from harness.speech import synthesize, whisper_model_dir

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

# What OpenAI's /v1/audio/speech returns for response_format "pcm": 24 kHz, 16-bit, mono.
SPEECH_SAMPLE_RATE = 24000
TRANSCRIBE_FORMATS = {"json", "text", "verbose_json"}
SPEECH_FORMATS = {"pcm", "wav"}


class OpenAIAudioServer(LoopbackServer):
    """`POST /v1/audio/transcriptions` on faster-whisper tiny.en and `POST /v1/audio/speech` on the piper voice,
    shaped like OpenAI's API, in its own thread with its own event loop (like ScriptedLLM).

    Every request is logged in `requests` (endpoint, form or JSON fields, the Authorization header, and what was
    heard or said). `fail_with_status` answers every request with that HTTP error; `stall` never answers
    (until stop()), the way a hung GPU server behaves.
    """

    def __init__(self, *, api_key: str | None = None, fail_with_status: int | None = None, stall: bool = False):
        super().__init__()
        self.api_key = api_key
        self.fail_with_status = fail_with_status
        self.stall = stall
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # The models are used from the executor one call at a time: piper's espeak-ng is process-global state.
        self._model_lock = threading.Lock()
        self._whisper: WhisperModel | None = None
        self._release: asyncio.Event | None = None

    def requests_to(self, endpoint: str) -> list[dict[str, Any]]:
        """The logged requests to "transcriptions" or "speech", in arrival order."""
        with self._lock:
            return [r for r in self.requests if r["endpoint"] == endpoint]

    thread_name = "openai-audio"
    max_body = 25 * 1024 * 1024  # OpenAI's upload limit

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)

    async def on_start(self) -> None:
        self._release = asyncio.Event()

    async def on_stop(self) -> None:
        if self._release is not None:  # let stalled requests finish
            self._release.set()

    # -- endpoints ---------------------------------------------------------------------------------

    async def _refuse(self, request: web.Request, entry: dict[str, Any]) -> web.Response | None:
        """The knobs and the key check shared by both endpoints; None means go ahead."""
        if self.stall:
            assert self._release is not None
            await self._release.wait()
            return _error(503, "server_error", "the server is shutting down")
        if self.fail_with_status is not None:
            return _error(self.fail_with_status, "server_error", "scripted failure")
        if self.api_key is not None and entry["authorization"] != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Incorrect API key provided.")
        return None

    def _log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    async def _transcriptions(self, request: web.Request) -> web.Response:
        entry: dict[str, Any] = {
            "endpoint": "transcriptions",
            "arrived": time.monotonic(),
            "authorization": request.headers.get("Authorization"),
        }
        self._log(entry)
        if not request.content_type.startswith("multipart/"):
            return _error(400, "invalid_request_error", "expected multipart/form-data")
        form = await request.post()
        upload = form.get("file")
        entry.update({k: str(v) for k, v in form.items() if k != "file"})
        refused = await self._refuse(request, entry)
        if refused is not None:
            return refused
        if not isinstance(upload, web.FileField):
            return _error(400, "invalid_request_error", "'file' is required")
        if not form.get("model"):
            return _error(400, "invalid_request_error", "'model' is required")
        response_format = str(form.get("response_format") or "json")
        if response_format not in TRANSCRIBE_FORMATS:
            return _error(400, "invalid_request_error", f"response_format {response_format!r} is not supported")
        audio = upload.file.read()
        language = str(form.get("language") or "en")
        try:
            text, segments, duration = await asyncio.get_running_loop().run_in_executor(
                None, self._transcribe, audio, language
            )
        except Exception as exc:  # undecodable audio is the client's fault, as with OpenAI
            return _error(400, "invalid_request_error", f"could not decode the audio file: {exc}")
        entry.update({"text": text, "audio_secs": duration})
        if response_format == "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        if response_format == "verbose_json":
            return web.json_response(
                {"task": "transcribe", "language": language, "duration": duration, "text": text, "segments": segments}
            )
        return web.json_response({"text": text})

    async def _speech(self, request: web.Request) -> web.Response:
        entry: dict[str, Any] = {
            "endpoint": "speech",
            "arrived": time.monotonic(),
            "authorization": request.headers.get("Authorization"),
        }
        self._log(entry)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "body must be a JSON object")
        entry.update(body)
        refused = await self._refuse(request, entry)
        if refused is not None:
            return refused
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "invalid_request_error", "'input' is required")
        if not body.get("model") or not body.get("voice"):
            return _error(400, "invalid_request_error", "'model' and 'voice' are required")
        response_format = str(body.get("response_format") or "mp3")
        if response_format not in SPEECH_FORMATS:
            return _error(400, "invalid_request_error", f"response_format {response_format!r} is not supported here")
        speed = body.get("speed", 1.0)
        if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            return _error(400, "invalid_request_error", "'speed' must be between 0.25 and 4.0")
        pcm = await asyncio.get_running_loop().run_in_executor(None, self._synthesize, text, float(speed))
        entry["audio_secs"] = len(pcm) / SPEECH_SAMPLE_RATE
        if response_format == "wav":
            out = io.BytesIO()
            with wave.open(out, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(SPEECH_SAMPLE_RATE)
                wav.writeframes(pcm.tobytes())
            return web.Response(body=out.getvalue(), content_type="audio/wav")
        return web.Response(body=pcm.tobytes(), content_type="audio/pcm")

    # -- the models (in executor threads) ----------------------------------------------------------

    def _transcribe(self, audio: bytes, language: str) -> tuple[str, list[dict[str, Any]], float]:
        from faster_whisper import WhisperModel

        with self._model_lock:
            if self._whisper is None:
                self._whisper = WhisperModel(
                    str(whisper_model_dir()), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
                )
            # faster-whisper decodes any container (WAV, MP3, ...) itself, as a Whisper server would.
            found, info = self._whisper.transcribe(
                io.BytesIO(audio), language=language, beam_size=1, chunk_length=10, condition_on_previous_text=False
            )
            segments = [
                {"id": i, "start": s.start, "end": s.end, "text": s.text, "no_speech_prob": s.no_speech_prob}
                for i, s in enumerate(found)
            ]
        text = " ".join(str(s["text"]).strip() for s in segments).strip()
        return text, segments, float(info.duration)

    def _synthesize(self, text: str, speed: float) -> np.ndarray:
        with self._model_lock:
            return synthesize(
                text,
                sample_rate=SPEECH_SAMPLE_RATE,
                leading_silence=0.0,
                trailing_silence=0.0,
                length_scale=1.0 / speed,
            )


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": None}}, status=status)
