"""The shared speech models on their own: what Whisper hears, how piper voices are picked, the doctor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipecat.frames.frames import TTSAudioRawFrame

from harness.scripted_llm import ScriptedLLM, unused_base_url
from server.pipeline.doctor import check_llm
from server.pipeline.models import BUNDLED_VOICE, SharedModels, bundled_voice_path, load_models
from server.pipeline.phrases import PhraseCache
from server.pipeline.stt import WhisperBatcher, WhisperOptions, transcribe_batch, transcribe_pcm
from server.pipeline.tts import SharedPiperTTSService, quick_start, split_clauses, synthesize_sentence
from server.settings import VoiceSettings
from tests.conftest import make_settings
from tests.pipeline.conftest import words

pytestmark = pytest.mark.voice


@pytest.mark.parametrize(
    "sentence",
    [
        "Can you explain how photosynthesis works in plants?",
        "Yes, I think so.",
        "What is the difference between mitosis and meiosis, and why does it matter?",
    ],
)
def test_whisper_hears_what_was_said(
    voice_models: SharedModels, speech: Callable[[str], np.ndarray], sentence: str
) -> None:
    heard = transcribe_pcm(voice_models.whisper, speech(sentence).tobytes(), WhisperOptions())
    assert words(heard) == words(sentence)


def test_whisper_hears_nothing_in_silence(voice_models: SharedModels) -> None:
    assert transcribe_pcm(voice_models.whisper, np.zeros(16000, np.int16).tobytes(), WhisperOptions()) == ""


LEARNER_QUESTIONS = [
    "Can you explain how photosynthesis works in plants?",
    "Why is the sky blue during the day?",
    "What is the capital city of Australia?",
    "How many legs does a spider have?",
]


def test_utterances_transcribed_together_are_heard_as_each_alone(
    voice_models: SharedModels, speech: Callable[[str], np.ndarray]
) -> None:
    assert voice_models.whisper is not None
    clips = [speech(text).astype(np.float32) / 32768.0 for text in LEARNER_QUESTIONS]
    # Different lengths, one call: each keeps its own words, none borrows another's.
    together = transcribe_batch(voice_models.whisper, clips, WhisperOptions())
    assert [words(text) for text in together] == [words(text) for text in LEARNER_QUESTIONS]
    silence_first = transcribe_batch(voice_models.whisper, [np.zeros(16000, np.float32), clips[1]], WhisperOptions())
    assert silence_first[0] == ""
    assert words(silence_first[1]) == words(LEARNER_QUESTIONS[1])


async def test_learners_who_stop_talking_together_share_whisper_calls(
    voice_models: SharedModels, speech: Callable[[str], np.ndarray]
) -> None:
    assert voice_models.whisper is not None
    batcher = WhisperBatcher(voice_models.whisper, workers=1)
    try:
        pcms = [speech(text).tobytes() for text in LEARNER_QUESTIONS]
        heard = await asyncio.gather(*(batcher.transcribe(pcm, WhisperOptions()) for pcm in pcms))
        assert [words(text) for text in heard] == [words(text) for text in LEARNER_QUESTIONS]
        # Those that arrived while the model was busy went in one call, not a queue of single calls.
        assert batcher.utterances == len(pcms)
        assert batcher.calls < len(pcms)

        # One that arrives alone is not held back for company, and silence is not sent to the model.
        assert words(await batcher.transcribe(pcms[0], WhisperOptions())) == words(LEARNER_QUESTIONS[0])
        assert await batcher.transcribe(b"", WhisperOptions()) == ""
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="shut down"):
        await batcher.transcribe(pcms[0], WhisperOptions())


def test_tutor_speech_is_understood_by_whisper(voice_models: SharedModels) -> None:
    voice, _ = voice_models.voice_for("male", "formal")
    phonemes = voice.voice.phonemize("The mitochondria is the powerhouse of the cell.")
    pcm = synthesize_sentence(voice, phonemes[0], 1.0, 16000)
    assert np.abs(np.frombuffer(pcm, np.int16)).max() > 10000
    heard = transcribe_pcm(voice_models.whisper, pcm, WhisperOptions())
    assert "powerhouse" in words(heard)


def test_long_sentences_are_spoken_clause_by_clause() -> None:
    assert split_clauses("Well, think of it this way: a neuron is a tiny switch, and many make a brain.") == [
        "Well, think of it this way:",
        "a neuron is a tiny switch,",
        "and many make a brain.",
    ]
    assert split_clauses("Yes, exactly.") == ["Yes, exactly."]
    assert split_clauses("Our time is up for today. Well done, and goodbye!") == [
        "Our time is up for today. Well done, and goodbye!"
    ]


def test_the_first_words_of_a_reply_are_spoken_before_the_rest_of_a_long_clause() -> None:
    assert quick_start("Rivers flow downhill because of gravity,") == ["Rivers flow downhill", "because of gravity,"]
    assert quick_start("A tributary is a smaller river that flows into a bigger one,") == [
        "A tributary is a smaller river",
        "that flows into a bigger one,",
    ]
    assert quick_start("Our time is up for today. Well done, and goodbye!") == [
        "Our time is up for today.",
        "Well done, and goodbye!",
    ]
    # Short clauses, and long ones with no natural place to pause early, are left whole.
    assert quick_start("Great question!") == ["Great question!"]
    assert quick_start("A delta is the fan of land a river builds where it meets the sea,") == [
        "A delta is the fan of land a river builds where it meets the sea,"
    ]


def test_voice_slots_use_school_voices_and_fall_back_to_the_bundled_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    bundled = bundled_voice_path()
    os.symlink(bundled, models_dir / "en_US-school-medium.onnx")
    os.symlink(f"{bundled}.json", models_dir / "en_US-school-medium.onnx.json")
    settings = VoiceSettings.model_validate(
        {
            "models_dir": str(models_dir),
            "tts": {
                "voices": {
                    "female.casual": {"voice": "en_US-school-medium", "length_scale": 0.9},
                    "female.formal": {"voice": "en_US-missing-high", "length_scale": 1.1},
                }
            },
        }
    )
    with caplog.at_level(logging.WARNING):
        models = load_models(settings, cpu_count=1)
    try:
        voice, rate = models.voice_for("female", "casual")
        assert (voice.name, rate) == ("en_US-school-medium", 0.9)
        voice, rate = models.voice_for("female", "formal")
        assert (voice.name, rate) == (BUNDLED_VOICE, 1.1)
        assert "en_US-missing-high" in caplog.text
    finally:
        models.close()


async def test_doctor_says_how_to_point_the_server_at_an_llm(tmp_path: Path) -> None:
    down = unused_base_url()
    only_endpoint = make_settings(tmp_path, VOICE__LLM__PROVIDER="openai", VOICE__LLM__BASE_URL=down)
    name, ok, detail = await check_llm(only_endpoint)
    assert (name, ok) == ("LLM", False)
    assert down in detail and "TUTOR_VOICE__LLM__BASE_URL" in detail and "voice.llm.model" in detail

    # "auto" falls back to the bundled model, and the doctor says it is a demonstration and what to use instead.
    name, ok, detail = await check_llm(make_settings(tmp_path, VOICE__LLM__BASE_URL=down))
    assert ok, detail
    assert "demonstration" in detail and "often wrong" in detail
    assert "Qwen2.5-7B-Instruct" in detail

    with ScriptedLLM(["Hello!"]) as llm:
        name, ok, detail = await check_llm(make_settings(tmp_path, VOICE__LLM__BASE_URL=llm.base_url))
    assert ok, detail
    assert "Hello" in detail


def test_a_looping_decoder_is_cut_back_to_one_copy() -> None:
    from server.pipeline.stt import _drop_repeats

    assert _drop_repeats([1, 2, 3, 1, 2, 3, 1, 2]) == [1, 2, 3]
    assert _drop_repeats([7, 7, 7, 7, 7, 7]) == [7, 7, 7]
    assert _drop_repeats([1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6]


class _CountingPool(ThreadPoolExecutor):
    """A thread pool that counts the jobs it is given."""

    def __init__(self) -> None:
        super().__init__(1)
        self.jobs = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


def _piper_service(
    models: SharedModels,
    urgent: ThreadPoolExecutor,
    later: ThreadPoolExecutor,
    phrase_cache: PhraseCache | None = None,
    fixed_phrases: tuple[str, ...] = (),
) -> SharedPiperTTSService:
    """The lesson's piper stage on the shared voice, outside a pipeline, synthesizing on the given pools."""
    loaded, _ = models.voice_for("male", "casual")
    tts = SharedPiperTTSService(
        voice=loaded,
        length_scale=1.0,
        executor=urgent,
        background_executor=later,
        phonemizer_lock=models.phonemizer_lock,
        phrase_cache=phrase_cache,
        fixed_phrases=fixed_phrases,
        sample_rate=24000,
    )
    tts._sample_rate = 24000
    tts.start_tts_usage_metrics = tts.stop_ttfb_metrics = _nothing  # type: ignore[method-assign]
    return tts


