"""THE list of private pipecat and aiortc members this package reads, sets, overrides or replaces.

Neither library promises anything about these, so each is named here once with what we do with it, and
tests/pipeline/test_webrtc_patches.py checks every one against the installed versions (that it exists, is a
method or an attribute as listed, and takes the parameters we use) and that the package touches no private
upstream member missing from this list. After upgrading pipecat or aiortc, that test says what moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiortc.rtcrtpreceiver import RemoteStreamTrack, RTCRtpReceiver
from pipecat.services.tts_service import TTSService
from pipecat.transports.smallwebrtc.transport import RawAudioTrack, SmallWebRTCClient, SmallWebRTCTransport
from pipecat.utils.base_object import BaseObject
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

Kind = Literal["method", "attribute"]


@dataclass(frozen=True)
class PrivateMember:
    """One private member of an upstream class that our code depends on."""

    # The class the member belongs to (for `_data`, the class whose code sets it on each packet).
    owner: type
    # As our code spells it: a name-mangled one (`__x` in the owner's source) in its mangled form.
    name: str
    kind: Kind
    # What we do with it, and where.
    use: str
    # For a method: its parameters after `self`, as we call or override it, and whether it is a coroutine.
    params: tuple[str, ...] = ()
    is_async: bool = False


PRIVATE_MEMBERS: tuple[PrivateMember, ...] = (
    # -- the tutor's voice (pipeline/tts.py: SharedPiperTTSService, QuickFirstWords) ------------------------------
    PrivateMember(TTSService, "_text_aggregator", "attribute", "replaced: a reply's first clause goes early"),
    PrivateMember(SimpleTextAggregator, "_text", "attribute", "read and cut: the unfinished first sentence"),
    # -- the tutor's track (tutor_track.QuietAudioTrack, a RawAudioTrack) ------------------------------------
    PrivateMember(RawAudioTrack, "_samples_per_10ms", "attribute", "scaled to one packet's samples"),
    PrivateMember(RawAudioTrack, "_bytes_per_10ms", "attribute", "scaled to one packet's bytes"),
    PrivateMember(RawAudioTrack, "_chunk_queue", "attribute", "read: queued (audio, future) pairs"),
    PrivateMember(RawAudioTrack, "_sample_rate", "attribute", "read: the track's rate"),
    PrivateMember(RawAudioTrack, "_start", "attribute", "pacing clock, restarted after a quiet gap"),
    PrivateMember(RawAudioTrack, "_timestamp", "attribute", "RTP timestamp, advanced over a quiet gap"),
    # -- the client (transport.LessonWebRTCClient, a SmallWebRTCClient) ---------------------------------------
    PrivateMember(
        SmallWebRTCClient,
        "_handle_client_connected",
        "method",
        "overridden: sets up the quiet output track and our jitter buffer",
        is_async=True,
    ),
    PrivateMember(SmallWebRTCClient, "_params", "attribute", "read: None until the pipeline is set up"),
    PrivateMember(SmallWebRTCClient, "_webrtc_connection", "attribute", "read: the peer connection"),
    PrivateMember(SmallWebRTCClient, "_callbacks", "attribute", "read: on_client_connected is called"),
    PrivateMember(SmallWebRTCClient, "_audio_input_track", "attribute", "set on connect, read per frame"),
    PrivateMember(SmallWebRTCClient, "_video_input_track", "attribute", "set on connect, as pipecat does"),
    PrivateMember(SmallWebRTCClient, "_screen_video_track", "attribute", "set on connect, as pipecat does"),
    PrivateMember(SmallWebRTCClient, "_audio_output_track", "attribute", "set to the quiet tutor track"),
    PrivateMember(SmallWebRTCClient, "_in_sample_rate", "attribute", "read: the pipeline's input rate"),
    PrivateMember(SmallWebRTCClient, "_out_sample_rate", "attribute", "read: the tutor track's rate"),
    PrivateMember(SmallWebRTCClient, "_audio_in_resampler", "attribute", "read: fallback for non-Opus audio"),
    # -- the transport (transport.LessonTransport repeats SmallWebRTCTransport.__init__ with our client) -------
    PrivateMember(SmallWebRTCTransport, "_params", "attribute", "set in our __init__"),
    PrivateMember(SmallWebRTCTransport, "_callbacks", "attribute", "set in our __init__"),
    PrivateMember(SmallWebRTCTransport, "_client", "attribute", "set to our client in our __init__"),
    PrivateMember(SmallWebRTCTransport, "_input", "attribute", "set in our __init__"),
    PrivateMember(SmallWebRTCTransport, "_output", "attribute", "set in our __init__"),
    PrivateMember(
        SmallWebRTCTransport, "_on_app_message", "method", "passed as a callback", ("message", "sender"), True
    ),
    PrivateMember(
        SmallWebRTCTransport, "_on_client_connected", "method", "passed as a callback", ("webrtc_connection",), True
    ),
    PrivateMember(
        SmallWebRTCTransport,
        "_on_client_disconnected",
        "method",
        "passed as a callback",
        ("webrtc_connection",),
        True,
    ),
    PrivateMember(
        SmallWebRTCTransport, "_on_track_status", "method", "passed as a callback", ("source", "enabled"), True
    ),
    PrivateMember(
        BaseObject, "_register_event_handler", "method", "the transport's three events", ("event_name", "sync")
    ),
    # -- the learner's receiver (jitter.receive_audio_as_it_arrives, on aiortc's RTCRtpReceiver) --------------
    PrivateMember(
        RTCRtpReceiver, "_RTCRtpReceiver__jitter_buffer", "attribute", "replaced by jitter.AudioJitterBuffer"
    ),
    PrivateMember(
        RTCRtpReceiver, "_RTCRtpReceiver__decoder_queue", "attribute", "replaced by jitter.InlineAudioDecoding"
    ),
    PrivateMember(RTCRtpReceiver, "_track", "attribute", "read: the remote track decoded frames go to"),
    PrivateMember(RemoteStreamTrack, "_queue", "attribute", "decoded frames are put on it directly"),
    PrivateMember(RTCRtpReceiver, "_data", "attribute", "each RtpPacket's depayloaded bytes, read by the buffer"),
)
