"""Chaos campaign: a real deployment takes a few hundred jobs while its parts are killed.

`python -m tests.chaos` (or `make chaos`) starts redis-server, the API and worker processes on
loopback (tests.services), submits short real jobs from a few client threads the way a careful
client does (an Idempotency-Key per job; honouring Retry-After on 503; retrying on connection
errors), and meanwhile injects faults on a schedule: SIGKILL a worker's process group, SIGTERM a
worker, kill -9 redis-server and restart it on its data, SIGKILL the API. Each fault is followed
by its repair (a new worker, Redis restarted, the API restarted), as a supervisor would do.

With `--redis sentinel` (also part of `make chaos`) the deployment runs on a master, two
replicas and three Sentinels (REDIS_MIN_REPLICAS=1), and the Redis fault is a failover: the
master is SIGKILLed, a replica is promoted, and the old master comes back as a replica (as a
supervisor restarts it).

With API keys on (the default, as compose runs it; `--keys off` for the open API of `make run`)
each client thread submits with a key of its own, so jobs wait in per-key lists and are fed to
the RQ queue in turns while the faults land.

It then waits for every accepted job (a 200 with a job id) to end and prints one line:

    chaos: faults injected N, survived N, jobs accepted N, lost N, stuck N, run twice N, http 5xx N

survived: the service answered /health with every live worker registered within 90 s of the
fault. lost: an accepted job that is unknown at the end or ended `failed` (every job is valid
audio). stuck: not ended when the final wait runs out. run twice: a job that completed on two
workers (from the workers' logs). http 5xx: answers 500/502/504 and other 5xx except 503 (the
documented answer while Redis is down) and 507.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis import Redis

from api.keys.store import KeyStore
from tests import hostile
from tests.audio import JFK
from tests.faults.harness import FAST_RECOVERY_ENV, kill_redis, redis_of, restart_redis
from tests.services import Proc, RedisHA, Service, running_redis_ha, running_service

log = logging.getLogger("chaos")

FAULT_KINDS = ("kill_worker", "redis_kill", "term_worker", "kill_api")
SENTINEL_FAULT_KINDS = ("kill_worker", "redis_failover", "term_worker", "kill_api")
"""With Redis behind Sentinel, the Redis fault is the loss of the master."""
RECOVERY_LIMIT_S = 90.0
REDIS_DOWNTIMES_S = (2.0, 8.0)
"""How long each Redis outage lasts, in turn: a blip the API's Redis client rides out, and one
long enough for clients to get 503 (and for workers to wait for Redis to record results)."""
CLIENT_THREADS = 3
JOB_OK = re.compile(r"Job OK \(([0-9a-f-]{36})\)")


@dataclass
class Report:
    """What the campaign counted."""

    faults_injected: int = 0
    faults_survived: int = 0
    accepted: dict[str, str] = field(default_factory=dict)
    """Idempotency key → job id of every submission that got a 200."""
    http_5xx: int = 0
    http_503: int = 0
    lost: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    run_twice: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The campaign's one-line summary."""
        return (
            f"chaos: faults injected {self.faults_injected}, survived {self.faults_survived}, "
            f"jobs accepted {len(self.accepted)}, lost {len(self.lost)}, stuck {len(self.stuck)}, "
            f"run twice {len(self.run_twice)}, http 5xx {self.http_5xx}"
        )


