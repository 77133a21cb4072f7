"""Part 4: requests per second and latency of the API under gunicorn, against a trivial route."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from api.keys.store import KeyLimits, KeyStore
from bench.harness import Options, restart_api
from bench.loadgen import LoadResult, request_bytes, run_load
from bench.report import Report, Row
from bench.uploads import forget_jobs
from common.contract import load_job, meta_of, store_meta
from config import Settings
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
    keyed = keyed_status(service, options, finished_job_id)
    open_status = results["GET /status/{id}"]
    report.add(
        Row("API", "GET /status/{id} with an API key: requests/s", "req/s", keyed.per_second,
            reference=open_status.per_second, reference_label="the same, keys off",
            note="REQUIRE_API_KEY=true, the job's own (non-admin) key with a per-minute limit")
    )  # fmt: skip
    report.add(
        Row("API", "GET /status/{id} with an API key: p50 latency", "ms", keyed.latency_ms(0.5),
            reference=open_status.latency_ms(0.5), reference_label="the same, keys off")
    )  # fmt: skip
    results["GET /status/{id} with an API key"] = keyed
    with_metrics, without, scrape = metrics_cost(service, options, finished_job_id)
    report.add(
        Row("API", "GET /status/{id} with metrics on: requests/s", "req/s", with_metrics.per_second,
            reference=without.per_second, reference_label="the same, METRICS_ENABLED=false",
            note=f"best of {METRICS_ROUNDS} alternating runs each; every request counted and "
                 "timed into gunicorn's multiprocess files")
    )  # fmt: skip
    report.add(
        Row("API", "GET /status/{id} with metrics on: p50 latency", "ms",
            with_metrics.latency_ms(0.5), reference=without.latency_ms(0.5),
            reference_label="the same, METRICS_ENABLED=false")
    )  # fmt: skip
    report.add(
        Row("API", "GET /metrics (a scrape, queues read from Redis): p50 latency", "ms",
            scrape.latency_ms(0.5), reference=trivial.latency_ms(0.5), reference_label=label,
            note="one connection, as Prometheus scrapes")
    )  # fmt: skip
    results["GET /status/{id} with metrics on"] = with_metrics
    results["GET /status/{id} with metrics off"] = without
    results["GET /metrics"] = scrape
    report.details["api"] = {
        "concurrency": CONCURRENCY,
        "web_workers": 2,
        **{name: result.summary() for name, result in results.items()},
    }


def keyed_status(service: Service, options: Options, job_id: str) -> LoadResult:
    """GET /status of the same finished job with API keys required, sent by the key that owns
    it, with a per-minute limit set (so the rate limiter's Redis round trip is counted too):
    key lookup, ownership, limiter and last-used record are what keys add to a request."""
    keys_env = {"REQUIRE_API_KEY": "true", "ADMIN_API_KEY": secrets.token_urlsafe(24)}
    restart_api(service, 2, **keys_env)
    connection = Redis(host="127.0.0.1", port=service.redis_port)
    try:
        queue_name = Settings().queue_name
        secret = KeyStore(connection, queue_name).create(
            "bench-status", limits=KeyLimits(rate_per_min=1_000_000_000)
        )
        job = load_job(Queue(queue_name, connection=connection, serializer=JSONSerializer), job_id)
        if job is None:
            raise RuntimeError(f"the finished job {job_id} is gone")
        meta = meta_of(job)
        meta.owner = "bench-status"  # submitted with keys off: hand it to the bench's key
        store_meta(job, meta)
    finally:
        connection.close()
    request = request_bytes(
        "GET", f"/status/{job_id}", service.api_port,
        extra_headers={"Authorization": f"Bearer {secret}"},
    )  # fmt: skip
    measured = run_load(service.api_port, request, CONCURRENCY, options.load_seconds)
    log.info("GET /status/{id} with an API key: %.0f requests/s", measured.per_second)
    if bad := {status: n for status, n in measured.statuses.items() if status != 200}:
        raise RuntimeError(f"GET /status/{{id}} with an API key answered {bad} under load")
    for name in keys_env:
        del service.env[name]
    restart_api(service, 2)
    return measured


METRICS_ROUNDS = 2
"""Alternating runs of GET /status with metrics on and off; the best of each is compared, as a
run is only ever slowed down by whatever else the machine does."""


def metrics_cost(
    service: Service, options: Options, job_id: str
) -> tuple[LoadResult, LoadResult, LoadResult]:
    """What metrics cost the API: GET /status of the same finished job with metrics on (the
    default) and with METRICS_ENABLED=false, alternately, the best run of each; and GET
    /metrics itself, scraped on one connection after every request above was counted."""
    scrape = run_load(
        service.api_port, request_bytes("GET", "/metrics", service.api_port), 1,
        options.load_seconds,
    )  # fmt: skip
    log.info("GET /metrics: %.1f ms at p50", scrape.latency_ms(0.5))
    runs: dict[bool, list[LoadResult]] = {True: [], False: []}
    for _ in range(METRICS_ROUNDS):
        for enabled in (False, True):
            restart_api(service, 2, METRICS_ENABLED=str(enabled).lower())
            request = request_bytes("GET", f"/status/{job_id}", service.api_port)
            measured = run_load(service.api_port, request, CONCURRENCY, options.load_seconds)
            log.info("GET /status/{id}, metrics %s: %.0f requests/s",
                     "on" if enabled else "off", measured.per_second)  # fmt: skip
            if bad := {status: n for status, n in measured.statuses.items() if status != 200}:
                raise RuntimeError(f"GET /status/{{id}} answered {bad} under load")
            runs[enabled].append(measured)
    del service.env["METRICS_ENABLED"]
    restart_api(service, 2)
    if bad := {status: n for status, n in scrape.statuses.items() if status != 200}:
        raise RuntimeError(f"GET /metrics answered {bad} under load")
    best = {enabled: max(each, key=lambda run: run.per_second) for enabled, each in runs.items()}
    return best[True], best[False], scrape
