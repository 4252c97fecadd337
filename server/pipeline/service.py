"""The voice service a server process holds: shared models, the LLM client and every live lesson."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from server.errors import BadRequest, NotFound, ServiceUnavailable
from server.pipeline.compute import usable_cpus
from server.pipeline.language_model import LanguageModel, LLMStatus
from server.pipeline.models import ModelError, SharedModels, load_models
from server.pipeline.sdp import check_offer, with_ptime
from server.pipeline.session import LessonSession

if TYPE_CHECKING:
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    from server.lesson_brief import LessonBrief
    from server.lesson_recorder import RecorderFactory
    from server.pipeline.compute import CpuGate
    from server.settings import Settings

log = logging.getLogger(__name__)

# Why a learner's live lesson ends when the same learner starts another one (in another tab or window).
REPLACED = "replaced-by-new-lesson"


class VoiceService:
    """Runs live lessons over WebRTC on models loaded once and shared by all of them."""

    def __init__(self, settings: Settings, recorders: RecorderFactory, models: SharedModels | None = None) -> None:
        """Cheap: models load in start(). Pass `models` to share ones already loaded (several apps, tests).

        `recorders` gives each lesson, by id, the callbacks that record its finished utterances and its end.
        """
        self._settings = settings
        self._recorders = recorders
        self._models: SharedModels | None = models
        self._owns_models = models is None
        self.language_model = LanguageModel(settings.voice, usable_cpus(), gate=self._cpu_gate)
        self._loading: asyncio.Lock | None = None
        # lesson id -> its session; a reconnect replaces the lesson's session.
        self._sessions: dict[int, LessonSession] = {}
        # Offers being answered: they hold a slot before their session exists.
        self._starting = 0
        # One offer at a time per learner, so two at once cannot both become the learner's live lesson.
        self._learner_offers = _KeyedLocks()
        self._closing = False
        self._lag_task: asyncio.Task[None] | None = None

    @property
    def lesson_limit(self) -> int:
        """Live lessons this process takes at once (0 = no limit), for the stages it runs on this machine."""
        return self._settings.voice.lesson_limit(usable_cpus(), self.language_model.cores_per_lesson())

    @property
    def live_lessons(self) -> int:
        return sum(1 for s in self._sessions.values() if s.ended_reason is None)

    @property
    def started(self) -> bool:
        return self._models is not None

    async def shared_models(self) -> SharedModels:
        """The models every lesson shares, loaded first if nobody has: for work beside the lessons (previews)."""
        await self.start()
        assert self._models is not None
        return self._models

    async def start(self) -> None:
        """Load every model once, off the event loop (idempotent; offer() calls it if nobody did)."""
        await self.language_model.start()
        if self._models is not None:
            return
        if self._settings.voice.max_live_lessons == "auto":
            log.info(
                'voice: up to %d live lessons at once on %d cores (voice.max_live_lessons = "auto"; set a number '
                "to change it)",
                self.lesson_limit,
                usable_cpus(),
            )
        if self._loading is None:
            self._loading = asyncio.Lock()
        async with self._loading:
            if self._models is not None:
                return
            try:
                self._models = await asyncio.to_thread(load_models, self._settings.voice, usable_cpus())
            except ModelError as exc:
                log.error("voice: %s", exc)
                raise ServiceUnavailable("voice_models_unavailable", str(exc)) from exc
            if self._settings.voice.log_latency and self._lag_task is None:
                self._lag_task = asyncio.create_task(_watch_loop_lag(), name="voice-loop-lag")

    def _cpu_gate(self) -> CpuGate | None:
        return self._models.compute.gate if self._models is not None else None

    async def tutor_status(self) -> LLMStatus:
        """Whether the language model answers now (checked at start, regularly and after failures)."""
        return await self.language_model.ready()

    async def close(self) -> None:
        """End every live lesson and release the models' thread pools."""
        self._closing = True
        if self._lag_task is not None:
            self._lag_task.cancel()
        sessions = list(self._sessions.values())
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        self._sessions.clear()
        await self.language_model.close()
        if self._models is not None and self._owns_models:
            self._models.close()
        self._models = None

    async def offer(self, brief: LessonBrief, sdp: str, type: str, pc_id: str | None = None) -> dict[str, str]:
        """Answer a learner's WebRTC offer for a live lesson (its brief) and start (or renegotiate) its pipeline.

        A learner holds one live lesson at a time: an offer for another lesson takes over, and the learner's
        other live lesson ends with reason "replaced-by-new-lesson" (a forgotten tab never locks them out).
        """
        if self._closing:
            raise ServiceUnavailable("voice_closing", "The server is shutting down.")
        if type != "offer":
            raise BadRequest("invalid_sdp", f'Expected an SDP of type "offer", got "{type}".')
        check_offer(sdp)
        async with self._learner_offers.hold(brief.learner_id):
            return await self._offer(brief, sdp, type, pc_id)

    async def _offer(self, brief: LessonBrief, sdp: str, type: str, pc_id: str | None) -> dict[str, str]:
        existing = self._sessions.get(brief.lesson_id)
        if pc_id and existing is not None and existing.connection.pc_id == pc_id and not existing.finished:
            try:
                await existing.connection.renegotiate(sdp=sdp, type=type)
            except Exception as exc:
                raise BadRequest("invalid_sdp", f"The SDP offer could not be used: {exc}") from exc
            return self._answer(existing.connection)

        replaced = [
            s
            for s in self._sessions.values()
            if s.learner_id == brief.learner_id and s.lesson_id != brief.lesson_id and s.ended_reason is None
        ]
        limit = self.lesson_limit
        # The lesson's own session (a reconnect) and the learner's other lesson (replaced) free their slots.
        taken = self.live_lessons + self._starting - len(replaced)
        if existing is not None and existing.ended_reason is None:
            taken -= 1
        if limit and taken >= limit:
            raise ServiceUnavailable("voice_busy", "All voice lesson slots are busy; try again in a minute.")
        self._starting += 1
        try:
            return await self._start_session(brief, sdp, type, existing, replaced)
        finally:
            self._starting -= 1

    async def _start_session(
        self,
        brief: LessonBrief,
        sdp: str,
        type: str,
        existing: LessonSession | None,
        replaced: list[LessonSession],
    ) -> dict[str, str]:
        from pipecat.transports.smallwebrtc.connection import IceServer, SmallWebRTCConnection

        ice = [
            IceServer(urls=s.urls, username=s.username or "", credential=s.credential or "")
            for s in self._settings.voice.ice_servers
        ]
        started = time.perf_counter()
        connection = SmallWebRTCConnection(
            ice_servers=ice, connection_timeout_secs=max(1, math.ceil(self._settings.voice.connect_timeout_secs))
        )
        try:
            await connection.initialize(sdp=sdp, type=type)
        except Exception as exc:
            await _close_quietly(connection)
            raise BadRequest("invalid_sdp", f"The SDP offer could not be used: {exc}") from exc
        answered = time.perf_counter()

        try:
            await self.start()
        except Exception:
            await _close_quietly(connection)
            raise
        assert self._models is not None

        for other in replaced:
            # Its page says the lesson continued in another window; its end is stored before this one starts.
            log.info("voice: lesson %s: the learner started lesson %s", other.lesson_id, brief.lesson_id)
            await other.end(REPLACED)
        if existing is not None:
            # The lesson connected again (a reload, another window): the old pipeline goes, the lesson goes on,
            # and a page still showing the old connection says where it went.
            self._sessions.pop(brief.lesson_id, None)
            await existing.end(REPLACED, record=False)

        session = LessonSession(
            brief=brief,
            connection=connection,
            models=self._models,
            settings=self._settings.voice,
            language_model=self.language_model,
            recorder=self._recorders(brief.lesson_id),
            on_finished=self._forget,
        )
        self._sessions[brief.lesson_id] = session
        try:
            await session.start()
        except Exception as exc:
            self._sessions.pop(brief.lesson_id, None)
            await _close_quietly(connection)
            log.exception("voice: lesson %s: cannot start the pipeline", brief.lesson_id)
            raise ServiceUnavailable("voice_pipeline_failed", f"The voice pipeline could not start: {exc}") from exc
        log.info(
            "voice: lesson %s connecting (answer %.3f s, pipeline %.3f s, %d live)",
            brief.lesson_id,
            answered - started,
            time.perf_counter() - answered,
            self.live_lessons,
        )
        return self._answer(connection)

    async def add_ice_candidates(self, lesson_id: int, pc_id: str, candidates: list[dict[str, Any]]) -> None:
        """Add trickled ICE candidates ({candidate, sdpMid, sdpMLineIndex}) to a lesson's peer connection."""
        from aiortc.sdp import candidate_from_sdp

        session = self._sessions.get(lesson_id)
        if session is None or session.connection.pc_id != pc_id or session.finished:
            raise NotFound("peer_connection_not_found", "No live connection with that pc_id for this lesson.")
        for item in candidates:
            text = (item.get("candidate") or "").strip()
            if not text:
                # An empty candidate is the end-of-candidates marker; aiortc takes None for it.
                await session.connection.add_ice_candidate(None)
                continue
            try:
                candidate = candidate_from_sdp(text.removeprefix("candidate:"))
            except Exception as exc:
                raise BadRequest("invalid_candidate", f"Not an ICE candidate: {text!r}") from exc
            candidate.sdpMid = item.get("sdpMid")
            candidate.sdpMLineIndex = item.get("sdpMLineIndex")
            await session.connection.add_ice_candidate(candidate)

    async def end(self, lesson_id: int, reason: str) -> None:
        """End a live lesson's pipeline (hang-up); the lesson's end is stored before this returns."""
        session = self._sessions.get(lesson_id)
        if session is None:
            return
        await session.end(reason)

    def _answer(self, connection: SmallWebRTCConnection) -> dict[str, str]:
        answer = connection.get_answer()
        if answer is None:
            raise BadRequest("invalid_sdp", "The SDP offer produced no answer.")
        sdp = with_ptime(answer["sdp"], self._settings.voice.packet_ms)
        return {"sdp": sdp, "type": answer["type"], "pc_id": answer["pc_id"]}

    async def _forget(self, session: LessonSession) -> None:
        if self._sessions.get(session.lesson_id) is session:
            del self._sessions[session.lesson_id]


