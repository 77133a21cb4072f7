"""A transcript written as OpenAI's API answers."""

from __future__ import annotations

import json

from api.openai.requests import parse_form
from api.openai.responses import answer, compression_ratio, verbose_body
from common.contract import Task
from common.transcript import Segment, Transcript, Word


def transcript() -> Transcript:
    words = [Word(word="Ask", start=0.5, end=0.9), Word(word="not.", start=1.0, end=1.4)]
    return Transcript(
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration=10.2,
        text="Ask not.",
        segments=[
            Segment(id=0, start=0.5, end=1.4, text="Ask not.", words=words, avg_logprob=-0.3)
        ],
    )


def test_json_is_text_and_duration_usage_rounded_up() -> None:
    form = parse_form({"model": "whisper-1"}, {}, Task.TRANSCRIBE)
    body = json.loads(bytes(answer(transcript(), form, Task.TRANSCRIBE).body))
    assert body == {"text": "Ask not.", "usage": {"type": "duration", "seconds": 11}}


def test_verbose_json_fills_what_the_engine_did_not_report() -> None:
    form = parse_form(
        {"model": "whisper-1", "response_format": "verbose_json"},
        {"timestamp_granularities[]": ["word"]},
        Task.TRANSCRIBE,
    )
    body = verbose_body(transcript(), form, Task.TRANSCRIBE)
    assert body["task"] == "transcribe"
    assert body["language"] == "english"
    assert "segments" not in body  # only words were asked for
    assert body["words"] == [
        {"word": "Ask", "start": 0.5, "end": 0.9},
        {"word": "not.", "start": 1.0, "end": 1.4},
    ]
    both = parse_form(
        {"model": "whisper-1", "response_format": "verbose_json"}, {}, Task.TRANSCRIBE
    )
    (segment,) = verbose_body(transcript(), both, Task.TRANSCRIBE)["segments"]
    assert segment == {
        "id": 0,
        "seek": 50,
        "start": 0.5,
        "end": 1.4,
        "text": "Ask not.",
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": -0.3,
        "compression_ratio": compression_ratio("Ask not."),
        "no_speech_prob": 0.0,
    }


def test_verbose_json_names_the_speakers_of_a_diarized_transcript() -> None:
    diarized = transcript()
    diarized.segments[0].speaker = "SPEAKER_01"
    for word in diarized.segments[0].words:
        word.speaker = "SPEAKER_01"
    form = parse_form(
        {"model": "whisper-1", "response_format": "verbose_json", "diarize": "true"},
        {"timestamp_granularities[]": ["word", "segment"]},
        Task.TRANSCRIBE,
    )
    body = verbose_body(diarized, form, Task.TRANSCRIBE)
    assert body["segments"][0]["speaker"] == "SPEAKER_01"
    assert [word["speaker"] for word in body["words"]] == ["SPEAKER_01", "SPEAKER_01"]


def test_text_srt_and_vtt_are_plain_text() -> None:
    for fmt, start in (("text", "Ask not."), ("srt", "1\n00:00:00,500"), ("vtt", "WEBVTT")):
        form = parse_form({"model": "whisper-1", "response_format": fmt}, {}, Task.TRANSCRIBE)
        response = answer(transcript(), form, Task.TRANSCRIBE)
        assert bytes(response.body).decode().startswith(start)
        assert response.media_type is not None
        assert not response.media_type.startswith("application/json")


def test_a_translations_verbose_json_names_its_output_language() -> None:
    german = transcript().model_copy(update={"language": "de"})
    form = parse_form(
        {"model": "whisperx/base", "response_format": "verbose_json"}, {}, Task.TRANSLATE
    )
    body = verbose_body(german, form, Task.TRANSLATE)
    assert (body["task"], body["language"]) == ("translate", "english")
    assert verbose_body(german, form, Task.TRANSCRIBE)["language"] == "german"