async def test_sentences_not_yet_needed_are_synthesized_at_lower_priority(voice_models: SharedModels) -> None:
    # The first words of a reply are what the learner waits for; later sentences, synthesized while earlier
    # audio still plays, go to the lower-priority pool so another lesson's first words are not held up.
    urgent, later = _CountingPool(), _CountingPool()
    tts = _piper_service(voice_models, urgent, later)

    async def speak(text: str) -> float:
        seconds = 0.0
        async for frame in tts.run_tts(text, "ctx"):
            assert isinstance(frame, TTSAudioRawFrame), frame
            seconds += len(frame.audio) / 48000
        return seconds

    first = await speak("Rivers flow downhill because of gravity.")
    assert first > 1.0
    # With nothing playing, the phonemes and the quick first words ("Rivers flow downhill") are urgent; the
    # rest of the sentence may already wait its turn while those words play.
    assert urgent.jobs == 2 and later.jobs <= 1, (urgent.jobs, later.jobs)
    before = later.jobs
    await speak("So they end up in a lake or the sea.")
    assert urgent.jobs == 2, "a sentence synthesized while the first still plays is not urgent"
    assert later.jobs == before + 2
    urgent.shutdown()
    later.shutdown()


class _SlowPool(_CountingPool):
    """A one-thread pool whose jobs after the first `quick` each start `delay` seconds late (a busy machine)."""

    def __init__(self, quick: int, delay: float) -> None:
        super().__init__()
        self.quick, self.delay = quick, delay

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.jobs + 1 <= self.quick:
            return super().submit(fn, *args, **kwargs)

        def late() -> Any:
            time.sleep(self.delay)
            return fn(*args, **kwargs)

        return super().submit(late)


