"""OpenAI's form fields turned into a job's."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError

from api.errors import InvalidField
from api.openai.errors import OpenAIError
from api.openai.requests import ResponseFormat, job_fields, parse_form
from common.catalog import EngineName
from common.contract import Task
from config import Settings


def test_openai_fields_map_onto_the_job_and_unknown_ones_are_ignored() -> None:
    form = parse_form(
        {
            "model": "timestamped/tiny.en",
            "prompt": "Kennedy.",
            "temperature": "0.4",
            "response_format": "verbose_json",
            "include[]": "logprobs",
            "chunking_strategy": "auto",
            "beam_size": "3",
        },
        {"timestamp_granularities[]": ["word", "segment"]},
        Task.TRANSCRIBE,
    )
    fields = job_fields(form, Task.TRANSCRIBE, Settings())
    assert (fields.engine, fields.model) == (EngineName.TIMESTAMPED, "tiny.en")
    assert fields.initial_prompt == "Kennedy."
    assert fields.temperature == 0.4
    assert fields.beam_size == 3
    assert fields.word_timestamps is True
    assert form.wants_words
    assert form.wants_segments


def test_whisperx_drops_temperature_and_words_are_timed_only_when_asked() -> None:
    form = parse_form({"model": "whisper-1", "temperature": "0.2"}, {}, Task.TRANSCRIBE)
    fields = job_fields(form, Task.TRANSCRIBE, Settings())
    assert fields.engine == EngineName.WHISPERX
    assert fields.temperature is None
    assert fields.word_timestamps is False
    assert form.response_format == ResponseFormat.JSON
    assert form.wants_segments
    assert not form.wants_words


def test_translations_ignore_language_and_translate() -> None:
    form = parse_form({"model": "base", "language": "de"}, {}, Task.TRANSLATE)
    assert form.language is None
    assert job_fields(form, Task.TRANSLATE, Settings()).task == Task.TRANSLATE


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "whisper-1", "language": "xx"}, "language"),
        ({"model": "whisper-1", "response_format": "diarized_json"}, "response_format"),
        # Our own rttm download is not one of OpenAI's formats.
        ({"model": "whisper-1", "response_format": "rttm"}, "response_format"),
        ({"model": "whisper-1", "temperature": "2"}, "temperature"),
        ({}, "model"),
    ],
)
def test_bad_fields_name_the_field(fields: dict[str, str], param: str) -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_form(fields, {}, Task.TRANSCRIBE)
    assert refused.value.errors()[0]["loc"][-1] == param


def test_granularities_need_verbose_json() -> None:
    with pytest.raises(OpenAIError) as refused:
        parse_form({"model": "whisper-1"}, {"timestamp_granularities[]": ["word"]}, Task.TRANSCRIBE)
    assert refused.value.param == "timestamp_granularities"
    assert refused.value.status_code == 400


def test_an_unknown_model_is_openais_404() -> None:
    form = parse_form({"model": "gpt-4o-transcribe"}, {}, Task.TRANSCRIBE)
    with pytest.raises(OpenAIError) as refused:
        job_fields(form, Task.TRANSCRIBE, Settings())
    assert (refused.value.status_code, refused.value.code) == (404, "model_not_found")


def test_speaker_options_reach_the_job() -> None:
    form = parse_form(
        {"model": "whisper-1", "diarize": "true", "num_speakers": "2"}, {}, Task.TRANSCRIBE
    )
    fields = job_fields(form, Task.TRANSCRIBE, Settings())
    assert (fields.diarize, fields.num_speakers, fields.min_speakers) == (True, 2, None)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"diarize": "true", "num_speakers": "0"}, "num_speakers"),
        ({"num_speakers": "2"}, "num_speakers"),
        ({"diarize": "true", "min_speakers": "3", "max_speakers": "2"}, "min_speakers"),
        ({"diarize": "true", "num_speakers": "2", "max_speakers": "2"}, "num_speakers"),
    ],
)
def test_bad_speaker_options_name_the_field(fields: dict[str, str], param: str) -> None:
    form = parse_form({"model": "whisper-1", **fields}, {}, Task.TRANSCRIBE)
    with pytest.raises(InvalidField) as refused:
        job_fields(form, Task.TRANSCRIBE, Settings())
    assert refused.value.field == param


def test_an_unreadable_speaker_count_is_refused_with_its_name() -> None:
    with pytest.raises(RequestValidationError) as refused:
        parse_form({"model": "whisper-1", "num_speakers": "two"}, {}, Task.TRANSCRIBE)
    assert refused.value.errors()[0]["loc"][-1] == "num_speakers"
