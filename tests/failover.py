"""Redis failover under load: jobs are submitted all along while the master is killed.

`python -m tests.failover` starts a master, two replicas and three Sentinels on loopback
(tests.services.running_redis_ha), an API and a worker that find the master through the
Sentinels and accept a job only once a replica holds it (REDIS_MIN_REPLICAS=1). Client threads
submit short real jobs (an Idempotency-Key each, retrying 503s) before, during and after a
SIGKILL of the master; a thread watches the Sentinels for the promotion. It prints one line:

    failover: promoted after P s, API errors for W s (N answers, all 503 + Retry-After), other
    errors K, jobs accepted A (B after the kill, the slowest answered in T s), lost L, stuck S,
    worker restarted R

promoted: from the kill until a Sentinel names another master. API errors: from the first
error answer after the kill to the last; the clients ask again 0.2 s after each 503 (not after
the full Retry-After) so the window is measured closely. other errors: answers that are not 200
or a 503 with Retry-After, and failed connections to the API. lost: a job that got a 200 and is
unknown at the end, or failed (every job is valid audio). worker restarted: the worker process
is not the one started at the beginning, or not registered at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests import hostile
from tests.audio import JFK
from tests.faults.harness import FAST_RECOVERY_ENV
from tests.services import RedisHA, Service, running_redis_ha, running_service

log = logging.getLogger("failover")

CLIENT_THREADS = 2
JOB_PAUSE_S = 0.6
"""Between one client's jobs: about three jobs a second in all, which one worker keeps up with."""
RETRY_PAUSE_S = 0.2


@dataclass
class FailoverReport:
    """What one failover under load measured."""

    promotion_s: float | None = None
    first_error_s: float | None = None
    """After the kill, when the first error answer came."""
    last_error_s: float | None = None
    error_answers: int = 0
    other_errors: list[str] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)
    """Idempotency key → job id of every submission that got a 200."""
    accepted_after_kill: int = 0
    slowest_accept_after_kill_s: float = 0.0
    """The longest a submission answered 200 took, after the kill."""
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    worker_restarted: bool = False
    replica_waits: int = 0
    """WAIT commands the promoted master served: submissions were acknowledged by a replica."""

    @property
    def error_window_s(self) -> float:
        if self.first_error_s is None or self.last_error_s is None:
            return 0.0
        return self.last_error_s - self.first_error_s

    def line(self) -> str:
        promoted = "never" if self.promotion_s is None else f"after {self.promotion_s:.2f} s"
        return (
            f"failover: promoted {promoted}, API errors for {self.error_window_s:.2f} s "
            f"({self.error_answers} answers, all 503 + Retry-After), other errors "
            f"{len(self.other_errors)}, jobs accepted {len(self.accepted)} "
            f"({self.accepted_after_kill} after the kill, the slowest answered in "
            f"{self.slowest_accept_after_kill_s:.2f} s), lost {len(self.lost)}, "
            f"stuck {len(self.stuck)}, worker restarted {int(self.worker_restarted)}"
        )


class Clients:
    """Client threads that submit until told to stop, recording every answer."""

    def __init__(self, service: Service, clip: Path, report: FailoverReport) -> None:
        self.service = service
        self.clip_bytes = clip.read_bytes()
        self.clip_name = clip.name
        self.report = report
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.killed_at: float | None = None
        self.tickets = itertools.count()

    def run(self) -> None:
        with self.service.client(timeout_s=30) as client:
            while not self.stop.is_set():
                self.submit_one(client, f"failover-{next(self.tickets)}-{uuid.uuid4()}")
                time.sleep(JOB_PAUSE_S)

    def _since_kill(self) -> float | None:
        return None if self.killed_at is None else time.monotonic() - self.killed_at

    def submit_one(self, client: httpx.Client, key: str) -> None:
        """Submit one job until it is accepted (or the run ends), as a careful client does."""
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = client.post(
                    "/transcribe",
                    files={"file": (self.clip_name, self.clip_bytes)},
                    data={"engine": "whisperx"},
                    headers={"Idempotency-Key": key},
                )
            except httpx.TransportError as error:
                with self.lock:
                    self.report.other_errors.append(f"connection: {error!r}")
                time.sleep(RETRY_PAUSE_S)
                continue
            since = self._since_kill()
            if response.status_code == 200:
                with self.lock:
                    self.report.accepted[key] = response.json()["job_id"]
                    if since is not None:
                        self.report.accepted_after_kill += 1
                        self.report.slowest_accept_after_kill_s = max(
                            self.report.slowest_accept_after_kill_s, time.monotonic() - started
                        )
                return
            with self.lock:
                if response.status_code == 503 and "retry-after" in response.headers:
                    self.report.error_answers += 1
                    if since is not None:
                        if self.report.first_error_s is None:
                            self.report.first_error_s = since
                        self.report.last_error_s = since
                else:
                    self.report.other_errors.append(
                        f"HTTP {response.status_code}: {response.text[:200]}"
                    )
            time.sleep(RETRY_PAUSE_S)


