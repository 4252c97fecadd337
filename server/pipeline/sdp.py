"""SDP: the one check a learner's offer passes before any peer connection is made for it, and the answer's ptime."""

from __future__ import annotations

import re

from server.errors import BadRequest

_MEDIA = re.compile(r"^m=(\w+) (\d+)(?:/\d+)? \S+((?: \S+)*)$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)", re.IGNORECASE)


def check_offer(sdp: str) -> None:
    """Refuse (400 `invalid_sdp`) an offer without an active audio section that offers Opus at 48 kHz.

    Only such an offer can carry the learner's microphone to the pipeline: anything else would take a voice
    slot and start a pipeline that can never hear the learner (an SDP of just `v=0` once took every slot).
    """
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise BadRequest("invalid_sdp", "The SDP offer is not valid (it must start with v=0).")
    sections: list[list[str]] = []
    for line in lines[1:]:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    if any(_usable_audio(section) for section in sections):
        return
    if not any(section[0].startswith("m=audio ") for section in sections):
        raise BadRequest("invalid_sdp", "The SDP offer has no audio section: the lesson needs the microphone.")
    raise BadRequest(
        "invalid_sdp", "The SDP offer's audio is not usable: it must be active and offer the Opus codec (48 kHz)."
    )


def _usable_audio(section: list[str]) -> bool:
    media = _MEDIA.match(section[0])
    if media is None or media.group(1) != "audio" or media.group(2) == "0":
        return False
    if "a=inactive" in section:
        return False
    formats = set(media.group(3).split())
    for line in section[1:]:
        rtpmap = _RTPMAP.match(line)
        if rtpmap and rtpmap.group(1) in formats and rtpmap.group(2).lower() == "opus" and rtpmap.group(3) == "48000":
            return True
    return False


_AUDIO_SECTION = re.compile(r"(^m=audio [^\r\n]*(?:\r?\n))", re.MULTILINE)


def with_ptime(sdp: str, packet_ms: int) -> str:
    """The answer with `a=ptime` on its audio section: the packet length the browser should send (RFC 4566).

    Chrome's Opus encoder takes its frame length from the remote description's ptime; a peer that ignores it
    keeps sending 20 ms packets, which the server takes as well.
    """
    if packet_ms == 20 or "a=ptime:" in sdp:
        return sdp

    def add(match: re.Match[str]) -> str:
        line = match.group(1)
        newline = "\r\n" if line.endswith("\r\n") else "\n"
        return f"{line}a=ptime:{packet_ms}{newline}"

    return _AUDIO_SECTION.sub(add, sdp)
