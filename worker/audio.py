"""Fetches a job's audio from the store and decodes it to 16 kHz mono float32 with ffmpeg,
confined to that local file."""

from __future__ import annotations

import collections
import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from common.contract import JobRequest
from common.media import FFMPEG_SAFETY_ARGS
from common.storage import AudioMissing, AudioTooLarge, storage_of
from config import Settings
from worker.engines.base import SAMPLE_RATE, Audio

READ_CHUNK_BYTES = 1 << 20
"""Bytes of 16-bit samples read from ffmpeg at a time (even, so no sample is split)."""

STDERR_TAIL_LINES = 20


class AudioDecodeError(RuntimeError):
    """ffmpeg could not decode the file as audio, or it is longer than the server accepts."""


def audio_gone(request: JobRequest) -> str:
    """Why a job cannot run: its audio is no longer in the store."""
    if request.keep_audio:
        return f"the audio object {request.audio_path} is gone (deleted since it was submitted)"
    return "the uploaded file is gone (removed after an earlier attempt, or by the sweeper)"


def audio_exists(settings: Settings, request: JobRequest) -> bool:
    """Whether the job's audio is still in its store (a cheap look before the model loads)."""
    return storage_of(settings).for_ref(request.audio_path).exists(request.audio_path)


@contextlib.contextmanager
def fetched_audio(settings: Settings, request: JobRequest) -> Iterator[Path]:
    """A local file with the job's audio for the block: the upload itself in UPLOAD_DIR, or a
    scratch copy of its object, removed on leaving. AudioDecodeError when it is gone, or larger
    than MAX_FILE_SIZE (an input object replaced since its job was accepted)."""
    store = storage_of(settings).for_ref(request.audio_path)
    with contextlib.ExitStack() as scratch:
        try:
            path = scratch.enter_context(
                store.local_copy(request.audio_path, settings.max_file_size)
            )
        except AudioMissing:
            raise AudioDecodeError(audio_gone(request)) from None
        except AudioTooLarge as error:
            raise AudioDecodeError(str(error)) from None
        yield path


def _keep_tail(stream: IO[bytes], tail: collections.deque[bytes]) -> None:
    for line in stream:
        tail.append(line)


def decode_audio(path: Path, max_duration_s: float, timeout_s: float) -> Audio:
    """The file's first audio stream as mono float32 samples at SAMPLE_RATE.

    Memory is bounded by `max_duration_s` whatever the file claims: ffmpeg is told to stop one
    second past the cap, its output is read in chunks, and reading stops (ffmpeg is killed) as
    soon as the cap is passed, so a small file whose headers lie, or that decodes to hours of
    silence, cannot make the worker hold more than the cap's worth of samples. Audio longer than
    the cap is refused with AudioDecodeError, as the API refuses it when the container says so.
    """
    max_samples = int(max_duration_s * SAMPLE_RATE)
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-threads", "0",
        *FFMPEG_SAFETY_ARGS,
        "-i", f"file:{path}",
        "-map", "0:a:0", "-t", f"{max_duration_s + 1:.3f}",
        "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-acodec", "pcm_s16le",
        "pipe:1",
    ]  # fmt: skip
    # Its own session: a signal to the worker's process group (Ctrl-C, a supervisor's SIGTERM)
    # is the worker's to handle, and must not kill the decode of the job it lets finish.
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stderr_tail: collections.deque[bytes] = collections.deque(maxlen=STDERR_TAIL_LINES)
    stderr_reader = threading.Thread(
        target=_keep_tail, args=(process.stderr, stderr_tail), name="ffmpeg-stderr", daemon=True
    )
    stderr_reader.start()
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            process.kill()

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    chunks: list[bytes] = []
    total_samples = 0
    try:
        while chunk := process.stdout.read(READ_CHUNK_BYTES):
            chunks.append(chunk)
            total_samples += len(chunk) // 2
            if total_samples > max_samples:
                raise AudioDecodeError(
                    f"the audio is longer than the {max_duration_s:.0f} s limit "
                    "(MAX_AUDIO_DURATION_S)"
                )
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        stderr_reader.join(timeout=5)
        process.stderr.close()
    if timed_out.is_set():
        raise AudioDecodeError(f"decoding took longer than {timeout_s:.0f} s")
    if returncode != 0:
        lines = b"".join(stderr_tail).decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1][:300] if lines else f"ffmpeg exited with {returncode}"
        raise AudioDecodeError(f"the audio could not be decoded: {reason}")
    if total_samples == 0:
        raise AudioDecodeError("the file decodes to no audio samples")
    audio = np.empty(total_samples, dtype=np.float32)
    offset = 0
    while chunks:
        chunk = chunks.pop(0)
        samples = np.frombuffer(chunk, dtype=np.int16, count=len(chunk) // 2)
        np.multiply(samples, np.float32(1 / 32768), out=audio[offset : offset + samples.size])
        offset += samples.size
    return audio
