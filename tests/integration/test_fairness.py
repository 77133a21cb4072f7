"""Fair turns across API keys over a real deployment: one worker, a real engine, two keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from redis import Redis

from api.keys.store import KeyStore
from tests.audio import write_tone_wav
from tests.services import Service, wait_for_job

pytestmark = pytest.mark.integration


def test_one_keys_backlog_does_not_hold_back_another(
    keyed_service: Service, tmp_path: Path
) -> None:
    store = KeyStore(Redis(port=keyed_service.redis_port), "transcribe")
    keys = {name: store.create(f"fair-{name}") for name in ("a", "b")}
    audio = write_tone_wav(tmp_path / "short.wav", seconds=0.5).read_bytes()

    def submit(name: str) -> str:
        response = httpx.post(
            f"{keyed_service.url}/transcribe",
            files={"file": ("short.wav", audio)},
            data={"engine": "whisperx"},
            headers={"Authorization": f"Bearer {keys[name]}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    a_jobs = [submit("a") for _ in range(30)]
    b_jobs = [submit("b") for _ in range(3)]
    with httpx.Client(base_url=keyed_service.url, timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {keys['b']}"
        first_b = client.get(f"/status/{b_jobs[0]}").json()
        b_status = [wait_for_job(client, job_id, timeout_s=300) for job_id in b_jobs]
        client.headers["Authorization"] = f"Bearer {keys['a']}"
        a_status = [wait_for_job(client, job_id, timeout_s=300) for job_id in a_jobs]
    assert {body["status"] for body in a_status + b_status} == {"finished"}
    b_submitted = min(body["created_at"] for body in b_status)
    after = [body for body in a_status if body["started_at"] >= b_submitted]
    first_b_start = min(body["started_at"] for body in b_status)
    assert sum(1 for body in after if body["started_at"] < first_b_start) <= 2
    last_b_end = max(body["ended_at"] for body in b_status)
    a_ended_after = sorted(body["ended_at"] for body in a_status if body["ended_at"] >= b_submitted)
    assert len(a_ended_after) >= 10
    assert last_b_end < a_ended_after[9]
    # Within one key, submission order is start order.
    assert [body["job_id"] for body in sorted(a_status, key=lambda b: b["started_at"])] == a_jobs
    if first_b["status"] == "queued":
        assert first_b["queue_position"] is not None
