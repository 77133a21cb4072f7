"""Model ids of the OpenAI routes: `whisper-1`, and `engine/model` for each engine and model."""

from __future__ import annotations

from dataclasses import dataclass

from api.jobs.submit import offered_models
from common.catalog import EngineName
from config import Settings

WHISPER_1 = "whisper-1"
"""OpenAI's own name: the server's DEFAULT_ENGINE with its DEFAULT_MODEL."""

CREATED = 1663718400
"""`created` of every listed model: Whisper's public release (2022-09-21), a fixed date, so that
every API process lists the same thing."""


@dataclass(frozen=True)
class ModelChoice:
    """What a model id names: an engine and one of its models."""

    engine: EngineName
    model: str

    @property
    def id(self) -> str:
        return f"{self.engine.value}/{self.model}"


def model_ids(settings: Settings) -> list[str]:
    """Every id this server answers to, `whisper-1` first, then engine by engine."""
    models = offered_models(settings)
    return [WHISPER_1, *(f"{engine.value}/{name}" for engine in EngineName for name in models)]


def resolve(model_id: str, settings: Settings, engine: EngineName | None = None) -> ModelChoice:
    """The engine and model an id names; a bare model name (and `whisper-1`) runs on `engine`,
    else DEFAULT_ENGINE.

    Raises LookupError for an id this server does not offer, ValueError when `engine` differs
    from the engine the id names.
    """
    offered = offered_models(settings)
    if model_id == WHISPER_1:
        return ModelChoice(engine or settings.default_engine, settings.default_model)
    named_engine, slash, name = model_id.rpartition("/")
    if not slash:
        if model_id not in offered:
            raise LookupError(model_id)
        return ModelChoice(engine or settings.default_engine, model_id)
    if named_engine not in {member.value for member in EngineName} or name not in offered:
        raise LookupError(model_id)
    choice = ModelChoice(EngineName(named_engine), name)
    if engine is not None and engine != choice.engine:
        raise ValueError(
            f"model {model_id!r} runs on {choice.engine.value!r}, not {engine.value!r}"
        )
    return choice
