"""How a failed job is recorded: a one-line reason for people, and no retry where none can help."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from common.contract import meta_of, store_meta
from worker.audio import AudioDecodeError
from worker.engines import UnknownEngineError
from worker.engines.base import ModelLoadError
from worker.stopping import JobStopped

EXPLAINED_ERRORS: tuple[type[BaseException], ...] = (
    AudioDecodeError,
    JobStopped,
    ModelLoadError,
    UnknownEngineError,
)
"""Failures whose message is written for the client as it stands."""

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    *EXPLAINED_ERRORS,
    JobTimeoutException,
    TypeError,
    ValueError,
)
"""Failures that another attempt cannot fix: no retry is spent on them."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an engine ran out of GPU memory: torch's OutOfMemoryError, or CTranslate2's and
    cuDNN's RuntimeError saying so (neither library has a class of its own for it)."""
    if type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return (
        isinstance(error, RuntimeError)
        and "out of memory" in text
        and ("cuda" in text or "cudnn" in text or "cublas" in text)
    )


def out_of_memory_message(error: BaseException) -> str:
    """What a client is told when its job ran out of GPU memory."""
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return (
        "the GPU ran out of memory running this job; use a smaller model, or ask the operator "
        f"for a smaller BATCH_SIZE or a worker with more GPU memory ({detail})"
    )


def readable_failure(exc_type: type[BaseException], exc_value: BaseException) -> str:
    """One line for the job's status: what went wrong, without a traceback."""
    if is_out_of_memory(exc_value):
        return out_of_memory_message(exc_value)
    if issubclass(exc_type, AbandonedJobError):
        return "the worker running this job stopped (crashed, killed or lost) before it finished"
    if issubclass(exc_type, JobTimeoutException):
        return f"the job ran past its time limit: {exc_value}"
    if issubclass(exc_type, EXPLAINED_ERRORS):
        return str(exc_value)
    return f"internal error: {exc_type.__name__}: {exc_value}"[:500]


def record_failure(
    job: Job,
    exc_type: type[BaseException],
    exc_value: BaseException,
    _traceback: TracebackType | Any,
) -> bool:
    """rq exception handler: a readable error in the job's meta, and no retry for a permanent
    error. Returns True so rq's own handling (retry or fail) continues."""
    meta = meta_of(job)
    meta.error = readable_failure(exc_type, exc_value)
    if isinstance(exc_value, PERMANENT_ERRORS) or is_out_of_memory(exc_value):
        job.retries_left = 0  # the same job on the same GPU would run out again
    with contextlib.suppress(RedisError):
        store_meta(job, meta)
    return True