class Campaign:
    """One deployment, its clients and its fault injector."""

    def __init__(
        self,
        service: Service,
        clip: Path,
        jobs: int,
        faults: int,
        worker_env: dict[str, str],
        rate_per_s: float,
        redis_downtimes_s: tuple[float, ...] = REDIS_DOWNTIMES_S,
        client_keys: tuple[str, ...] = (),
        ha: RedisHA | None = None,
    ) -> None:
        self.service = service
        self.ha = ha
        self.fault_kinds = SENTINEL_FAULT_KINDS if ha is not None else FAULT_KINDS
        self.client_keys = client_keys
        self.redis_downtimes_s = itertools.cycle(redis_downtimes_s)
        self.worker_env = worker_env
        self.pause_s = CLIENT_THREADS / rate_per_s
        self.clip_bytes = clip.read_bytes()
        self.clip_name = clip.name
        self.jobs = jobs
        self.report = Report()
        self.lock = threading.Lock()
        self.tickets = itertools.count()
        self.fault_thresholds = [jobs * (index + 1) // (faults + 1) for index in range(faults)]

    # --- clients ------------------------------------------------------------------------------

    def submit_until_done(self, index: int) -> None:
        """One client thread: submit jobs until the campaign's count is reached, with the
        thread's own API key when keys are on."""
        key = self.client_keys[index] if self.client_keys else None
        with self.service.client(timeout_s=60, api_key=key) as client:
            while (ticket := next(self.tickets)) < self.jobs:
                self.submit_one(client, f"chaos-{ticket}-{uuid.uuid4()}")
                time.sleep(self.pause_s)

    def submit_one(self, client: httpx.Client, key: str) -> None:
        """Submit one job until it is accepted, as a client that wants it done would."""
        for _attempt in range(200):
            try:
                response = client.post(
                    "/transcribe",
                    files={"file": (self.clip_name, self.clip_bytes)},
                    data={"engine": "whisperx"},
                    headers={"Idempotency-Key": key},
                )
            except httpx.TransportError:
                time.sleep(0.5)  # the API is restarting: try again, same key
                continue
            if response.status_code == 200:
                with self.lock:
                    earlier = self.report.accepted.setdefault(key, response.json()["job_id"])
                    if earlier != response.json()["job_id"]:
                        self.report.errors.append(f"key {key} got two jobs")
                return
            if response.status_code == 503 or (
                response.status_code == 409 and "retry-after" in response.headers
            ):
                # Redis is down, or this key's first request was cut off before it could finish
                # (its claim expires): come back when told to, with the same key.
                with self.lock:
                    self.report.http_503 += response.status_code == 503
                time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
                continue
            if response.status_code >= 500 and response.status_code != 507:
                with self.lock:
                    self.report.http_5xx += 1
                log.error("HTTP %s: %s", response.status_code, response.text[:300])
                time.sleep(0.5)
                continue
            with self.lock:
                self.report.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return
        with self.lock:
            self.report.errors.append(f"gave up submitting {key}")

    # --- faults -------------------------------------------------------------------------------

    def inject_faults(self) -> None:
        """Inject one fault per threshold of accepted jobs, each followed by its repair."""
        kinds = itertools.cycle(self.fault_kinds)
        for threshold in self.fault_thresholds:
            while len(self.report.accepted) < threshold:
                time.sleep(0.05)
            kind = next(kinds)
            log.warning("fault %d: %s", self.report.faults_injected + 1, kind)
            try:
                getattr(self, kind)()
            except Exception as error:  # a failed injection is a finding, not a crash
                self.report.errors.append(f"{kind}: {error!r}")
                log.exception("injecting %s failed", kind)
            self.report.faults_injected += 1
            if self.recovered():
                self.report.faults_survived += 1
            else:
                log.error(
                    "the service did not recover from %s within %.0f s", kind, RECOVERY_LIMIT_S
                )

    def busiest_worker(self) -> Proc:
        """A live worker that is running a job if there is one, else any live worker."""
        live = [proc for proc in self.service.workers if proc.alive()]
        registrations = self.registrations()
        busy = [proc for proc in live if registrations.get(proc.popen.pid, {}).get("current_job")]
        return (busy or live)[0]

    def kill_worker(self) -> None:
        doomed = self.busiest_worker()
        doomed.signal_group(signal.SIGKILL)
        doomed.popen.wait(10)
        self.service.start_worker(self.worker_env)

    def term_worker(self) -> None:
        leaving = self.busiest_worker()
        leaving.popen.send_signal(signal.SIGTERM)
        self.service.start_worker(self.worker_env)
        leaving.popen.wait(120)

    def redis_kill(self) -> None:
        kill_redis(self.service)
        time.sleep(next(self.redis_downtimes_s))
        restart_redis(self.service)

    def redis_failover(self) -> None:
        """SIGKILL the master; once a replica is promoted, start the old master again as a
        replica, and wait until the Sentinels could fail over again."""
        assert self.ha is not None
        old_master = self.ha.kill_master()
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        while self.ha.master_port() == old_master:
            if time.monotonic() > deadline:
                raise TimeoutError("no replica was promoted")
            time.sleep(0.1)
        self.ha.restart_as_replica(old_master)
        self.ha.wait_ready(RECOVERY_LIMIT_S)

    def store(self) -> Redis:
        """A client of the deployment's Redis (its master now, with Sentinel)."""
        return self.ha.client() if self.ha is not None else redis_of(self.service)

    def kill_api(self) -> None:
        api = self.service.api
        assert api is not None
        api.signal_group(signal.SIGKILL)
        api.popen.wait(10)
        self.service.start_api()

    def registrations(self) -> dict[int, dict[str, str]]:
        """Live rq worker registrations by process id."""
        redis = self.store()
        try:
            found: dict[int, dict[str, str]] = {}
            for name in redis.smembers("rq:workers:transcribe"):
                key = name.decode() if isinstance(name, bytes) else str(name)
                fields = {
                    (k.decode() if isinstance(k, bytes) else str(k)): (
                        v.decode() if isinstance(v, bytes) else str(v)
                    )
                    for k, v in redis.hgetall(key).items()
                }
                if fields.get("pid") and not fields.get("death"):
                    found[int(fields["pid"])] = fields
            return found
        finally:
            redis.close()

    def recovered(self) -> bool:
        """/health answers 200 and every live worker process is registered again."""
        deadline = time.monotonic() + RECOVERY_LIMIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, OSError):
                healthy = httpx.get(f"{self.service.url}/health", timeout=5).status_code == 200
                live = {proc.popen.pid for proc in self.service.workers if proc.alive()}
                if healthy and live <= set(self.registrations()):
                    return True
            time.sleep(0.5)
        return False

    # --- the end ------------------------------------------------------------------------------

    def settle(self, timeout_s: float) -> None:
        """Wait for every accepted job to end; count the lost, failed and stuck ones."""
        pending = set(self.report.accepted.values())
        deadline = time.monotonic() + timeout_s
        with self.service.client(timeout_s=30) as client:  # the admin key sees every job
            while pending and time.monotonic() < deadline:
                for job_id in sorted(pending):
                    try:
                        response = client.get(f"/status/{job_id}")
                    except httpx.TransportError:
                        break
                    if response.status_code == 404:
                        self.report.lost.append(job_id)
                        pending.discard(job_id)
                    elif response.status_code == 200 and response.json()["status"] in (
                        "finished",
                        "failed",
                    ):
                        if response.json()["status"] == "failed":
                            self.report.failed.append(job_id)
                            self.report.lost.append(job_id)
                            log.error("job %s failed: %s", job_id, response.json()["error"])
                        pending.discard(job_id)
                time.sleep(1.0)
        self.report.stuck = sorted(pending)
        completions = Counter(
            job_id for proc in self.service.workers for job_id in JOB_OK.findall(proc.log())
        )
        self.report.run_twice = sorted(job_id for job_id, count in completions.items() if count > 1)


