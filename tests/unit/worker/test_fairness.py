"""Fair turns across API keys with the real worker loop on fakeredis and the fake engine."""

from __future__ import annotations

from pathlib import Path

from rq import Queue

from api.jobs.cancel import cancel_job
from common.contract import Keys, load_job
from common.job_status import JobStatus, describe_job
from config import Settings
from tests.fakes import enqueue_path, jobs_queue, work
from worker.runtime import Runtime


def status(queue: Queue, job_id: str) -> JobStatus:
    job = load_job(queue, job_id)
    assert job is not None
    return describe_job(job)


def submit(queue: Queue, settings: Settings, tone_wav: Path, owner: str) -> str:
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    job = enqueue_path(queue, settings, tone_wav, owner=owner)
    return job.id


def test_a_keys_backlog_does_not_starve_another(
    queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    settings = runtime.settings
    a_jobs = [submit(queue, settings, tone_wav, "a") for _ in range(30)]
    b_jobs = [submit(queue, settings, tone_wav, "b") for _ in range(3)]
    assert jobs_queue(queue).count == 1  # one job on the RQ queue; the rest wait their key's turn
    positions = [status(queue, job_id).queue_position for job_id in b_jobs]
    assert positions == [3, 5, 7]
    work(queue, runtime)
    statuses = {job_id: status(queue, job_id) for job_id in a_jobs + b_jobs}
    assert {each.status for each in statuses.values()} == {"finished"}
    started = sorted(statuses, key=lambda job_id: str(statuses[job_id].started_at))
    first_b = started.index(b_jobs[0])
    assert sum(1 for job_id in started[:first_b] if job_id in a_jobs) <= 2
    last_b = max(started.index(job_id) for job_id in b_jobs)
    assert sum(1 for job_id in started[:last_b] if job_id in a_jobs) < 10
    # Within one key, jobs keep their submission order.
    assert [job_id for job_id in started if job_id in a_jobs] == a_jobs
    assert [job_id for job_id in started if job_id in b_jobs] == b_jobs
    keys = Keys(jobs_queue(queue).name)  # the route's own turns
    assert queue.connection.llen(keys.rotation) == 0
    assert queue.connection.llen(keys.pending("a")) == 0


def test_a_canceled_waiting_job_leaves_its_keys_turn(
    queue: Queue, runtime: Runtime, tone_wav: Path
) -> None:
    settings = runtime.settings
    first = submit(queue, settings, tone_wav, "a")
    waiting = submit(queue, settings, tone_wav, "a")
    third = submit(queue, settings, tone_wav, "a")
    job = load_job(queue, waiting)
    assert job is not None
    assert cancel_job(settings, job) == "canceled"
    assert status(queue, third).queue_position == 2
    work(queue, runtime)
    assert [status(queue, job_id).status for job_id in (first, waiting, third)] == [
        "finished",
        "canceled",
        "finished",
    ]
