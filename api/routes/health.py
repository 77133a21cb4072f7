"""GET /health: can the service take and run jobs?"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from rq import Worker

from api.deps import QueueDep, SettingsDep
from api.schemas import Health

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(queue: QueueDep, settings: SettingsDep) -> Health | JSONResponse:
    """200 with the live worker count when Redis answers; 503 when it does not."""
    try:
        queue.connection.ping()
        workers = Worker.count(queue=queue)
        queued = queue.count
    except RedisError:
        body = Health(status="unavailable", redis=False, workers=0, queued=0)
        return JSONResponse(
            body.model_dump(),
            status_code=503,
            headers={"Retry-After": str(settings.redis_retry_after_s)},
        )
    return Health(status="ok", redis=True, workers=workers, queued=queued)
