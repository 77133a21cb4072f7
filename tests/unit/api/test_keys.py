"""API keys on fakeredis: stored hashed, 401s, ownership, admin, scoped Idempotency-Keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from rq import Queue

from api.http.app import create_app
from api.http.deps import get_queue
from api.keys.__main__ import main as keys_command
from api.keys.store import KEY_PREFIX, KeyLimits, KeyRefused, KeyStore
from config import Settings
from tests.fakes import queued_jobs, work
from tests.unit.conftest import uploads_left
from worker.runtime import Runtime

ADMIN_SECRET = "admin-secret-for-tests"


@pytest.fixture
def store(redis: fakeredis.FakeRedis, queue: Queue) -> KeyStore:
    """The deployment's key store on fakeredis."""
    return KeyStore(redis, queue.name)


@pytest.fixture
def keyed(settings: Settings, queue: Queue) -> Iterator[TestClient]:
    """The API with REQUIRE_API_KEY on and an ADMIN_API_KEY."""
    settings.require_api_key = True
    settings.admin_api_key = SecretStr(ADMIN_SECRET)
    app = create_app(settings)
    app.dependency_overrides[get_queue] = lambda: queue
    with TestClient(app) as client:
        yield client


def queued(queue: Queue) -> int:
    """Jobs waiting: on the RQ queue, and in their keys' turns (common.fairness)."""
    return queued_jobs(queue)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def upload(client: TestClient, audio: Path, headers: dict[str, str], **fields: str) -> Any:
    with audio.open("rb") as handle:
        return client.post(
            "/transcribe",
            files={"file": ("a.wav", handle, "audio/wav")},
            data={"engine": "whisperx", **fields},
            headers=headers,
        )


def test_a_key_is_stored_only_as_its_hash(store: KeyStore, redis: fakeredis.FakeRedis) -> None:
    secret = store.create("alice")
    assert secret.startswith(KEY_PREFIX)
    assert len(secret) > 40
    stored = [
        str(part)
        for key in redis.keys("*")
        if redis.type(key) == b"hash"
        for item in redis.hgetall(key).items()
        for part in item
    ]
    assert stored
    assert not any(secret in part for part in stored)
    found = store.find(secret)
    assert found is not None
    assert (found.name, found.admin) == ("alice", False)
    assert store.find(secret + "x") is None


def test_names_are_unique_and_admin_is_reserved(store: KeyStore) -> None:
    store.create("alice")
    with pytest.raises(KeyRefused, match="exists"):
        store.create("alice")
    with pytest.raises(KeyRefused, match="reserved"):
        store.create("admin")
    with pytest.raises(KeyRefused, match="not a key name"):
        store.create("al ice")


