"""A real Prometheus server for tests (Debian's `prometheus`, installed by `make setup`): a
generated config, a short scrape interval, PromQL through its HTTP API."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from tests.services import Proc, Service, free_port, wait_until

SCRAPE_INTERVAL_S = 1


@dataclass
class Prometheus:
    """A running Prometheus and the address of its HTTP API."""

    url: str
    proc: Proc

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now (its samples: labels and value)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The one sample's value of `expr`, or None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} has several series: {result}"
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, timeout_s: float = 60) -> float:
        """Wait until `expr` (a filtering comparison, e.g. `x >= 3`) has a sample; its value."""

        def sampled() -> list[float] | None:
            value = self.value(expr)
            return None if value is None else [value]

        found: list[float] = wait_until(sampled, timeout_s, f"PromQL `{expr}`", 0.5)
        return found[0]


def prometheus_binary() -> str:
    """The prometheus command, or a skip naming how to get it."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (make setup installs Debian's package)")
    return binary


@contextlib.contextmanager
def running_prometheus(service: Service, jobs: Mapping[str, Sequence[str]]) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port scraping each job's `host:port` targets every
    SCRAPE_INTERVAL_S, in the service's folder and process list (stopped with it)."""
    root = service.root / "prometheus"
    root.mkdir(exist_ok=True)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": list(targets)}]}
            for name, targets in jobs.items()
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = service.start_process(
        "prometheus",
        [
            prometheus_binary(), f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        ],
    )  # fmt: skip
    prometheus = Prometheus(url=f"http://127.0.0.1:{port}", proc=proc)
    wait_until(lambda: httpx.get(f"{prometheus.url}/-/ready").status_code == 200, 60, "Prometheus")
    try:
        yield prometheus
    finally:
        proc.stop()
