"""Part 3: a 1 GiB upload through the API against `dd` to the same disk, and the API's memory."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.harness import Options, children, median, memory_kib, reset_peak_rss
from bench.report import Report, Row, Target
from config import Settings
from tests.services import Service

log = logging.getLogger(__name__)

GIB = 1 << 30
MIB = 1 << 20
UPLOAD_BYTES = GIB
SAMPLE_RATE = 16_000
RANDOM_BLOCK_BYTES = 16 * MIB
RSS_SAMPLE_INTERVAL_S = 0.01
RSS_TARGET_MIB = Target("max", 64.0, on_service=True)
THROUGHPUT_TARGET = Target("min", 0.5)

API_LIMITS = {
    "MAX_FILE_SIZE": str(2 * GIB),
    # A 1 GiB 16 kHz 16-bit mono WAV holds about 9.3 hours.
    "MAX_AUDIO_DURATION_S": str(24 * 3600.0),
}
"""Settings the API needs to accept the benchmark's upload."""


def write_wav(path: Path, total_bytes: int) -> Path:
    """A valid 16 kHz mono 16-bit WAV of exactly `total_bytes` bytes, noise as its samples."""
    data_bytes = (total_bytes - 44) & ~1
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1,
        SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16, b"data", data_bytes,
    )  # fmt: skip
    block = os.urandom(RANDOM_BLOCK_BYTES)
    with path.open("wb") as handle:
        handle.write(header)
        left = data_bytes
        while left:
            left -= handle.write(block[: min(left, len(block))])
    return path


@dataclass(frozen=True)
class UploadResult:
    status: int
    body: bytes
    seconds: float


def post_file(port: int, path: Path, fields: dict[str, str]) -> UploadResult:
    """POST a multipart upload, the file sent with sendfile(2) so the client copies nothing."""
    boundary = secrets.token_hex(16)
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head.encode()) + path.stat().st_size + len(tail)
    request = (
        f"POST /transcribe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n{head}"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, path.open("rb") as handle:
        sock.sendall(request)
        sock.sendfile(handle)
        sock.sendall(tail)
        response = bytearray()
        while chunk := sock.recv(65536):
            response += chunk
    seconds = time.perf_counter() - started
    status_line, _, rest = bytes(response).partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return UploadResult(int(status_line.split()[1]), body, seconds)


class RssSampler:
    """Samples a process's resident memory in a thread; `peak_kib` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = memory_kib(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            self.peak_kib = max(self.peak_kib, memory_kib(self.pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def dd_seconds(source: Path, target: Path) -> float:
    """Time `dd` copying `source` to `target` with 1 MiB blocks and a final fsync."""
    started = time.perf_counter()
    subprocess.run(
        ["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def forget_jobs(service: Service) -> None:
    """Drop queued jobs and every upload: no worker should ever transcribe these."""
    connection = Redis(host="127.0.0.1", port=service.redis_port)
    try:
        queue_name = Settings().queue_name
        Queue(queue_name, connection=connection, serializer=JSONSerializer).empty()
    finally:
        connection.close()
    for path in service.upload_dir.iterdir():
        path.unlink()


def measure_upload(service: Service, report: Report, options: Options) -> None:
    """With one gunicorn worker and no transcription workers: RSS growth and throughput."""
    assert service.api is not None
    (web_worker,) = children(service.api.popen.pid)
    source = write_wav(options.workdir / "upload-1gib.wav", UPLOAD_BYTES)
    fields = {"engine": options.engines[0], "model": options.model}
    try:
        # Warm the upload path (imports, buffers) with a small file before the baseline.
        warm = post_file(service.api_port, write_wav(options.workdir / "warm.wav", MIB), fields)
        if warm.status != 200:
            raise RuntimeError(f"warm-up upload refused: {warm.status} {warm.body[:300]!r}")
        forget_jobs(service)
        upload_s: list[float] = []
        dd_s: list[float] = []
        growth_kib: list[int] = []
        sampled_kib: list[int] = []
        for _ in range(1 if options.quick else 2):
            dd_s.append(dd_seconds(source, service.upload_dir / "dd-reference"))
            baseline = memory_kib(web_worker, "VmRSS")
            peak_reset = reset_peak_rss(web_worker)
            with RssSampler(web_worker) as sampler:
                result = post_file(service.api_port, source, fields)
            if result.status != 200:
                raise RuntimeError(f"1 GiB upload refused: {result.status} {result.body[:300]!r}")
            peak = memory_kib(web_worker, "VmHWM") if peak_reset else sampler.peak_kib
            growth_kib.append(max(peak, sampler.peak_kib) - baseline)
            sampled_kib.append(sampler.peak_kib - baseline)
            upload_s.append(result.seconds)
            forget_jobs(service)
    finally:
        source.unlink(missing_ok=True)
    size_mb = UPLOAD_BYTES / 1e6
    report.add(
        Row(
            "uploads",
            "1 GiB upload: API process peak RSS growth",
            "MiB",
            max(growth_kib) / 1024,
            target=RSS_TARGET_MIB,
        )
    )
    report.add(
        Row(
            "uploads",
            "1 GiB upload: throughput (upload, probe, enqueue)",
            "MB/s",
            size_mb / median(upload_s),
            reference=size_mb / median(dd_s),
            reference_label="dd bs=1M conv=fsync",
            target=THROUGHPUT_TARGET,
        )
    )
    report.details["uploads"] = {
        "bytes": UPLOAD_BYTES,
        "upload_s": upload_s,
        "dd_s": dd_s,
        "rss_growth_kib": growth_kib,
        "rss_growth_sampled_kib": sampled_kib,
    }
