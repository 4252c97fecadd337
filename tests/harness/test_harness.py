"""Checks that the voice test helpers behave like what they stand in for: OpenAI, a learner, a browser."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import soxr
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from faster_whisper import WhisperModel

from harness.rtc_client import SEND_RATE, LessonClient
from harness.scripted_llm import ScriptedLLM, unused_base_url
from harness.speech import rms, synthesize, whisper_model_dir, write_wav

TUTOR_REPLY = "Great question! The Nile is the longest river in Africa, flowing north into the Mediterranean."
LEARNER_LINE = "Can you tell me about the longest river in Africa?"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.fixture(scope="module")
def whisper() -> WhisperModel:
    return WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")


def transcribe(model: WhisperModel, pcm: np.ndarray, sample_rate: int) -> str:
    audio = pcm.astype(np.float32) / 32768.0
    if sample_rate != 16000:
        audio = soxr.resample(audio, sample_rate, 16000)
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    return " ".join(segment.text for segment in segments)


# -- the scripted LLM ------------------------------------------------------------------------------


async def test_scripted_llm_streams_like_the_openai_api() -> None:
    with ScriptedLLM([TUTOR_REPLY]) as llm:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="unused")
        stream = await client.chat.completions.create(
            model="tutor",
            messages=[{"role": "user", "content": "Tell me about rivers."}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        await client.close()

    choice_chunks = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in choice_chunks if c.choices[0].delta.content]
    assert "".join(contents) == TUTOR_REPLY
    # Word by word, as a real model streams tokens, so sentence-splitting downstream gets exercised.
    assert len(contents) == len(TUTOR_REPLY.split())
    assert choice_chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(TUTOR_REPLY.split())
    assert llm.requests[0]["messages"] == [{"role": "user", "content": "Tell me about rivers."}]
    assert llm.requests[0]["stream"] is True


async def test_scripted_llm_answers_without_streaming_and_lists_models() -> None:
    replies = ["First answer.", "Second answer."]
    with ScriptedLLM(replies) as llm:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="unused")
        got = []
        for _ in range(3):
            completion = await client.chat.completions.create(
                model="tutor", messages=[{"role": "user", "content": "hi"}]
            )
            got.append(completion.choices[0].message.content)
        models = await client.models.list()
        await client.close()

    assert got == ["First answer.", "Second answer.", "First answer."]
    assert [m.id for m in models.data] == ["scripted-tutor"]
    assert len(llm.requests) == 3
    assert len(llm.request_times) == 3 and llm.request_times == sorted(llm.request_times)


async def test_scripted_llm_reply_can_depend_on_the_conversation() -> None:
    def echo_last(messages: list[dict[str, Any]]) -> str:
        return f"You said: {messages[-1]['content']}"

    with ScriptedLLM(echo_last) as llm:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="unused")
        completion = await client.chat.completions.create(
            model="tutor",
            messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "ok"}],
        )
        await client.close()
    assert completion.choices[0].message.content == "You said: ok"


async def test_scripted_llm_failure_and_unreachable_endpoint_raise_what_openai_raises() -> None:
    with ScriptedLLM(["never sent"], fail_with_status=503) as llm:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.create(
                model="tutor", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        await client.close()
    assert failed.value.status_code == 503

    down = openai.AsyncOpenAI(base_url=unused_base_url(), api_key="unused", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        await down.chat.completions.create(model="tutor", messages=[{"role": "user", "content": "hi"}])
    await down.close()


def test_scripted_llm_serves_sync_callers_after_a_restart() -> None:
    llm = ScriptedLLM(["Hello."])
    first_url = llm.start()
    llm.stop()
    second_url = llm.start()
    try:
        client = openai.OpenAI(base_url=second_url, api_key="unused")
        completion = client.chat.completions.create(model="t", messages=[{"role": "user", "content": "hi"}])
        client.close()
    finally:
        llm.stop()
    assert first_url.startswith("http://127.0.0.1:") and first_url.endswith("/v1")
    assert completion.choices[0].message.content == "Hello."


# -- synthesized learner speech --------------------------------------------------------------------


@pytest.mark.voice
def test_synthesized_speech_is_audible_padded_and_says_the_words(whisper: WhisperModel, tmp_path: Path) -> None:
    pcm = synthesize(LEARNER_LINE, sample_rate=16000, leading_silence=0.3, trailing_silence=1.5)

    assert pcm.dtype == np.int16
    assert rms(pcm[:4800]) == 0.0  # the leading 0.3 s
    assert rms(pcm[-24000:]) == 0.0  # the trailing 1.5 s that lets a VAD see the turn end
    assert rms(pcm) > 500
    heard = words(transcribe(whisper, pcm, 16000))
    assert {"longest", "river", "africa"} <= set(heard)

    write_wav(tmp_path / "line.wav", pcm, 16000)
    assert (tmp_path / "line.wav").stat().st_size == 44 + 2 * len(pcm)


@pytest.mark.voice
def test_synthesize_honours_sample_rate_and_speaking_rate() -> None:
    normal = synthesize("Good morning.", sample_rate=48000, leading_silence=0, trailing_silence=0)
    slow = synthesize("Good morning.", sample_rate=48000, leading_silence=0, trailing_silence=0, length_scale=1.5)
    at_16k = synthesize("Good morning.", sample_rate=16000, leading_silence=0, trailing_silence=0)
    assert len(slow) > len(normal) * 1.2
    assert abs(len(at_16k) * 3 - len(normal)) < 48000 * 0.2  # same speech at a third of the rate


# -- the browser-like WebRTC client ----------------------------------------------------------------


class EchoPeer:
    """A minimal aiortc answerer that sends back the audio and data-channel messages it receives."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.relay = MediaRelay()
        self.pings = 0

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self.pc.addTrack(self.relay.subscribe(track))

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            @channel.on("message")
            def on_message(message: str) -> None:
                if message.startswith("ping"):
                    self.pings += 1
                else:
                    channel.send(message)

    async def answer(self, offer: dict[str, Any]) -> dict[str, Any]:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        return {"sdp": local.sdp, "type": local.type, "pc_id": "echo-1"}


