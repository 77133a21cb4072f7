"""The reference for end-to-end times: the worker's engine classes, warm, called in this process."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from common.contract import TranscribeOptions
from common.transcript import Transcript
from config import Settings
from worker.audio import decode_audio
from worker.runtime import Runtime


def _no_progress(stage: str, percent: float | None) -> None:
    del stage, percent


class DirectEngines:
    """Loads engines as a worker would (same settings, device, threads) and times calls to them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime.from_settings(settings)
        if self.runtime.device == "cpu":
            import torch

            # What `python -m worker` does before its first job.
            torch.set_num_threads(self.runtime.context.cpu_threads)

    def load(self, engine: str, model: str) -> float:
        """Load (once) and return the seconds it took; 0.0 when already warm."""
        _, load_s = self.runtime.cache.get(self.runtime.spec(engine, model))
        return load_s

    def close(self) -> None:
        """Drop the loaded engines (and, on a GPU, their memory) before the workers need it."""
        self.runtime.cache = type(self.runtime.cache)(self.runtime.load, 1)
        gc.collect()
        if self.runtime.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def transcribe(self, engine: str, model: str, audio_path: Path) -> tuple[float, Transcript]:
        """Seconds to decode and transcribe `audio_path` as the job function does; the result."""
        impl, _ = self.runtime.cache.get(self.runtime.spec(engine, model))
        started = time.perf_counter()
        audio = decode_audio(
            audio_path,
            max_duration_s=self.settings.max_audio_duration_s,
            timeout_s=float(self.settings.job_timeout_max_s),
        )
        transcript = impl.transcribe(audio, TranscribeOptions(), _no_progress)
        return time.perf_counter() - started, transcript
