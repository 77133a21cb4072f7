"""The whisperx adapter driven in steps on the bundled tiny.en: live segments, same transcript."""

from __future__ import annotations

from typing import Any

import pytest

from common.contract import TranscribeOptions
from common.transcript import Segment
from tests.audio import SHARED_DATA
from worker.audio import decode_audio
from worker.engines.base import LoadContext, ModelSpec
from worker.engines.whisperx_engine import WhisperXEngine, precomputed_chunks
from worker.models import BUNDLED_MODEL

pytestmark = pytest.mark.integration

MULTILINGUAL = SHARED_DATA / "multilingual.mp3"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> WhisperXEngine:
    """whisperx on tiny.en, CPU, without alignment (so the final segments are the live ones)."""
    spec = ModelSpec(engine="whisperx", model=BUNDLED_MODEL, device="cpu", compute_type="int8")
    context = LoadContext(model_cache_dir=str(tmp_path_factory.mktemp("models")), align=False)
    return WhisperXEngine(spec, context)


@pytest.mark.parametrize("vad", [True, False])
def test_stepped_decoding_streams_each_chunk_and_equals_one_pipeline_call(
    engine: WhisperXEngine, vad: bool
) -> None:
    audio = decode_audio(MULTILINGUAL, max_duration_s=3600, timeout_s=60)
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
    assert live == transcript.segments
    # VAD off: two 30 s windows. VAD on: its two 29 s chunks, the first cut where a 10 s merge
    # of the VAD's scores ends (over 30 s of audio in few chunks); one step per chunk either way.
    chunks = engine._speech_chunks(audio, vad)
    assert len(chunks) == (3 if vad else 2)
    assert chunks[0]["end"] - chunks[0]["start"] <= (10.0 if vad else 30.0)
    assert [segment.id for segment in live] == list(range(len(chunks)))
    assert (
        log.index(("segment", 0))
        < log.index(("transcribing", 100.0))
        < log.index(("segment", len(chunks) - 1))
    )

    pipeline: Any = engine._pipeline
    saved = pipeline.vad_model
    pipeline.vad_model = precomputed_chunks(chunks)
    try:
        one_call = pipeline.transcribe(audio, batch_size=8, language="en")
    finally:
        pipeline.vad_model = saved
    assert [segment.text for segment in transcript.segments] == [
        item["text"].strip() for item in one_call["segments"]
    ]
    assert [segment.start for segment in transcript.segments] == [
        round(item["start"], 3) for item in one_call["segments"]
    ]
