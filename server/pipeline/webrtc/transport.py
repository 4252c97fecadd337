"""pipecat's SmallWebRTC transport with this package's jitter buffer, tutor track and learner audio read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from pipecat.frames.frames import InputAudioRawFrame
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCCallbacks, SmallWebRTCClient, SmallWebRTCTransport

from server.pipeline.webrtc.jitter import receive_audio_as_it_arrives
from server.pipeline.webrtc.learner_audio import INPUT_FRAME_MS, READ_TIMEOUT_SECS, LearnerAudio, LearnerAudioFrame
from server.pipeline.webrtc.tutor_track import QuietAudioTrack

log = logging.getLogger(__name__)


class LessonWebRTCClient(SmallWebRTCClient):
    """pipecat's SmallWebRTC client with the cheaper input read, the quiet output track and a set jitter depth."""

    def __init__(
        self,
        webrtc_connection: SmallWebRTCConnection,
        callbacks: SmallWebRTCCallbacks,
        input_jitter_ms: int,
        packet_ms: int = 20,
    ) -> None:
        super().__init__(webrtc_connection, callbacks)
        self._input_jitter_ms = input_jitter_ms
        self._packet_ms = packet_ms
        self._input_frame_bytes = 0  # set once the pipeline's input rate is known
        self._learner_audio: LearnerAudio | None = None

    async def _handle_client_connected(self) -> None:
        """As pipecat's, with the quiet output track; lessons send no video, so none is set up."""
        if not self._params:
            return  # the pipeline is not set up yet; pipecat calls this again once it is
        self._set_input_jitter()
        connection = self._webrtc_connection
        self._audio_input_track = connection.audio_input_track()
        self._video_input_track = connection.video_input_track()
        self._screen_video_track = connection.screen_video_input_track()
        if self._params.audio_out_enabled:
            self._audio_output_track = QuietAudioTrack(sample_rate=self._out_sample_rate, packet_ms=self._packet_ms)
            connection.replace_audio_track(self._audio_output_track)
        await self._callbacks.on_client_connected(connection)

    def _set_input_jitter(self) -> None:
        """Replace aiortc's audio jitter buffer (4 packets, and one more held for the next) with one that
        passes packets on as they come, and decode the learner's audio on the event loop instead of aiortc's
        decoder thread."""
        for transceiver in self._webrtc_connection.pc.getTransceivers():
            if transceiver.kind == "audio" and transceiver.receiver is not None:
                receive_audio_as_it_arrives(transceiver.receiver, self._input_jitter_ms)

    async def read_audio_frame(self) -> AsyncGenerator[InputAudioRawFrame, None]:
        """The learner's audio as 16-bit mono PCM at the pipeline's input rate, 40 ms or more a frame.

        Lessons always take mono input (TransportParams' default of one channel), which is what this yields.
        Packets shorter than INPUT_FRAME_MS are joined into one pipeline frame.
        """
        pending = bytearray()
        while True:
            track = self._audio_input_track
            if track is None:
                await asyncio.sleep(0.01)
                continue
            try:
                async with asyncio.timeout(READ_TIMEOUT_SECS):
                    frame = await track.recv()
            except TimeoutError:
                continue  # nothing for a while (muted, reconnecting): look at the track again
            except MediaStreamError:
                log.info("voice: the learner's audio track ended")
                self._audio_input_track = None
                continue
            if not isinstance(frame, AudioFrame):
                await asyncio.sleep(0.01)
                continue
            if self._learner_audio is None:
                self._learner_audio = LearnerAudio(self._in_sample_rate, self._audio_in_resampler)
                self._input_frame_bytes = self._in_sample_rate * INPUT_FRAME_MS // 1000 * 2
            pending += self._learner_audio.convert(frame)
            if len(pending) >= self._input_frame_bytes:
                audio = LearnerAudioFrame(audio=bytes(pending), sample_rate=self._in_sample_rate, num_channels=1)
                audio.pts = frame.pts
                pending.clear()
                yield audio


class LessonTransport(SmallWebRTCTransport):
    """SmallWebRTCTransport over a LessonWebRTCClient; everything else (events, input/output) as pipecat has it."""

    def __init__(
        self,
        webrtc_connection: SmallWebRTCConnection,
        params: TransportParams,
        input_jitter_ms: int,
        packet_ms: int = 20,
    ) -> None:
        # SmallWebRTCTransport.__init__ builds its own client, which registers handlers on the connection that
        # cannot be taken back; so this repeats its few lines with our client instead.
        BaseTransport.__init__(self)
        self._params = params
        self._callbacks = SmallWebRTCCallbacks(
            on_app_message=self._on_app_message,
            on_client_connected=self._on_client_connected,
            on_client_disconnected=self._on_client_disconnected,
            on_track_status=self._on_track_status,
        )
        self._client = LessonWebRTCClient(webrtc_connection, self._callbacks, input_jitter_ms, packet_ms)
        self._input = None
        self._output = None
        self._register_event_handler("on_app_message")
        self._register_event_handler("on_client_connected")
        self._register_event_handler("on_client_disconnected")
