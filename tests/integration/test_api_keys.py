"""API keys over a real deployment: two API processes, keys made and revoked by the command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.audio import JFK, JFK_PHRASE, REPO_ROOT, normalize
from tests.services import VENV_BIN, Service, free_port, service_env, wait_for_job

pytestmark = pytest.mark.integration

ADMIN = "integration-admin-key"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """redis-server, a worker and the API under gunicorn with 2 processes, keys required."""
    root = tmp_path_factory.mktemp("keys")
    port = free_port()
    env = {**service_env(root, port), "REQUIRE_API_KEY": "true", "ADMIN_API_KEY": ADMIN}
    service = Service(root=root, env=env, redis_port=port)
    try:
        service.start_redis()
        service.start_worker()
        service.start_api(web_workers=2)
        service.wait_for_workers(1)
        yield service
    finally:
        service.stop()


def keys_command(service: Service, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m api.keys ...` against the deployment's Redis, as an operator runs it."""
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "api.keys", *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **service.env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def create_key(service: Service, name: str) -> str:
    done = keys_command(service, "create", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def get(service: Service, path: str, key: str) -> httpx.Response:
    # A new connection each time, so gunicorn's two processes both answer.
    return httpx.get(f"{service.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_keys_made_by_the_command_own_their_jobs(deployment: Service) -> None:
    alice, bob = create_key(deployment, "alice"), create_key(deployment, "bob")
    assert keys_command(deployment, "create", "alice").returncode == 1
    with httpx.Client(
        base_url=deployment.url, timeout=60, headers={"Authorization": f"Bearer {alice}"}
    ) as client:
        with JFK.open("rb") as handle:
            response = client.post(
                "/transcribe", files={"file": ("jfk.flac", handle)}, data={"engine": "whisperx"}
            )
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        status = wait_for_job(client, job_id)
        assert status["status"] == "finished"
        assert JFK_PHRASE in normalize(status["result"]["text"])
    assert get(deployment, f"/result/{job_id}?format=txt", bob).status_code == 404
    assert get(deployment, f"/status/{job_id}", ADMIN).status_code == 200
    listing = keys_command(deployment, "list")
    assert "alice" in listing.stdout
    assert alice not in listing.stdout


def test_a_revocation_holds_at_once_in_every_api_process(deployment: Service) -> None:
    carol = create_key(deployment, "carol")
    assert {get(deployment, "/jobs", carol).status_code for _ in range(20)} == {200}
    done = keys_command(deployment, "revoke", "carol")
    assert done.returncode == 0, done.stderr
    answers = [get(deployment, "/jobs", carol) for _ in range(20)]
    assert {answer.status_code for answer in answers} == {401}
    assert answers[0].headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{deployment.url}/health").status_code == 200
