"""A finished job's transcript as OpenAI's API answers: json, text, srt, vtt and verbose_json.

Segment fields an engine does not report are filled as OpenAI's own would read for them:
`tokens` empty, `temperature` the one decoded with, `avg_logprob`/`no_speech_prob` 0,
`compression_ratio` computed from the text as Whisper computes it, `seek` the segment's start
in 10 ms frames (see the README's table of OpenAI fields).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.openai.requests import AudioForm, ResponseFormat
from common.catalog import LANGUAGE_NAMES
from common.contract import Task
from common.formats import OutputFormat, media_type, render
from common.transcript import Segment, Transcript

FRAMES_PER_SECOND = 100
"""Whisper's mel frames per second: the unit of `seek`."""


def usage(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's duration usage: the audio's seconds, rounded up as whisper-1 bills them."""
    return {"type": "duration", "seconds": math.ceil(transcript.duration)}


def compression_ratio(text: str) -> float:
    """Whisper's measure of repetition: the text's bytes over its zlib-compressed bytes."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def verbose_segment(segment: Segment, temperature: float) -> dict[str, Any]:
    """One segment as verbose_json lists it, with its `speaker` when diarized."""
    listed: dict[str, Any] = {
        "id": segment.id,
        "seek": segment.seek
        if segment.seek is not None
        else int(segment.start * FRAMES_PER_SECOND),
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": segment.tokens,
        "temperature": segment.temperature if segment.temperature is not None else temperature,
        "avg_logprob": segment.avg_logprob if segment.avg_logprob is not None else 0.0,
        "compression_ratio": segment.compression_ratio
        if segment.compression_ratio is not None
        else compression_ratio(segment.text),
        "no_speech_prob": segment.no_speech_prob if segment.no_speech_prob is not None else 0.0,
    }
    if segment.speaker is not None:
        listed["speaker"] = segment.speaker
    return listed


def verbose_body(transcript: Transcript, form: AudioForm, task: Task) -> dict[str, Any]:
    """verbose_json: task, language (its name; for a translation the output's, `english`, as
    OpenAI's API reference has it), duration, text, then segments and words as
    `timestamp_granularities[]` asks (segments when it names none), and usage."""
    language = "en" if task is Task.TRANSLATE else transcript.language
    body: dict[str, Any] = {
        "task": task.value,
        "language": LANGUAGE_NAMES.get(language, language),
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if form.wants_segments:
        body["segments"] = [
            verbose_segment(segment, form.temperature) for segment in transcript.segments
        ]
    if form.wants_words:
        body["words"] = [
            {"word": word.word, "start": word.start, "end": word.end}
            | ({} if word.speaker is None else {"speaker": word.speaker})
            for segment in transcript.segments
            for word in segment.words
        ]
    if task == Task.TRANSCRIBE:
        body["usage"] = usage(transcript)
    return body


def answer(transcript: Transcript, form: AudioForm, task: Task) -> Response:
    """The response for `form.response_format`."""
    fmt = form.response_format
    if fmt == ResponseFormat.JSON:
        body: dict[str, Any] = {"text": transcript.text}
        if task == Task.TRANSCRIBE:
            body["usage"] = usage(transcript)
        return JSONResponse(body)
    if fmt == ResponseFormat.VERBOSE_JSON:
        return JSONResponse(verbose_body(transcript, form, task))
    if fmt == ResponseFormat.TEXT:
        return PlainTextResponse(transcript.text + "\n")
    output = OutputFormat.SRT if fmt == ResponseFormat.SRT else OutputFormat.VTT
    return Response(render(transcript, output), media_type=media_type(output))
