"""GET /v1/models and /v1/models/{id}: the model ids the OpenAI routes accept, in OpenAI's shape."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.http.deps import QueueDep, SettingsDep
from api.openai.errors import documented, model_not_found
from api.openai.models import CREATED, ModelChoice, model_ids, resolve
from common.routing import serving

router = APIRouter(prefix="/v1/models", tags=["openai"])


class Model(BaseModel):
    """One model id, as OpenAI lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int = CREATED
    owned_by: str
    workers: int = Field(
        default=0,
        description=(
            "Live workers that serve this engine and model now (not in OpenAI's shape); 0 means "
            "its jobs are refused while other workers are live, unless QUEUE_UNSERVED_MODELS."
        ),
    )


class ModelList(BaseModel):
    """OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[Model]


def _models(model_ids: list[str], settings: SettingsDep, queue: QueueDep) -> list[Model]:
    choices: list[ModelChoice] = [resolve(model_id, settings) for model_id in model_ids]
    workers = serving(queue.connection, queue.name, sorted({c.route for c in choices}))
    return [
        Model(id=model_id, owned_by=choice.engine.value, workers=workers[choice.route])
        for model_id, choice in zip(model_ids, choices, strict=True)
    ]


@router.get("", response_model=ModelList, summary="Model ids (OpenAI-compatible)")
def list_models(settings: SettingsDep, queue: QueueDep) -> ModelList:
    """`whisper-1` (DEFAULT_ENGINE with DEFAULT_MODEL), then `engine/model` for each engine and
    each model this server offers, each with the live workers serving it; a bare model name is
    also accepted, on DEFAULT_ENGINE."""
    return ModelList(data=_models(model_ids(settings), settings, queue))


@router.get(
    "/{model_id:path}",
    response_model=Model,
    summary="One model id (OpenAI-compatible)",
    responses=documented({404: "`model_not_found`."}),
)
def get_model(model_id: str, settings: SettingsDep, queue: QueueDep) -> Model:
    """The model, or OpenAI's 404 `model_not_found`."""
    try:
        (model,) = _models([model_id], settings, queue)
    except LookupError:
        raise model_not_found(model_id) from None
    return model
