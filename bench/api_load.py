"""Part 4: requests per second and latency of the API under gunicorn, against a trivial route."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from bench.harness import Options
from bench.loadgen import LoadResult, request_bytes, run_load
from bench.report import Report, Row
from bench.uploads import forget_jobs
from tests.audio import write_tone_wav
from tests.services import Service

log = logging.getLogger(__name__)

CONCURRENCY = 16
"""Open connections per phase; the same for every route so the ratios compare like with like."""


def multipart_body(path: Path, fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body with `fields` and the file; returns it with its content type."""
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
    )
    parts += [path.read_bytes(), f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def api_throughput(
    service: Service, report: Report, options: Options, finished_job_id: str
) -> None:
    """GET /status of a finished job and POST /transcribe of a 1 s WAV, each against GET /livez.

    Run with no transcription workers: queued jobs and their uploads are dropped afterwards.
    """
    port = service.api_port
    small = write_tone_wav(options.workdir / "one-second.wav")
    body, content_type = multipart_body(small, {"engine": options.engines[0]})
    routes = {
        "GET /livez": request_bytes("GET", "/livez", port),
        "GET /status/{id}": request_bytes("GET", f"/status/{finished_job_id}", port),
        "POST /transcribe": request_bytes("POST", "/transcribe", port, body, content_type),
    }
    results: dict[str, LoadResult] = {}
    for name, request in routes.items():
        results[name] = run_load(port, request, CONCURRENCY, options.load_seconds)
        log.info("%s: %.0f requests/s", name, results[name].per_second)
        forget_jobs(service)
    trivial = results["GET /livez"]
    for name in ("GET /status/{id}", "POST /transcribe"):
        measured = results[name]
        bad = {status: n for status, n in measured.statuses.items() if status != 200}
        if bad:
            raise RuntimeError(f"{name} answered {bad} under load")
        label = "GET /livez"
        report.add(
            Row("API", f"{name}: requests/s", "req/s", measured.per_second,
                reference=trivial.per_second, reference_label=label)
        )  # fmt: skip
        for fraction, quantile in ((0.5, "p50"), (0.99, "p99")):
            report.add(
                Row("API", f"{name}: {quantile} latency", "ms", measured.latency_ms(fraction),
                    reference=trivial.latency_ms(fraction), reference_label=label)
            )  # fmt: skip
    report.details["api"] = {
        "concurrency": CONCURRENCY,
        "web_workers": 2,
        **{name: result.summary() for name, result in results.items()},
    }