def run_campaign(
    root: Path,
    jobs: int = 300,
    workers: int = 2,
    faults: int = 8,
    fast_recovery: bool = False,
    settle_timeout_s: float = 300.0,
    rate_per_s: float = 2.0,
    keyed: bool = True,
    sentinel: bool = False,
) -> Report:
    """Run one campaign in `root` and return its report (see the module doc); with
    `sentinel`, on Redis behind Sentinel, whose fault is a failover."""
    clip = hostile.clip(JFK, root / "ask-not.flac", seconds=2.0, start_s=8.0)
    worker_env = {"CPU_THREADS": "1", "WHISPERX_ALIGN": "false"}
    if fast_recovery:
        worker_env |= FAST_RECOVERY_ENV
    with contextlib.ExitStack() as stack:
        ha = stack.enter_context(running_redis_ha(root / "redis")) if sentinel else None
        service = stack.enter_context(
            running_service(
                root / "deployment",
                workers=workers,
                worker_env=worker_env,
                keyed=keyed,
                env=ha.env() if ha is not None else None,
                redis=ha is None,
            )
        )
        # Short heartbeats would expire during a long outage: keep those outages short.
        downtimes = REDIS_DOWNTIMES_S[:1] if fast_recovery else REDIS_DOWNTIMES_S
        store = ha.client() if ha is not None else redis_of(service)
        client_keys = client_keys_of(store, CLIENT_THREADS) if keyed else ()
        campaign = Campaign(
            service, clip, jobs, faults, worker_env, rate_per_s, downtimes, client_keys, ha
        )
        clients = [
            threading.Thread(
                target=campaign.submit_until_done, args=(index,), name=f"client-{index}"
            )
            for index in range(CLIENT_THREADS)
        ]
        injector = threading.Thread(target=campaign.inject_faults, name="faults")
        for thread in [*clients, injector]:
            thread.start()
        for thread in [*clients, injector]:
            thread.join()
        campaign.settle(settle_timeout_s)
    report = campaign.report
    for problem in report.errors:
        log.error("%s", problem)
    if report.lost or report.stuck or report.run_twice:
        log.error("lost %s; stuck %s; run twice %s", report.lost, report.stuck, report.run_twice)
    log.info("503 answers while Redis was down: %d", report.http_503)
    return report


def client_keys_of(redis: Redis, count: int) -> tuple[str, ...]:
    """Create one API key per client thread, as an operator would with `python -m api.keys`."""
    try:
        store = KeyStore(redis, "transcribe")
        return tuple(store.create(f"chaos-client-{index}") for index in range(count))
    finally:
        redis.close()


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="chaos-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign from the command line; exit 1 unless nothing was lost, stuck or run
    twice."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs to submit")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--faults", type=int, default=8, help="faults to inject")
    parser.add_argument(
        "--rate", type=float, default=2.0, help="submissions per second, all clients together"
    )
    parser.add_argument(
        "--fast-recovery",
        action="store_true",
        help="short heartbeats (HEARTBEAT_TTL_S=5) instead of the defaults",
    )
    parser.add_argument(
        "--keys",
        choices=("on", "off"),
        default="on",
        help="API keys required, one per client (on, as compose runs it) or the open API (off)",
    )
    parser.add_argument(
        "--redis",
        choices=("single", "sentinel"),
        default="single",
        help="one redis-server restarted on its data (single), or a master, two replicas and "
        "three Sentinels, the fault a failover (sentinel)",
    )
    parser.add_argument("--keep", type=Path, help="keep logs and data in this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with _workdir(args.keep) as root:
        report = run_campaign(
            root,
            args.jobs,
            args.workers,
            args.faults,
            fast_recovery=args.fast_recovery,
            rate_per_s=args.rate,
            keyed=args.keys == "on",
            sentinel=args.redis == "sentinel",
        )
    sys.stdout.write(report.line() + "\n")
    clean = not (
        report.lost or report.stuck or report.run_twice or report.http_5xx or report.errors
    )
    return 0 if clean and report.faults_survived == report.faults_injected else 1


if __name__ == "__main__":
    sys.exit(main())
