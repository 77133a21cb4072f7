"""When whisperx may align words with wav2vec2 offline: the model cache and nltk's punkt_tab
(read against whisperx's own tables of aligners, so it imports whisperx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nltk
import pytest

from common.contract import TranscribeOptions
from tests.audio import JFK
from worker.audio import decode_audio
from worker.engines.base import LoadContext, ModelSpec
from worker.engines.whisperx_engine import WhisperXEngine
from worker.engines.word_timing import (
    ALIGNMENT_SUBDIR,
    NLTK_SUBDIR,
    missing_align_model,
    missing_punkt,
    punkt_language,
    wav2vec2_unavailable,
)
from worker.models import BUNDLED_MODEL

pytestmark = pytest.mark.integration

# torchaudio's WAV2VEC2_ASR_BASE_960H (whisperx's English aligner), as torch.hub caches it.
ENGLISH_CHECKPOINT = "wav2vec2_fairseq_base_ls960_asr_ls960.pth"


@pytest.fixture(autouse=True)
def nltk_path() -> Iterator[None]:
    """nltk's data folders as they were: the check adds the model cache's to them."""
    saved = list(nltk.data.path)
    yield
    nltk.data.path[:] = saved


def add_punkt(cache: Path, language: str) -> None:
    (cache / NLTK_SUBDIR / "tokenizers" / "punkt_tab" / language).mkdir(parents=True)


def test_an_empty_cache_has_no_aligner(tmp_path: Path) -> None:
    reason = missing_align_model("en", tmp_path)
    assert reason == f"{tmp_path / ALIGNMENT_SUBDIR / ENGLISH_CHECKPOINT} is missing"


def test_torchaudio_checkpoint_in_the_cache_is_found(tmp_path: Path) -> None:
    (tmp_path / ALIGNMENT_SUBDIR).mkdir()
    (tmp_path / ALIGNMENT_SUBDIR / ENGLISH_CHECKPOINT).write_bytes(b"weights")
    assert missing_align_model("en", tmp_path) is None


def test_hub_aligner_needs_its_cache_entry(tmp_path: Path) -> None:
    assert missing_align_model("nl", tmp_path) == (
        f"jonatasgrosman/wav2vec2-large-xlsr-53-dutch is not in {tmp_path / ALIGNMENT_SUBDIR}"
    )
    snapshot = (
        tmp_path
        / ALIGNMENT_SUBDIR
        / "models--jonatasgrosman--wav2vec2-large-xlsr-53-dutch"
        / "snapshots"
        / "0123abcd"
    )
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123abcd")
    assert missing_align_model("nl", tmp_path) is None


def test_a_language_without_default_aligner_says_so(tmp_path: Path) -> None:
    assert missing_align_model("la", tmp_path) == "whisperx has no default alignment model for 'la'"


def test_punkt_tab_is_looked_up_in_the_model_cache_too(tmp_path: Path) -> None:
    # German sentences are split with German punkt; a language without its own, with English.
    assert punkt_language("de") == "german"
    assert punkt_language("ja") == "english"
    reason = missing_punkt("de", tmp_path)
    assert reason is not None
    assert "tokenizers/punkt_tab/german/" in reason
    add_punkt(tmp_path, "german")
    assert missing_punkt("de", tmp_path) is None


@pytest.mark.parametrize("have_model", [True, False])
def test_wav2vec2_needs_both_the_model_and_punkt(tmp_path: Path, have_model: bool) -> None:
    add_punkt(tmp_path, "english")
    if have_model:
        (tmp_path / ALIGNMENT_SUBDIR).mkdir()
        (tmp_path / ALIGNMENT_SUBDIR / ENGLISH_CHECKPOINT).write_bytes(b"weights")
    assert (wav2vec2_unavailable("en", tmp_path) is None) is have_model


def test_a_damaged_aligner_leaves_the_cross_attention_words(tmp_path: Path) -> None:
    """The check passes (a file where the aligner belongs, punkt_tab installed), the model does
    not load: the job still has its words, and the note says why they are not wav2vec2's."""
    add_punkt(tmp_path, "english")
    (tmp_path / ALIGNMENT_SUBDIR).mkdir()
    (tmp_path / ALIGNMENT_SUBDIR / ENGLISH_CHECKPOINT).write_bytes(b"not a checkpoint")
    spec = ModelSpec(engine="whisperx", model=BUNDLED_MODEL, device="cpu", compute_type="int8")
    engine = WhisperXEngine(spec, LoadContext(model_cache_dir=str(tmp_path)))
    audio = decode_audio(JFK, max_duration_s=60, timeout_s=60)

    stages: list[tuple[str, float | None]] = []

    transcript = engine.transcribe(
        audio, TranscribeOptions(), lambda stage, percent: stages.append((stage, percent))
    )

    assert ("aligning", 0.0) in stages  # wav2vec2 was tried
    assert transcript.word_timing_source == "cross-attention"
    assert any(segment.words for segment in transcript.segments)
    (note,) = [note for note in transcript.notes if "word timings" in note]
    assert note.startswith("word timings from Whisper's cross-attention; the wav2vec2 model")
    assert "did not load" in note
