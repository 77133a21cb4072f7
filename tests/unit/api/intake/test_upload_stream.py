"""receive_form on a body of many network chunks: the file is written while the next chunk is
received, and must still come out whole, in order, hashed only when asked, and gone
with its descriptor closed when a write fails."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.types import Message

from api.errors import ServiceError
from api.intake.multipart import WRITE_CHUNK_BYTES, ReceivedForm, receive_form
from api.intake.staging import staged_upload
from common.storage.local import StagedFile

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


def receive(staged: StagedFile, content: bytes, *, hash_file: bool) -> ReceivedForm:
    async def run() -> ReceivedForm:
        async with staged_upload(staged):
            form = await receive_form(
                request_for(multipart_body(content)), staged, 64 * 2**20, hash_file=hash_file
            )
            staged.keep()
            return form

    return asyncio.run(run())


# Several write chunks and a ragged end, with no repeats: a chunk out of order would show.
CONTENT = b"".join(i.to_bytes(4, "little") for i in range((5 * WRITE_CHUNK_BYTES + 12345) // 4))


def test_a_many_chunk_file_arrives_whole_and_in_order_with_its_hash(tmp_path: Path) -> None:
    staged = StagedFile(tmp_path)
    form = receive(staged, CONTENT, hash_file=True)

    assert form.has_file
    assert staged.path.read_bytes() == CONTENT
    assert form.file_size == len(CONTENT)
    assert form.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert form.fields == {"engine": "whisperx"}


def test_the_hash_is_skipped_unless_asked_for(tmp_path: Path) -> None:
    staged = StagedFile(tmp_path)
    form = receive(staged, CONTENT, hash_file=False)

    assert staged.path.read_bytes() == CONTENT
    assert form.sha256 is None


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class OnAFullDisk(StagedFile):
    """Creates the staged file as asked, but writes go to /dev/full: every one fails, ENOSPC."""

    def create(self) -> int:
        os.close(super().create())
        return os.open("/dev/full", os.O_WRONLY)


class ReaderGoesAway(StagedFile):
    """Writes go into a pipe whose reader takes two write chunks, then closes: a later write
    fails while the earlier ones went through."""

    def create(self) -> int:
        os.close(super().create())
        reader, writer = os.pipe()

        def read_two_chunks_then_close() -> None:
            left = 2 * WRITE_CHUNK_BYTES
            while left > 0:
                left -= len(os.read(reader, min(left, 65536)))
            os.close(reader)

        threading.Thread(target=read_two_chunks_then_close, daemon=True).start()
        return writer


def test_a_full_disk_is_507_with_no_file_and_no_open_descriptor(tmp_path: Path) -> None:
    before = open_descriptors()

    with pytest.raises(ServiceError) as raised:
        receive(OnAFullDisk(tmp_path), CONTENT, hash_file=True)

    assert raised.value.status_code == 507
    assert list(tmp_path.iterdir()) == []
    assert open_descriptors() == before


def test_a_later_failed_write_leaves_no_file_and_no_open_descriptor(tmp_path: Path) -> None:
    before = open_descriptors()

    with pytest.raises(BrokenPipeError):
        receive(ReaderGoesAway(tmp_path), CONTENT, hash_file=False)

    assert list(tmp_path.iterdir()) == []
    assert open_descriptors() == before
