"""GET /health: can the service take and run jobs? GET /livez: is this API process serving?"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from rq import Worker

from api.http.deps import QueueDep, SettingsDep
from api.http.schemas import Health, Liveness
from common.fairness import waiting

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(queue: QueueDep, settings: SettingsDep) -> Health | JSONResponse:
    """200 with the live worker count when Redis answers; 503 when it does not."""
    try:
        queue.connection.ping()
        workers = Worker.count(queue=queue)
        queued = queue.count + waiting(queue.connection, queue.name)
    except RedisError:
        body = Health(status="unavailable", redis=False, workers=0, queued=0)
        return JSONResponse(
            body.model_dump(),
            status_code=503,
            headers={"Retry-After": str(settings.redis_retry_after_s)},
        )
    return Health(status="ok", redis=True, workers=workers, queued=queued)


@router.get("/livez", response_model=Liveness)
async def livez() -> Liveness:
    """200 while this API process answers HTTP; touches nothing else (a liveness probe).

    Unlike /health it does not ask Redis, so an orchestrator does not restart API processes
    that are fine while Redis is away.
    """
    return Liveness()
