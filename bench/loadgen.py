"""A small HTTP/1.1 keep-alive load generator on asyncio (uvloop when installed).

Requests are prepared bytes written on raw connections, so the client spends microseconds per
request and the server, not the generator, sets the pace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.harness import percentile

CONNECT_TIMEOUT_S = 10.0


@dataclass
class LoadResult:
    """What one load phase measured (only requests started after the warm-up count)."""

    seconds: float
    warm_up_s: float
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    client_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies_s, fraction) * 1000

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "concurrency": self.concurrency,
            "per_second": self.per_second,
            "p50_ms": self.latency_ms(0.5),
            "p99_ms": self.latency_ms(0.99),
            "statuses": self.statuses,
            "client_cpu_share": self.client_cpu_s / (self.seconds + self.warm_up_s),
        }


def request_bytes(
    method: str,
    path: str,
    port: int,
    body: bytes = b"",
    content_type: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A complete keep-alive request."""
    headers = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    headers += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    if body or method == "POST":
        headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    port: int, request: bytes, measure_from: float, until: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S
    )
    try:
        while (started := time.perf_counter()) < until:
            writer.write(request)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if started >= measure_from:
                result.latencies_s.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(
    port: int, request: bytes, concurrency: int, warm_up_s: float, seconds: float
) -> LoadResult:
    now = time.perf_counter()
    result = LoadResult(seconds=seconds, warm_up_s=warm_up_s, concurrency=concurrency)
    cpu_started = time.process_time()
    await asyncio.gather(
        *(
            _connection(port, request, now + warm_up_s, now + warm_up_s + seconds, result)
            for _ in range(concurrency)
        )
    )
    result.client_cpu_s = time.process_time() - cpu_started
    return result


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_load(
    port: int, request: bytes, concurrency: int, seconds: float, warm_up_s: float = 1.0
) -> LoadResult:
    """Send `request` over `concurrency` keep-alive connections for warm_up_s + seconds."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_load(port, request, concurrency, warm_up_s, seconds))
