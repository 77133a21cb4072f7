"""API keys over a real deployment: two API processes, keys made and revoked by the command."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from tests.audio import JFK, JFK_PHRASE, REPO_ROOT, SHARED_DATA, normalize
from tests.services import VENV_BIN, Service, wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(keyed_service: Service) -> Service:
    """The keyed deployment (see conftest)."""
    return keyed_service


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


def get(service: Service, path: str, key: str | None) -> httpx.Response:
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
    assert get(deployment, f"/status/{job_id}", deployment.admin_key).status_code == 200
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


def test_limits_hold_across_api_processes(deployment: Service) -> None:
    done = keys_command(deployment, "create", "dave", "--rate-per-min", "6", "--max-active", "1")
    assert done.returncode == 0, done.stderr
    dave = done.stdout.strip().splitlines()[-1]
    assert "max_active" in keys_command(deployment, "list").stdout
    # Each on a new connection: gunicorn's two processes share the count through Redis.
    codes = [get(deployment, "/jobs", dave).status_code for _ in range(10)]
    assert codes == [200] * 6 + [429] * 4


def test_the_active_jobs_limit_holds_while_a_job_runs(deployment: Service) -> None:
    done = keys_command(deployment, "create", "erin", "--max-active", "1")
    erin = done.stdout.strip().splitlines()[-1]
    long_audio = SHARED_DATA / "multilingual.mp3"
    with httpx.Client(
        base_url=deployment.url, timeout=60, headers={"Authorization": f"Bearer {erin}"}
    ) as client:

        def submit_long() -> httpx.Response:
            with long_audio.open("rb") as handle:
                return client.post(
                    "/transcribe",
                    files={"file": (long_audio.name, handle)},
                    data={"engine": "whisperx"},
                )

        first = submit_long()
        assert first.status_code == 200, first.text
        refused = submit_long()
        assert refused.status_code == 429, refused.text
        assert "1 jobs queued or running" in refused.json()["detail"]
        assert wait_for_job(client, first.json()["job_id"])["status"] == "finished"
        again = submit_long()
        assert again.status_code == 200, again.text
        assert wait_for_job(client, again.json()["job_id"])["status"] == "finished"