@pytest.fixture
async def echo_session() -> AsyncIterator[tuple[LessonClient, EchoPeer]]:
    peer = EchoPeer()
    client = LessonClient(keep_audio=True)
    answer = await client.connect(peer.answer)
    assert answer["pc_id"] == "echo-1"
    yield client, peer
    await client.close()
    await peer.pc.close()


@pytest.mark.voice
async def test_lesson_client_streams_speech_and_hears_it_back(
    echo_session: tuple[LessonClient, EchoPeer], whisper: WhisperModel
) -> None:
    client, _ = echo_session
    assert client.pc_id == "echo-1"
    speech = synthesize(LEARNER_LINE, sample_rate=16000, trailing_silence=0.5)

    await asyncio.sleep(0.3)  # some silence first: nothing should come back yet
    before_speaking = client.last_audio_time()
    sent_from = time.monotonic()
    speech_end = client.send_pcm(speech, 16000)
    await client.wait_for_audio(after=sent_from, timeout=10)
    await client.wait_for_quiet(quiet=0.6, timeout=15)

    assert before_speaking is None
    assert speech_end > sent_from
    # Audio is paced in real time, so about the clip's length of speech comes back, not a burst.
    spoken_seconds = float(np.count_nonzero(np.abs(speech) > 300)) / 16000
    assert client.audio_seconds_after(0) > spoken_seconds * 0.5
    heard = words(transcribe(whisper, client.received_pcm(), SEND_RATE))
    assert {"longest", "river", "africa"} <= set(heard)


async def test_lesson_client_exchanges_data_channel_messages(
    echo_session: tuple[LessonClient, EchoPeer],
) -> None:
    client, peer = echo_session
    client.send_message({"type": "transcript", "role": "user", "transcript": "hello"})
    message = await client.wait_for_message(lambda m: m.get("type") == "transcript", timeout=5)
    assert message == {"type": "transcript", "role": "user", "transcript": "hello"}
    assert client.messages == [message]
    assert client.message_time(lambda m: m.get("role") == "user") is not None
    with pytest.raises(TimeoutError):
        await client.wait_for_message(lambda m: m.get("type") == "never", timeout=0.2)

    await asyncio.sleep(1.2)
    assert peer.pings >= 1  # keep-alive pings, which pipecat uses to tell a live peer from a dead one


async def test_speak_reports_when_the_speech_actually_left(
    echo_session: tuple[LessonClient, EchoPeer],
) -> None:
    client, _ = echo_session
    tone = (np.sin(np.arange(16000 * 0.5) * 2 * np.pi * 440 / 16000) * 8000).astype(np.int16)
    clip = np.concatenate([tone, np.zeros(8000, dtype=np.int16)])
    predicted = client.send_pcm(clip, 16000)
    followed_by = await client.speak(clip, 16000)
    # The second clip is queued behind the first, so its speech ends one clip-length later.
    assert followed_by > predicted
