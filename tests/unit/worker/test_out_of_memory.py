"""A job that runs out of GPU memory fails alone, readably, unretried; the worker goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from rq import Queue

from common.contract import TranscribeOptions, load_job
from common.job_status import describe_job
from common.transcript import Transcript
from config import Settings
from tests.fakes import enqueue_audio, work
from worker.engines import base
from worker.engines.fake import FakeEngine
from worker.failures import is_out_of_memory, readable_failure
from worker.runtime import Runtime

HUNGRY_MODEL = "hungry"


class HungryEngine(FakeEngine):
    """The fake engine, except that the `hungry` model runs out of GPU memory mid-job."""

    def transcribe(
        self,
        audio: base.Audio,
        options: TranscribeOptions,
        progress: base.ProgressCallback,
        on_segment: base.SegmentCallback = base.discard_segment,
    ) -> Transcript:
        if self._spec.model == HUNGRY_MODEL:
            raise RuntimeError("CUDA failed with error out of memory")
        return super().transcribe(audio, options, progress, on_segment)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("CUDA failed with error out of memory"), True),  # CTranslate2
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),  # torch
        (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory."), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED out of memory"), True),
        (MemoryError(), False),  # the host's, not the GPU's
        (RuntimeError("shape mismatch"), False),
    ],
)
def test_gpu_memory_errors_are_recognised(error: BaseException, expected: bool) -> None:
    assert is_out_of_memory(error) is expected


def test_the_message_says_what_to_do() -> None:
    error = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
    message = readable_failure(RuntimeError, error)
    assert message.startswith("the GPU ran out of memory running this job; use a smaller model")
    assert message.endswith("(CUDA out of memory. Tried to allocate 2.00 GiB)")


def test_one_job_out_of_memory_fails_alone(
    queue: Queue, worker_settings: Settings, tone_wav: Path
) -> None:
    worker_settings.job_retries = 2
    engines = {"whisperx": f"{__name__}:HungryEngine"}
    runtime = Runtime.from_settings(worker_settings, engines=engines)
    hungry = enqueue_audio(queue, worker_settings, tone_wav, model=HUNGRY_MODEL).id
    fine = enqueue_audio(queue, worker_settings, tone_wav).id
    work(queue, runtime)
    failed, finished = (load_job(queue, job_id) for job_id in (hungry, fine))
    assert failed is not None
    assert finished is not None
    status = describe_job(failed)
    assert status.status == "failed"
    assert status.error is not None
    assert status.error.startswith("the GPU ran out of memory running this job")
    assert failed.retries_left == 0  # not tried again on the same GPU
    assert describe_job(finished).status == "finished"
