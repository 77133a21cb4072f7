"""The queue contract: the job request as it crosses Redis, the status names, the key names."""

from __future__ import annotations

from common.catalog import EngineName
from common.contract import (
    CANCELABLE,
    LIVE,
    TERMINAL,
    JobRequest,
    Keys,
    PublicStatus,
    TranscribeOptions,
    public_status_of,
)


def test_a_request_survives_the_trip_through_json() -> None:
    request = JobRequest(
        audio_path="/uploads/a.wav",
        engine=EngineName.TIMESTAMPED,
        model="base",
        options=TranscribeOptions(language="de", beam_size=3),
    )
    wire = request.model_dump(mode="json", exclude_none=True)
    assert wire["options"] == {
        "language": "de", "task": "transcribe", "vad": True, "word_timestamps": True,
        "beam_size": 3,
    }  # fmt: skip
    assert JobRequest.model_validate(wire) == request


def test_a_job_queued_before_the_contract_still_reads() -> None:
    legacy = {
        "audio_path": "/uploads/a.wav",
        "engine": "whisperx",
        "model": "tiny.en",
        "language": "en",
        "options": {"vad": False},
    }
    request = JobRequest.model_validate(legacy)
    assert request.options.language == "en"
    assert request.options.vad is False


def test_status_sets_partition_the_states() -> None:
    assert set(PublicStatus) == TERMINAL | LIVE
    assert not TERMINAL & LIVE
    assert PublicStatus.CANCELED in TERMINAL
    assert CANCELABLE <= LIVE
    assert public_status_of("stopped") == PublicStatus.CANCELED
    assert public_status_of("no-such-state") is None


def test_every_key_is_under_the_queues_prefix() -> None:
    keys = Keys("transcribe")
    names = [
        keys.index, keys.webhooks_due, keys.maintenance_lock, keys.webhook_scheduled("j"),
        keys.ended("j"), keys.cancel("j"), keys.idempotency("ab"),
    ]  # fmt: skip
    assert all(name.startswith("rq:queue:transcribe:") for name in names)
    assert len(set(names)) == len(names)
