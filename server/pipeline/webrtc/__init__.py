"""pipecat's SmallWebRTC transport, made cheaper per lesson: the audio path every lesson pays for each packet.

Profiling 4 idle lessons showed the server's event loop ~90% busy, and most of it in the per-packet audio path
of pipecat's SmallWebRTC client and aiortc, not in the models. The changes, all on the wire side:

- **The tutor sends no packets while silent.** pipecat's output track hands aiortc 10 ms of silence at a time
  whenever the tutor is quiet, each one Opus-encoded, SRTP-protected and sent, and decoded again by the
  learner's browser. Here the track goes quiet after a short tail, the way Opus DTX does: RTP sequence numbers
  stay contiguous and the timestamps jump over the gap, which every WebRTC receiver plays as silence.
- **The learner's audio is read without a task per frame or a filter graph.** pipecat wraps every `recv()` in
  `wait_for` (a new task each 20 ms) and converts aiortc's 48 kHz stereo with PyAV's `AudioResampler` (a
  filter graph per call). Here it is one `asyncio.timeout` and a numpy downmix with a streaming soxr resampler.
- **The tutor's audio is Opus-encoded in the track** (`QuietAudioTrack.recv`), mono at the pipeline's rate,
  and aiortc sends the finished packets. Left to aiortc, each 20 ms frame was resampled to 48 kHz stereo,
  encoded at 96 kbit/s on a worker thread (a round trip per frame) and given an RFC 6465 level computed
  with a Python loop over every sample.
- **The learner's packets are decoded on the event loop** (`InlineAudioDecoding`), not on a thread per track.
- **40 ms packets both ways** (`voice.packet_ms`). The answer asks the browser for `a=ptime:40`, which
  Chrome's Opus encoder follows, and the tutor's track encodes 40 ms frames: half the packets to protect, send,
  receive and decode, on the server and in the browser, for the same audio.
- **No packet is held back** (`AudioJitterBuffer`). aiortc's jitter buffer holds 4 packets of the learner's
  audio before the first, then hands over each only once a later one has arrived, so the end of every
  utterance reached the pipeline a packet late; every one of those milliseconds is added to the tutor's reply
  time. Audio packets go on in order as they come; only a gap in the sequence holds the ones after it, for at
  most `voice.input_jitter_ms`.
- **Pipeline frames of at least 40 ms** (`INPUT_FRAME_MS`): with 20 ms packets two make one frame, halving
  the frames every processor queues.

The private pipecat and aiortc members all this relies on are listed in `patches.py` (and checked by
tests/pipeline/test_webrtc_patches.py), so an upgrade that moves one fails a test rather than a lesson.
"""

from server.pipeline.webrtc.jitter import receive_audio_as_it_arrives
from server.pipeline.webrtc.transport import LessonTransport

__all__ = ["LessonTransport", "receive_audio_as_it_arrives"]
