"""GET /health: can the service take and run jobs? GET /livez: is this API process serving?"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.http.deps import QueueDep, SettingsDep
from api.http.schemas import Health, Liveness
from common.routing import live_workers, queue_stats, service_queue_names

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(queue: QueueDep, settings: SettingsDep) -> Health | JSONResponse:
    """200 with the ready workers, the jobs waiting and the engine/model pairs live workers
    serve, whenever Redis answers (with or without workers); 503 when it does not."""
    connection = queue.connection
    try:
        connection.ping()
        workers = live_workers(connection, queue.name)
        names = service_queue_names(connection, queue.name, settings.catalogue().routes())
        stats = queue_stats(connection, names)
    except RedisError:
        body = Health(status="unavailable", redis=False, workers=0, queued=0)
        return JSONResponse(
            body.model_dump(),
            status_code=503,
            headers={"Retry-After": str(settings.redis_retry_after_s)},
        )
    return Health(
        status="ok",
        redis=True,
        workers=workers,
        queued=sum(item.depth for item in stats),
        servable={item.route.id: item.workers for item in stats if item.route and item.workers},
    )


@router.get("/livez", response_model=Liveness)
async def livez() -> Liveness:
    """200 while this API process answers HTTP; touches nothing else (a liveness probe).

    Unlike /health it does not ask Redis, so an orchestrator does not restart API processes
    that are fine while Redis is away.
    """
    return Liveness()
