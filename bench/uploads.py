"""Part 3: a 1 GiB upload through the API against `dd` to the same disk, and the API's memory;
then the same upload into object storage against boto3 writing it there directly."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.harness import Options, children, median, memory_kib, reset_peak_rss, restart_api
from bench.report import Report, Row, Target
from config import Settings
from tests.services import S3Server, Service, running_s3

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


# --- The same upload into object storage (STORAGE_BACKEND=s3) ----------------------------------

S3_BUCKET = "uploads"
REFERENCE_SCRIPT = """
import sys, time
import boto3
from botocore.config import Config
endpoint, access_key, secret_key, bucket, path = sys.argv[1:6]
client = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
    aws_secret_access_key=secret_key, region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}),
)
client.list_buckets()
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
started = time.perf_counter()
client.upload_file(path, bucket, "boto3-reference")
sys.stdout.write(f"{time.perf_counter() - started}\\n"); sys.stdout.flush()
"""
"""boto3 writing the file to the same bucket with its default transfer settings (8 MiB parts,
10 threads), in a process of its own so that its memory can be read like the API's."""


@dataclass(frozen=True)
class DirectUpload:
    seconds: float
    rss_growth_kib: int


def boto3_upload(s3: S3Server, source: Path) -> DirectUpload:
    """Time boto3's upload_file of `source` into the bucket; its process's peak RSS growth."""
    process = subprocess.Popen(
        [sys.executable, "-c", REFERENCE_SCRIPT, s3.endpoint_url, s3.access_key, s3.secret_key,
         S3_BUCKET, str(source)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the boto3 reference did not start")
        baseline = memory_kib(process.pid, "VmRSS")
        with RssSampler(process.pid) as sampler:
            process.stdin.write("\n")
            process.stdin.flush()
            seconds = float(process.stdout.readline())
    finally:
        process.stdin.close()
        process.wait(60)
    s3.client().delete_object(Bucket=S3_BUCKET, Key="boto3-reference")
    return DirectUpload(seconds, sampler.peak_kib - baseline)


def empty_bucket(s3: S3Server) -> None:
    """Delete every object and unfinished upload the runs left in the bucket."""
    client = s3.client()
    for key in s3.keys(S3_BUCKET):
        client.delete_object(Bucket=S3_BUCKET, Key=key.removeprefix("(unfinished) "))
    for upload in client.list_multipart_uploads(Bucket=S3_BUCKET).get("Uploads", []):
        client.abort_multipart_upload(
            Bucket=S3_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
        )


def measure_s3_upload(service: Service, report: Report, options: Options) -> None:
    """The 1 GiB upload with STORAGE_BACKEND=s3 into a real S3 server on loopback (weed server
    -s3), against boto3 writing the same file to the same server: throughput, and each
    process's peak RSS growth. The API runs one web worker, no transcription workers."""
    assert service.api is not None
    with running_s3(options.workdir / "s3", (S3_BUCKET,)) as s3:
        settings = {**API_LIMITS, **s3.env(S3_BUCKET)}
        restart_api(service, 1, **settings)
        try:
            _measure_s3_upload(service, report, options, s3)
        finally:
            for name in settings:
                service.env.pop(name, None)


def _measure_s3_upload(service: Service, report: Report, options: Options, s3: S3Server) -> None:
    assert service.api is not None
    (web_worker,) = children(service.api.popen.pid)
    source = write_wav(options.workdir / "upload-1gib.wav", UPLOAD_BYTES)
    fields = {"engine": options.engines[0], "model": options.model}
    try:
        warm = post_file(service.api_port, write_wav(options.workdir / "warm.wav", MIB), fields)
        if warm.status != 200:
            raise RuntimeError(f"warm-up upload refused: {warm.status} {warm.body[:300]!r}")
        forget_jobs(service)
        empty_bucket(s3)
        upload_s: list[float] = []
        growth_kib: list[int] = []
        direct: list[DirectUpload] = []
        for _ in range(1 if options.quick else 2):
            direct.append(boto3_upload(s3, source))
            baseline = memory_kib(web_worker, "VmRSS")
            peak_reset = reset_peak_rss(web_worker)
            with RssSampler(web_worker) as sampler:
                result = post_file(service.api_port, source, fields)
            if result.status != 200:
                raise RuntimeError(f"1 GiB upload refused: {result.status} {result.body[:300]!r}")
            peak = memory_kib(web_worker, "VmHWM") if peak_reset else sampler.peak_kib
            growth_kib.append(max(peak, sampler.peak_kib) - baseline)
            upload_s.append(result.seconds)
            forget_jobs(service)
            empty_bucket(s3)
    finally:
        source.unlink(missing_ok=True)
    size_mb = UPLOAD_BYTES / 1e6
    direct_growth_mib = max(run.rss_growth_kib for run in direct) / 1024
    report.add(
        Row(
            "uploads",
            "1 GiB upload to S3 (weed server -s3): API process peak RSS growth",
            "MiB",
            max(growth_kib) / 1024,
            reference=direct_growth_mib,
            reference_label="boto3 upload_file, default transfer settings",
            target=RSS_TARGET_MIB,
        )
    )
    report.add(
        Row(
            "uploads",
            "1 GiB upload to S3 (weed server -s3): throughput (upload, probe, enqueue)",
            "MB/s",
            size_mb / median(upload_s),
            reference=size_mb / median([run.seconds for run in direct]),
            reference_label="boto3 upload_file to the same bucket",
            target=THROUGHPUT_TARGET,
        )
    )
    report.details["uploads_s3"] = {
        "bytes": UPLOAD_BYTES,
        "part_size_mib": Settings().s3_part_size_mib,
        "upload_s": upload_s,
        "boto3_s": [run.seconds for run in direct],
        "rss_growth_kib": growth_kib,
        "boto3_rss_growth_kib": [run.rss_growth_kib for run in direct],
    }
