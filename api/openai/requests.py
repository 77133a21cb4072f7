"""The multipart form of `/v1/audio/transcriptions` and `/translations`, turned into a job's
fields: OpenAI's names and ours, OpenAI's unknown fields ignored as its servers ignore them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.errors import InvalidField, invalid_body
from api.http.schemas import TranscribeForm
from api.openai.errors import OpenAIError, model_not_found
from api.openai.models import resolve
from common.catalog import EngineName, Language
from common.contract import Task
from config import Settings


class ResponseFormat(StrEnum):
    """OpenAI's `response_format` values this server writes."""

    JSON = "json"
    TEXT = "text"
    SRT = "srt"
    VERBOSE_JSON = "verbose_json"
    VTT = "vtt"


class Granularity(StrEnum):
    """What `timestamp_granularities[]` may ask for (with verbose_json)."""

    WORD = "word"
    SEGMENT = "segment"


GRANULARITIES_FIELD = "timestamp_granularities[]"


class AudioForm(BaseModel):
    """The text fields OpenAI defines, and the options of our own API accepted beside them."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    model: str = Field(min_length=1, max_length=200)
    language: Language | None = None
    prompt: str | None = Field(default=None, max_length=1000)
    response_format: ResponseFormat = ResponseFormat.JSON
    temperature: float = Field(default=0.0, ge=0, le=1)
    timestamp_granularities: list[Granularity] = Field(default_factory=list)
    stream: bool = False
    # Our own options, as extra form fields.
    engine: EngineName | None = None
    hotwords: str | None = Field(default=None, max_length=500)
    vad: bool | None = None
    beam_size: int | None = Field(default=None, ge=1, le=10)
    word_timestamps: bool | None = None
    diarize: bool = False
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    @property
    def wants_words(self) -> bool:
        return Granularity.WORD in self.timestamp_granularities

    @property
    def wants_segments(self) -> bool:
        """verbose_json's segments: asked for, or no granularity named (OpenAI's default)."""
        return (
            not self.timestamp_granularities or Granularity.SEGMENT in self.timestamp_granularities
        )


def parse_form(fields: dict[str, str], repeated: dict[str, list[str]], task: Task) -> AudioForm:
    """Validate the text fields; raises FastAPI's RequestValidationError (a 400 on /v1)."""
    data: dict[str, Any] = {name: value for name, value in fields.items() if value.strip()}
    data.pop(GRANULARITIES_FIELD, None)
    granularities = repeated.get(GRANULARITIES_FIELD) or repeated.get("timestamp_granularities")
    if granularities:
        data["timestamp_granularities"] = [value for value in granularities if value.strip()]
    if task == Task.TRANSLATE:
        data.pop("language", None)  # OpenAI's translations take no language: the output is English
        data.pop("timestamp_granularities", None)
    try:
        form = AudioForm.model_validate(data)
    except ValidationError as error:
        raise invalid_body(error) from None
    if form.timestamp_granularities and form.response_format != ResponseFormat.VERBOSE_JSON:
        raise OpenAIError(
            400,
            "timestamp_granularities[] needs response_format=verbose_json",
            param="timestamp_granularities",
            code="invalid_value",
        )
    return form


def job_fields(form: AudioForm, task: Task, settings: Settings) -> TranscribeForm:
    """The job's fields as `POST /transcribe` takes them.

    `temperature` reaches the timestamped engine only (whisperx does not sample, and OpenAI's
    clients send it routinely, so it is dropped there instead of refused). Word timings are
    made when `timestamp_granularities[]` asks for words, or our `word_timestamps` says so.
    """
    try:
        choice = resolve(form.model, settings, form.engine)
    except LookupError:
        raise model_not_found(form.model) from None
    except ValueError as conflict:
        raise OpenAIError(400, str(conflict), param="engine", code="invalid_value") from None
    values: dict[str, Any] = {
        "engine": choice.engine,
        "model": choice.model,
        "language": form.language,
        "task": task,
        "initial_prompt": form.prompt,
        "hotwords": form.hotwords,
        "beam_size": form.beam_size,
        "word_timestamps": form.wants_words
        if form.word_timestamps is None
        else form.word_timestamps,
    }
    if form.vad is not None:
        values["vad"] = form.vad
    if form.diarize:
        values["diarize"] = True
    for name in SPEAKER_COUNTS:
        values[name] = getattr(form, name)
    if form.temperature and choice.engine == EngineName.TIMESTAMPED:
        values["temperature"] = form.temperature
    try:
        return TranscribeForm.model_validate(values)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        if first["loc"]:
            raise InvalidField(str(first["loc"][-1]), first["msg"], first.get("input")) from None
        # A check across fields (the speaker counts): the first count given is at fault.
        field = next((name for name in SPEAKER_COUNTS if values[name] is not None), "diarize")
        raise InvalidField(field, first["msg"], values[field]) from None


SPEAKER_COUNTS = ("num_speakers", "min_speakers", "max_speakers")
"""The speaker-count fields, checked with `diarize` by `TranscribeOptions`."""


OPENAI_PARAM = {"initial_prompt": "prompt", "task": "model"}
"""Our field names as OpenAI's clients know them, for `param` in a 400 (a translation refused
for an English-only model is the model's fault: the request has no `task`)."""


def as_openai_field(error: InvalidField) -> InvalidField:
    """The same error, naming the field as the OpenAI request called it."""
    error.field = OPENAI_PARAM.get(error.field, error.field)
    return error
