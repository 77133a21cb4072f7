"""Live events (issue 14): the delay from a segment's decoding to its event at an SSE client."""

from __future__ import annotations

import json
import logging
import time

import httpx
from httpx_sse import connect_sse

from bench.harness import MULTILINGUAL, Options, median, percentile, submit
from bench.report import Report, Row, Target
from common.events import parse_entry_id

log = logging.getLogger(__name__)

EVENT_DELAY_TARGET_MS = Target("max", 100.0, on_service=True)


def segment_delays_ms(client: httpx.Client, engine: str, model: str) -> list[float]:
    """One multilingual.mp3 job followed from its submission by an SSE client (httpx-sse):
    for each segment event, when it arrived less when Redis stored it.

    The entry id's milliseconds are Redis's clock at XADD, which the worker sends from the
    engine's callback as soon as it has the segment; client and Redis share this host's clock,
    so the difference is the delay from decoding to the client (to the millisecond). Segments
    published before the client connected (none, unless the job outran the connection) are
    left out: they are a replay, not a delay.
    """
    job_id = submit(client, MULTILINGUAL, engine, model)
    connected_ms = time.time() * 1000
    delays: list[float] = []
    status = ""
    with connect_sse(client, "GET", f"/jobs/{job_id}/events") as source:
        source.response.raise_for_status()
        for sse in source.iter_sse():
            arrived_ms = time.time() * 1000
            if sse.event == "status":
                status = str(json.loads(sse.data)["status"])
            parsed = parse_entry_id(sse.id)
            if sse.event == "segment" and parsed is not None and parsed[0] >= connected_ms:
                delays.append(arrived_ms - parsed[0])
    if status != "finished":
        raise RuntimeError(f"events job {job_id} on {engine} ended {status or 'without a status'}")
    return delays


def event_delay(report: Report, client: httpx.Client, options: Options) -> None:
    """Median and p95 of the decoding-to-client delay over every segment of `options.runs`
    multilingual.mp3 jobs per engine."""
    for engine in options.engines:
        delays: list[float] = []
        for _ in range(options.runs):
            delays += segment_delays_ms(client, engine, options.model)
        if not delays:
            raise RuntimeError(f"no live segment event came for {engine}")
        label = f"{engine}: segment decoded to its SSE event at a client"
        report.add(
            Row(
                "events",
                f"{label}, median",
                "ms",
                median(delays),
                target=EVENT_DELAY_TARGET_MS,
                note=f"{len(delays)} segments of {options.runs} x {MULTILINGUAL.name}",
            )
        )
        report.add(Row("events", f"{label}, p95", "ms", percentile(delays, 0.95)))
        report.details.setdefault("events", {})[engine] = {"segment_delays_ms": delays}
