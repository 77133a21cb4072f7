"""CPU_THREADS sizes every native thread pool of a worker, not only torch's."""

from __future__ import annotations

import os

import pytest

from worker.models import NATIVE_THREAD_VARIABLES, limit_native_threads


def test_every_pool_gets_the_worker_threads_unless_already_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in NATIVE_THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    limit_native_threads(1)
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "3"
