"""The pyannote backend: pyannote.audio's diarization pipeline, through whisperx's wrapper."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from common.speakers import Turn
from worker.diarization.base import (
    DiarizationUnavailableError,
    DiarizerContext,
    SpeakerCount,
)
from worker.diarization.labels import relabel_in_order
from worker.engines.base import Audio

log = logging.getLogger(__name__)

PIPELINE_FILE = "config.yaml"


def cached_pipeline(pipeline: str, model_cache_dir: str) -> Path | None:
    """A local copy of `pipeline`: the path itself when it is a folder or config.yaml, else
    its snapshot in MODEL_CACHE_DIR's Hugging Face cache layout
    (`models--<org>--<name>/snapshots/<revision>/config.yaml`), newest first; None when there
    is none. Looks at the file system only."""
    path = Path(pipeline).expanduser()
    if path.is_file():
        return path
    if (path / PIPELINE_FILE).is_file():
        return path
    if pipeline.count("/") != 1:
        return None
    snapshots = Path(model_cache_dir) / f"models--{pipeline.replace('/', '--')}" / "snapshots"
    found = sorted(
        snapshots.glob(f"*/{PIPELINE_FILE}"), key=lambda file: file.stat().st_mtime, reverse=True
    )
    return found[0].parent if found else None


def pipeline_source(context: DiarizerContext) -> str:
    """What to load: a local copy of the pipeline when there is one (no network), else the
    Hub id when HF_TOKEN is set (downloaded into MODEL_CACHE_DIR). Raises
    DiarizationUnavailableError without touching the network when there is neither."""
    local = cached_pipeline(context.pyannote_pipeline, context.model_cache_dir)
    if local is not None:
        return str(local)
    if context.hf_token:
        return context.pyannote_pipeline
    raise DiarizationUnavailableError(
        f"pyannote cannot load: the pipeline {context.pyannote_pipeline!r} is not in "
        "MODEL_CACHE_DIR and no HF_TOKEN is set to download it"
    )


class PyannoteDiarizer:
    """pyannote.audio's pipeline (PYANNOTE_PIPELINE), loaded on the worker's device."""

    def __init__(self, context: DiarizerContext) -> None:
        source = pipeline_source(context)
        try:
            from whisperx.diarize import DiarizationPipeline
        except ImportError as error:
            raise DiarizationUnavailableError(f"pyannote cannot load: {error}") from None
        try:
            self._pipeline = DiarizationPipeline(
                model_name=source,
                token=context.hf_token,
                device=context.device,
                cache_dir=context.model_cache_dir,
            )
        except Exception as error:  # the Hub, a gated model, a broken cache: all say why
            raise DiarizationUnavailableError(
                f"pyannote cannot load {context.pyannote_pipeline!r}: "
                f"{type(error).__name__}: {error}"[:400]
            ) from None
        log.info("loaded the pyannote pipeline %s on %s", source, context.device)

    def diarize(self, audio: Audio, count: SpeakerCount) -> list[Turn]:
        """Who speaks when, per the pipeline (see `Diarizer.diarize`)."""
        if audio.size == 0:
            return []
        frame: Any = self._pipeline(
            audio,
            num_speakers=count.exact,
            min_speakers=count.minimum,
            max_speakers=count.maximum,
        )
        turns = [
            Turn(float(row.start), float(row.end), str(row.speaker))
            for row in frame.itertuples()
            if float(row.end) > float(row.start)
        ]
        return relabel_in_order(turns)