class _KeyedLocks:
    """One asyncio.Lock per key, kept only while someone holds it or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


LAG_TICK_SECS = 0.05
LAG_REPORT_SECS = 10.0


async def _watch_loop_lag() -> None:
    """With voice.log_latency: how late the event loop wakes a 50 ms sleep, logged every 10 s if it reached 5 ms.

    Every lesson's audio passes through this one loop; when it is late, every reply is late by as much.
    """
    lags: list[float] = []
    report_at = time.monotonic() + LAG_REPORT_SECS
    while True:
        before = time.monotonic()
        await asyncio.sleep(LAG_TICK_SECS)
        now = time.monotonic()
        lags.append(max(0.0, now - before - LAG_TICK_SECS))
        if now >= report_at:
            lags.sort()
            if lags[-1] > 0.005:
                p50, p95 = lags[len(lags) // 2], lags[int(len(lags) * 0.95)]
                log.info(
                    "voice: event loop lag p50 %.1f ms, p95 %.1f ms, max %.1f ms",
                    p50 * 1000,
                    p95 * 1000,
                    lags[-1] * 1000,
                )
            lags.clear()
            report_at = now + LAG_REPORT_SECS


async def _close_quietly(connection: SmallWebRTCConnection) -> None:
    try:
        await connection.pc.close()
    except Exception as exc:
        log.debug("voice: closing a failed peer connection: %s", exc)
