"""GET /v1/models and /v1/models/{id}: the model ids the OpenAI routes accept, in OpenAI's shape."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.http.deps import SettingsDep
from api.openai.errors import documented, model_not_found
from api.openai.models import CREATED, model_ids, resolve

router = APIRouter(prefix="/v1/models", tags=["openai"])


class Model(BaseModel):
    """One model id, as OpenAI lists it."""

    id: str
    object: Literal["model"] = "model"
    created: int = CREATED
    owned_by: str


class ModelList(BaseModel):
    """OpenAI's list shape."""

    object: Literal["list"] = "list"
    data: list[Model]


def _model(model_id: str, settings: SettingsDep) -> Model:
    return Model(id=model_id, owned_by=resolve(model_id, settings).engine.value)


@router.get("", response_model=ModelList, summary="Model ids (OpenAI-compatible)")
def list_models(settings: SettingsDep) -> ModelList:
    """`whisper-1` (DEFAULT_ENGINE with DEFAULT_MODEL), then `engine/model` for each engine and
    each model this server offers; a bare model name is also accepted, on DEFAULT_ENGINE."""
    return ModelList(data=[_model(model_id, settings) for model_id in model_ids(settings)])


@router.get(
    "/{model_id:path}",
    response_model=Model,
    summary="One model id (OpenAI-compatible)",
    responses=documented({404: "`model_not_found`."}),
)
def get_model(model_id: str, settings: SettingsDep) -> Model:
    """The model, or OpenAI's 404 `model_not_found`."""
    try:
        return _model(model_id, settings)
    except LookupError:
        raise model_not_found(model_id) from None