def test_the_command_creates_lists_and_revokes(
    store: KeyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys_command(["create", "alice", "--admin"], store) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert store.find(secret) is not None
    assert keys_command(["create", "alice"], store) == 1
    assert "exists" in capsys.readouterr().err
    assert keys_command(["list"], store) == 0
    listing = capsys.readouterr().out
    assert "alice\tadmin=True" in listing
    assert secret not in listing
    assert keys_command(["revoke", "alice"], store) == 0
    assert store.find(secret) is None
    assert keys_command(["revoke", "alice"], store) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer tsk_nope"}, {"X-API-Key": "tsk_nope"}, {"Authorization": "x"}],
    ids=["no key", "unknown bearer", "unknown X-API-Key", "not bearer"],
)
def test_no_valid_key_is_401_and_writes_nothing(
    keyed: TestClient,
    tone_wav: Path,
    settings: Settings,
    queue: Queue,
    headers: dict[str, str],
) -> None:
    response = upload(keyed, tone_wav, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "key" in response.json()["detail"]
    assert uploads_left(settings) == []
    assert queued(queue) == 0
    for path in ("/jobs", "/status/x", "/result/x"):
        assert keyed.get(path, headers=headers).status_code == 401


def test_probes_and_docs_need_no_key(keyed: TestClient) -> None:
    for path in ("/livez", "/health", "/docs", "/openapi.json", "/static/docs/swagger-ui.css"):
        assert keyed.get(path).status_code == 200, path


def test_a_revoked_key_is_refused_on_its_next_request(keyed: TestClient, store: KeyStore) -> None:
    secret = store.create("alice")
    assert keyed.get("/jobs", headers=bearer(secret)).status_code == 200
    store.revoke("alice")
    assert keyed.get("/jobs", headers=bearer(secret)).status_code == 401


def test_a_key_sees_and_controls_only_its_own_jobs(
    keyed: TestClient, store: KeyStore, tone_wav: Path
) -> None:
    alice, bob = store.create("alice"), store.create("bob")
    job_id = upload(keyed, tone_wav, bearer(alice)).json()["job_id"]
    assert keyed.get(f"/status/{job_id}", headers=bearer(alice)).status_code == 200
    for method, path in (
        ("GET", f"/status/{job_id}"),
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/result/{job_id}"),
        ("DELETE", f"/jobs/{job_id}"),
    ):
        response = keyed.request(method, path, headers=bearer(bob))
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"] == f"no job {job_id!r} (unknown, or expired after its TTL)"
    assert [job["job_id"] for job in keyed.get("/jobs", headers=bearer(alice)).json()["jobs"]] == [
        job_id
    ]
    assert keyed.get("/jobs", headers=bearer(bob)).json()["jobs"] == []
    assert keyed.get("/jobs?owner=alice", headers=bearer(bob)).status_code == 403
    assert keyed.get(f"/status/{job_id}", headers=bearer(alice)).json()["status"] == "queued"


def test_an_admin_key_sees_every_job_and_filters_by_owner(
    keyed: TestClient, store: KeyStore, tone_wav: Path
) -> None:
    alice, bob = store.create("alice"), store.create("bob")
    ids = {name: upload(keyed, tone_wav, bearer(key)).json()["job_id"] for name, key in
           (("alice", alice), ("bob", bob))}  # fmt: skip
    admin = bearer(ADMIN_SECRET)
    listed = {job["job_id"] for job in keyed.get("/jobs", headers=admin).json()["jobs"]}
    assert listed == set(ids.values())
    only_bob = keyed.get("/jobs?owner=bob", headers=admin).json()["jobs"]
    assert [job["job_id"] for job in only_bob] == [ids["bob"]]
    assert keyed.get(f"/status/{ids['alice']}", headers=admin).status_code == 200
    created_admin = store.create("ops", admin=True)
    listed = keyed.get("/jobs", headers={"X-API-Key": created_admin}).json()["jobs"]
    assert len(listed) == 2


def test_idempotency_keys_are_scoped_to_the_api_key(
    keyed: TestClient, store: KeyStore, tone_wav: Path, queue: Queue
) -> None:
    alice, bob = store.create("alice"), store.create("bob")
    retry = {"Idempotency-Key": "order-1"}
    first = upload(keyed, tone_wav, {**bearer(alice), **retry}).json()["job_id"]
    again = upload(keyed, tone_wav, {**bearer(alice), **retry}).json()["job_id"]
    other = upload(keyed, tone_wav, {**bearer(bob), **retry}).json()["job_id"]
    assert first == again
    assert other != first
    assert queued(queue) == 2


def test_with_keys_off_a_key_sent_anyway_is_ignored(client: TestClient, tone_wav: Path) -> None:
    response = upload(client, tone_wav, bearer("tsk_whatever"))
    assert response.status_code == 200
    assert client.get(f"/status/{response.json()['job_id']}").status_code == 200


def test_past_the_request_rate_a_key_gets_429_with_retry_after(
    keyed: TestClient, store: KeyStore, settings: Settings
) -> None:
    settings.default_rate_per_min = 3
    alice = store.create("alice")
    answers = [keyed.get("/jobs", headers=bearer(alice)) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "3 requests per minute" in refused.json()["detail"]
    generous = store.create("bob", limits=KeyLimits(rate_per_min=10))
    assert {keyed.get("/jobs", headers=bearer(generous)).status_code for _ in range(5)} == {200}


def test_past_the_active_jobs_limit_nothing_is_kept(
    keyed: TestClient,
    store: KeyStore,
    settings: Settings,
    queue: Queue,
    tone_wav: Path,
    runtime: Runtime,
) -> None:
    alice = store.create("alice", limits=KeyLimits(max_active=2))
    for _ in range(2):
        assert upload(keyed, tone_wav, bearer(alice)).status_code == 200
    refused = upload(keyed, tone_wav, bearer(alice))
    assert refused.status_code == 429
    assert "2 jobs queued or running" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "10"
    assert queued(queue) == 2
    assert len(uploads_left(settings)) == 2
    work(queue, runtime)  # both end: the key may submit again
    assert upload(keyed, tone_wav, bearer(alice)).status_code == 200


def test_a_refused_upload_gives_its_place_back(
    keyed: TestClient, store: KeyStore, tmp_path: Path, tone_wav: Path
) -> None:
    alice = store.create("alice", limits=KeyLimits(max_active=1))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"\x13" * 4096)
    assert upload(keyed, garbage, bearer(alice)).status_code == 415
    assert upload(keyed, tone_wav, bearer(alice)).status_code == 200


def test_past_the_days_audio_a_key_gets_429_until_midnight(
    keyed: TestClient, store: KeyStore, queue: Queue, tone_wav: Path, settings: Settings
) -> None:
    # 2.5 one-second files a day (the tone is 1 s long).
    settings.default_audio_hours_per_day = 2.5 / 3600
    alice = store.create("alice")
    assert [upload(keyed, tone_wav, bearer(alice)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    refused = upload(keyed, tone_wav, bearer(alice))
    assert "hours of audio per UTC day" in refused.json()["detail"]
    now = datetime.now(UTC)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert abs(int(refused.headers["retry-after"]) - to_midnight) <= 2
    assert queued(queue) == 2
    unlimited = store.create("bob", limits=KeyLimits(audio_hours_per_day=0))
    assert upload(keyed, tone_wav, bearer(unlimited)).status_code == 200


def test_admin_keys_have_no_quotas(keyed: TestClient, settings: Settings) -> None:
    settings.default_rate_per_min = 1
    assert {keyed.get("/jobs", headers=bearer(ADMIN_SECRET)).status_code for _ in range(3)} == {200}
