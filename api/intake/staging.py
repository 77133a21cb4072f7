"""Audio on its way to a job (received, downloaded or found in the store): discarded on the way
out unless its job took it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from api.errors import ServiceError
from common.storage import StagedUpload, StorageUnavailable

log = logging.getLogger(__name__)

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
STORE_RETRY_AFTER_S = 5


def disk_full(error: BaseException) -> bool:
    """Whether `error` says the volume (or the quota) is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


@contextlib.asynccontextmanager
async def staged_upload(staged: StagedUpload, what: str = "upload") -> AsyncIterator[StagedUpload]:
    """Own `staged` for the block: discarded on leaving unless kept, whatever happened.

    A full disk anywhere inside becomes a 507 about this `what`, an object store that cannot be
    reached (or refuses the service) a 503 with Retry-After; either way nothing is kept.
    """
    try:
        yield staged
    except OSError as error:
        if disk_full(error):
            raise ServiceError(507, f"the server has no space left for this {what}") from error
        raise
    except StorageUnavailable as error:
        log.warning("the object store failed during an %s: %s", what, error)
        raise ServiceError(
            503,
            f"the server's object store is unavailable for this {what}; retry shortly",
            {"Retry-After": str(STORE_RETRY_AFTER_S)},
        ) from None
    finally:
        if not staged.kept:
            # Shielded: a cancelled request still leaves nothing behind.
            await asyncio.shield(run_in_threadpool(staged.discard))