async def test_a_reply_that_waits_for_synthesis_is_logged(
    voice_models: SharedModels, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator must be able to see that the server is too busy for its lessons: the tutor's voice stopping
    # mid-answer because the next words were not ready is logged, and a pause the LLM caused is not.
    pool = _SlowPool(quick=2, delay=2.5)  # phonemes and the first words on time, the rest of the reply late
    tts = _piper_service(voice_models, pool, pool)

    async def speak(text: str, context: str) -> None:
        async for frame in tts.run_tts(text, context):
            assert isinstance(frame, TTSAudioRawFrame), frame

    try:
        with caplog.at_level(logging.WARNING, logger="server.pipeline.tts"):
            await speak("Rivers flow downhill because of gravity.", "reply-1")
            stalled = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
            assert len(stalled) == 1, stalled
            assert "short of CPU" in stalled[0]
            caplog.clear()
            pool.quick = pool.jobs + 10  # synthesis is quick again; the LLM's next sentence comes late
            await asyncio.sleep(2.0)
            await speak("So they end up in a lake or the sea.", "reply-1")
            assert not [r for r in caplog.records if "waited" in r.getMessage()]
    finally:
        pool.shutdown()


async def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


async def test_a_greeting_is_synthesized_once_for_every_lesson_that_starts_with_it(voice_models: SharedModels) -> None:
    # A class opening the same companion hears the same greeting: the second learner's comes without piper,
    # the same audio, while the LLM's replies are always synthesized afresh.
    greeting = "Hello, let's start the session. Today we'll be talking about rivers."
    reply = "Rivers flow downhill because of gravity."
    cache = PhraseCache()
    pools = [_CountingPool(), _CountingPool()]

    async def speak(text: str) -> tuple[bytes, int]:
        tts = _piper_service(voice_models, *pools, phrase_cache=cache, fixed_phrases=(greeting,))
        before = pools[0].jobs + pools[1].jobs
        audio = b""
        async for frame in tts.run_tts(text, "ctx"):
            assert isinstance(frame, TTSAudioRawFrame), frame
            audio += frame.audio
        return audio, pools[0].jobs + pools[1].jobs - before

    try:
        first, jobs = await speak(greeting)
        assert jobs >= 2 and len(first) / 48000 > 2.0, "the first lesson's greeting is synthesized"
        again, jobs = await speak(greeting)
        assert jobs == 0, "the next lesson's greeting needed piper again"
        assert again == first
        assert len(cache) == 1
        _, jobs = await speak(reply)
        _, jobs_again = await speak(reply)
        assert jobs > 0 and jobs_again > 0, "an LLM reply was taken from the cache"
        assert len(cache) == 1
    finally:
        for pool in pools:
            pool.shutdown()


def test_the_phrase_cache_keeps_the_most_recently_used_phrases() -> None:
    cache = PhraseCache(entries=2)
    keys = [("joe", 1.0, 24000, f"Today we'll be talking about topic {i}.") for i in range(3)]
    cache.put(keys[0], [b"a"])
    cache.put(keys[1], [b"b"])
    assert cache.get(keys[0]) == [b"a"]  # now the most recent
    cache.put(keys[2], [b"c"])
    assert cache.get(keys[1]) is None, "the least recently used phrase goes first"
    assert cache.get(keys[0]) == [b"a"] and cache.get(keys[2]) == [b"c"]


class _RecordingPool(ThreadPoolExecutor):
    """A one-thread pool that records the name of each job as it starts running."""

    def __init__(self) -> None:
        super().__init__(1)
        self.ran: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            self.ran.append(getattr(fn, "__name__", "job"))
            return fn(*args, **kwargs)

        return super().submit(run)


@dataclass
class _BusyLowPriority:
    """A tutor whose first sentence is playing, while another lesson's job holds the low-priority thread."""

    tts: SharedPiperTTSService
    urgent: _RecordingPool
    later: _RecordingPool
    busy: threading.Event

    async def say(self, text: str) -> float:
        """Speak `text`; return the seconds of audio that came out."""
        heard = 0.0
        async for frame in self.tts.run_tts(text, "c"):
            assert isinstance(frame, TTSAudioRawFrame), frame
            heard += len(frame.audio) / 48000
        return heard


@contextlib.asynccontextmanager
async def _busy_low_priority(models: SharedModels) -> AsyncIterator[_BusyLowPriority]:
    urgent, later = _RecordingPool(), _RecordingPool()
    busy = threading.Event()
    state = _BusyLowPriority(_piper_service(models, urgent, later), urgent, later, busy)
    try:
        await state.say("Rivers flow downhill because of gravity, so they end up in the sea.")
        later.submit(busy.wait)  # another lesson's long job holds the low-priority thread
        yield state
    finally:
        busy.set()
        urgent.shutdown()
        later.shutdown()


SECOND_SENTENCE = "A delta is the fan of land a river builds."


async def test_a_sentence_stuck_behind_other_lessons_at_low_priority_moves_up_before_the_audio_runs_out(
    voice_models: SharedModels,
) -> None:
    # A sentence made while earlier audio still plays waits on the low-priority thread. If other lessons'
    # work holds that thread until the earlier audio is nearly over, the sentence goes to the normal pool
    # rather than leave the learner in silence.
    async with _busy_low_priority(voice_models) as tutor:
        before = len(tutor.urgent.ran)
        # Left on the busy thread, the sentence would never come: fail rather than hang.
        assert await asyncio.wait_for(tutor.say(SECOND_SENTENCE), 30) > 1.0, "the second sentence was not spoken"
        assert "phonemize" in tutor.urgent.ran[before:] and "synthesize_sentence" in tutor.urgent.ran[before:]
        assert tutor.later.ran[-1] == "wait", "nothing of the second sentence ran on the busy low-priority thread"


async def test_a_sentence_waiting_at_low_priority_is_withdrawn_when_the_learner_interrupts(
    voice_models: SharedModels,
) -> None:
    # Barge-in cancels the tutor's reply; a sentence still queued behind other lessons' work must not be
    # synthesized afterwards for nobody, on the machine's busiest moments.
    async with _busy_low_priority(voice_models) as tutor:
        before = len(tutor.urgent.ran)
        reply = asyncio.create_task(tutor.say(SECOND_SENTENCE))
        await asyncio.sleep(0.3)  # queued at low priority, with seconds of earlier audio still to play
        reply.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reply
        tutor.busy.set()
        tutor.later.shutdown(wait=True)
        assert tutor.later.ran[-1] == "wait", "the interrupted sentence was synthesized anyway"
        assert len(tutor.urgent.ran) == before, "the interrupted sentence moved to the normal pool"


# Three lessons speaking long sentences at once, in a process of its own so that its RSS is the voice's alone.
_PIPER_MEMORY_SCRIPT = """
import threading
from server.pipeline.models import BUNDLED_VOICE, bundled_voice_path, load_voice
from server.pipeline.tts import synthesize_sentence

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

voice = load_voice(BUNDLED_VOICE, bundled_voice_path())
text = ("Great question! The Nile is the longest river in Africa, flowing north all the way to the "
        "Mediterranean, and it has carried boats and farmers for thousands of years.")
phonemes = [p for p in voice.voice.phonemize(text)]
synthesize_sentence(voice, phonemes[0], 1.0, 24000)
before = rss_mb()
def speak():
    for sentence in phonemes:
        assert len(synthesize_sentence(voice, sentence, 1.0, 24000)) > 24000
threads = [threading.Thread(target=speak) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(rss_mb() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_a_burst_of_long_sentences_does_not_leave_the_voice_holding_its_memory() -> None:
    # onnxruntime's arena keeps the largest working memory a piper call ever needed, times the calls that ran
    # at once, for the life of the server: about 850 MB after this burst. The voice now gives it back.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PIPER_MEMORY_SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mb = float(done.stdout.strip().splitlines()[-1])
    assert grown_mb < 300, f"the server kept {grown_mb:.0f} MB after three long sentences at once"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux thread names")
def test_the_voice_threads_carry_their_pool_names_for_top_and_ps(voice_models: SharedModels) -> None:
    # An operator looking at `top -H` sees which part of the pipeline spends the CPU.
    pools = {
        "voice-tts": voice_models.compute.tts_executor,
        "voice-tts-later": voice_models.compute.tts_background_executor,
        "voice-turn": voice_models.compute.turn_executor,
        "voice-vad": voice_models.compute.vad_executor,
    }
    for pool in pools.values():
        pool.submit(time.sleep, 0).result()
    names = {(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()}
    # Linux keeps the first 15 characters of a name.
    for expected in ("voice-tts_0", "voice-tts-later", "voice-turn_0", "voice-vad_0", "voice-stt-0"):
        assert expected in names, f"no thread named {expected}: {sorted(names)}"
