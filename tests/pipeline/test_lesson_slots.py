"""Voice slots cannot be taken hostage: unusable offers start nothing, a learner holds one live lesson, and a
lesson whose browser never connects gives its slot back within seconds."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest

from harness.rtc_client import make_offer
from server.errors import BadRequest
from server.pipeline.sdp import check_offer
from server.settings import VoiceSettings
from server.state import get_state
from tests.pipeline.conftest import LessonFactory, is_status, post_offer

pytestmark = pytest.mark.voice

HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
OPUS = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
UNUSABLE = {
    "only v=0": "v=0\r\n",
    "no audio codec we take": HEAD
    + "m=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
    "video only": HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
    "audio turned off": HEAD + OPUS.replace("m=audio 9", "m=audio 0"),
    "audio inactive": HEAD + OPUS + "a=inactive\r\n",
    "opus not among the section's formats": HEAD + OPUS.replace("SAVPF 111", "SAVPF 0"),
}


@pytest.mark.parametrize("sdp", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_offer_without_usable_opus_audio_is_refused(sdp: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_offer(sdp)
    assert refused.value.code == "invalid_sdp"


async def test_a_browser_like_offer_passes() -> None:
    check_offer((await make_offer())["sdp"])
    check_offer(HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" + OPUS + "a=sendrecv\r\n")


async def test_unusable_offers_are_a_400_and_take_no_slot(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson(VOICE__MAX_LIVE_LESSONS="1")
    voice = get_state(lesson.app).voice
    assert voice is not None
    url = f"/api/lessons/{lesson.lesson_id}/offer"
    for _ in range(3):  # as many as there are slots and more: none of them is taken
        for sdp in UNUSABLE.values():
            response = await lesson.client.post(url, json={"sdp": sdp, "type": "offer"})
            assert response.status_code == 400
            error = (await response.get_json())["error"]
            assert error["code"] == "invalid_sdp" and error["message"]
    assert voice.live_lessons == 0
    assert (await lesson.lesson())["ended_at"] is None
    # Another learner gets the one slot at once.
    bob, bobs_lesson = await lesson.another_learner("bob@school.test")
    peer = lesson.peer()
    await peer.connect(partial(post_offer, bob, bobs_lesson))
    await peer.wait_for_message(is_status("in-progress"), timeout=10)


async def test_a_learners_new_lesson_ends_their_other_live_lesson(start_lesson: LessonFactory) -> None:
    lesson = await start_lesson(VOICE__MAX_LIVE_LESSONS="1")
    first = await lesson.connect()
    await first.wait_for_message(is_status("in-progress"), timeout=10)

    # Another tab, another lesson: even on a full server it takes over the learner's slot.
    second_lesson = await lesson.new_lesson(name="Second tutor")
    second = lesson.peer()
    await second.connect(partial(post_offer, lesson.client, second_lesson))
    await second.wait_for_message(is_status("in-progress"), timeout=10)

    ended = await first.wait_for_message(is_status("ended"), timeout=10)
    assert ended["endedReason"] == "replaced-by-new-lesson"
    stored = await lesson.lesson()
    assert stored["end_reason"] == "replaced-by-new-lesson" and stored["ended_at"] is not None
    assert (await lesson.lesson(second_lesson))["ended_at"] is None
    voice = get_state(lesson.app).voice
    assert voice is not None and voice.live_lessons == 1


async def test_a_lesson_that_never_connects_gives_its_slot_back(start_lesson: LessonFactory) -> None:
    assert VoiceSettings().connect_timeout_secs <= 10, "a slot would wait too long for a browser that left"
    lesson = await start_lesson(VOICE__MAX_LIVE_LESSONS="1", VOICE__CONNECT_TIMEOUT_SECS="1.5")
    voice = get_state(lesson.app).voice
    assert voice is not None
    # The learner's browser sends its offer and is gone before it connects.
    await lesson.post_offer(await make_offer())
    offered_at = time.monotonic()
    bob, bobs_lesson = await lesson.another_learner("bob@school.test")
    response = await bob.post(f"/api/lessons/{bobs_lesson}/offer", json=await make_offer())
    assert response.status_code == 503

    for _ in range(100):
        if not voice.live_lessons:
            break
        await asyncio.sleep(0.1)
    # Within the connect timeout (and the timers' quarter-second tick), not at pipecat's 60 s.
    assert time.monotonic() - offered_at < 1.5 + 1.5
    stored = await lesson.wait_ended(within=5)
    assert stored["end_reason"] == "customer-disconnected"
    peer = lesson.peer()
    await peer.connect(partial(post_offer, bob, bobs_lesson))
    await peer.wait_for_message(is_status("in-progress"), timeout=10)