def watch_promotion(ha: RedisHA, old_master: int, killed_at: float, timeout_s: float) -> float:
    """Seconds from the kill until a Sentinel names another master."""
    deadline = killed_at + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):
            if ha.master_port() != old_master:
                return time.monotonic() - killed_at
        time.sleep(0.02)
    raise TimeoutError(f"no replica was promoted within {timeout_s:.0f} s")


def settle(service: Service, report: FailoverReport, timeout_s: float) -> None:
    """Wait for every accepted job to end; count the lost and the stuck ones."""
    pending = set(report.accepted.values())
    deadline = time.monotonic() + timeout_s
    with service.client(timeout_s=30) as client:
        while pending and time.monotonic() < deadline:
            for job_id in sorted(pending):
                response = client.get(f"/status/{job_id}")
                if response.status_code == 404:
                    report.lost.append(job_id)
                    pending.discard(job_id)
                elif response.status_code == 200 and response.json()["status"] in (
                    "finished",
                    "failed",
                ):
                    if response.json()["status"] == "failed":
                        log.error("job %s failed: %s", job_id, response.json()["error"])
                        report.lost.append(job_id)
                    pending.discard(job_id)
            time.sleep(0.5)
    report.stuck = sorted(pending)


def run_failover(
    root: Path, before_s: float = 3.0, after_s: float = 8.0, settle_timeout_s: float = 180.0
) -> FailoverReport:
    """One failover under load in `root` (see the module doc); the report."""
    clip = hostile.clip(JFK, root / "ask-not.flac", seconds=2.0, start_s=8.0)
    report = FailoverReport()
    worker_env = {"CPU_THREADS": "1", **FAST_RECOVERY_ENV}
    with (
        running_redis_ha(root / "redis") as ha,
        running_service(
            root / "deployment", workers=1, worker_env=worker_env, env=ha.env(), redis=False
        ) as service,
    ):
        worker_pid = service.workers[0].popen.pid
        clients = Clients(service, clip, report)
        threads = [threading.Thread(target=clients.run) for _ in range(CLIENT_THREADS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(before_s)
            old_master = ha.master_port()
            log.warning("killing the master (port %d) with SIGKILL", old_master)
            clients.killed_at = time.monotonic()
            ha.kill_master()
            report.promotion_s = watch_promotion(ha, old_master, clients.killed_at, 60)
            log.warning("a replica was promoted after %.2f s", report.promotion_s)
            time.sleep(after_s)
        finally:
            clients.stop.set()
            for thread in threads:
                thread.join()
        settle(service, report, settle_timeout_s)
        with ha.client() as master:
            report.replica_waits = int(
                master.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
            )
        worker = service.workers[0]
        registered = httpx.get(f"{service.url}/health", timeout=10).json()["workers"] == 1
        report.worker_restarted = (
            len(service.workers) != 1
            or worker.popen.pid != worker_pid
            or not worker.alive()
            or not registered
        )
    return report


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="failover-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None) -> int:
    """Run one failover from the command line; exit 1 unless every accepted job finished and
    every error answer was a 503 with Retry-After."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep logs and data in this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with _workdir(args.keep) as root:
        report = run_failover(root)
    sys.stdout.write(report.line() + "\n")
    clean = not (report.lost or report.stuck or report.other_errors or report.worker_restarted)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
