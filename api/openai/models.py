"""Model ids of the OpenAI routes: `whisper-1`, and `engine/model` for each engine and model."""

from __future__ import annotations

from dataclasses import dataclass

from common.catalog import EngineName, Route
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
        return self.route.id

    @property
    def route(self) -> Route:
        """The engine and model, as workers serve them."""
        return Route(self.engine, self.model)


def model_ids(settings: Settings) -> list[str]:
    """Every id this server answers to, `whisper-1` first, then engine by engine."""
    return [WHISPER_1, *(route.id for route in settings.catalogue().routes())]


def resolve(model_id: str, settings: Settings, engine: EngineName | None = None) -> ModelChoice:
    """The engine and model an id names; a bare model name (and `whisper-1`) runs on `engine`,
    else DEFAULT_ENGINE.

    Raises LookupError for an id this server does not offer, ValueError when `engine` differs
    from the engine the id names.
    """
    catalogue = settings.catalogue()
    if model_id == WHISPER_1:
        return ModelChoice(engine or settings.default_engine, settings.default_model)
    if "/" not in model_id:
        if model_id not in catalogue.models():
            raise LookupError(model_id)
        return ModelChoice(engine or settings.default_engine, model_id)
    try:
        route = Route.parse(model_id)
    except ValueError:
        raise LookupError(model_id) from None
    if not catalogue.offers(route):
        raise LookupError(model_id)
    choice = ModelChoice(route.engine, route.model)
    if engine is not None and engine != choice.engine:
        raise ValueError(
            f"model {model_id!r} runs on {choice.engine.value!r}, not {engine.value!r}"
        )
    return choice
