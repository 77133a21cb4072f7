"""api.uploads.receive_form on a body of many network chunks: the file is written while the next
chunk is received, and must still come out whole, in order, hashed only when asked, and gone
with its descriptor closed when a write fails."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.types import Message

import api.uploads
from api.uploads import WRITE_CHUNK_BYTES, ReceivedForm, UploadError, receive_form

BOUNDARY = "test-boundary-7d1f"
NETWORK_CHUNK = 64 * 1024


def multipart_body(content: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="engine"\r\n\r\nwhisperx\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def request_for(body: bytes) -> Request:
    chunks = [body[i : i + NETWORK_CHUNK] for i in range(0, len(body), NETWORK_CHUNK)]

    async def receive() -> Message:
        await asyncio.sleep(0)  # let a write in flight make progress, as the network would
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def receive(tmp_path: Path, content: bytes, *, hash_file: bool) -> ReceivedForm:
    return asyncio.run(
        receive_form(
            request_for(multipart_body(content)), tmp_path, 64 * 2**20, hash_file=hash_file
        )
    )


# Several write chunks and a ragged end, with no repeats: a chunk out of order would show.
CONTENT = b"".join(i.to_bytes(4, "little") for i in range((5 * WRITE_CHUNK_BYTES + 12345) // 4))


def test_a_many_chunk_file_arrives_whole_and_in_order_with_its_hash(tmp_path: Path) -> None:
    form = receive(tmp_path, CONTENT, hash_file=True)

    assert form.file_path is not None
    assert form.file_path.read_bytes() == CONTENT
    assert form.file_size == len(CONTENT)
    assert form.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert form.fields == {"engine": "whisperx"}


def test_the_hash_is_skipped_unless_asked_for(tmp_path: Path) -> None:
    form = receive(tmp_path, CONTENT, hash_file=False)

    assert form.file_path is not None
    assert form.file_path.read_bytes() == CONTENT
    assert form.sha256 is None


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("failing_write", [1, 3], ids=["first write", "a later write"])
def test_a_failed_write_is_507_with_no_file_and_no_open_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_write: int
) -> None:
    real_write = api.uploads._write_and_hash
    writes = 0

    def fills_the_disk(handle: int, data: bytes, digest: hashlib._Hash | None) -> None:
        nonlocal writes
        writes += 1
        if writes == failing_write:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(handle, data, digest)

    monkeypatch.setattr(api.uploads, "_write_and_hash", fills_the_disk)
    before = open_descriptors()

    with pytest.raises(UploadError) as raised:
        receive(tmp_path, CONTENT, hash_file=True)

    assert raised.value.status_code == 507
    assert list(tmp_path.iterdir()) == []
    assert open_descriptors() == before
