"""A catalogue of hostile requests, each with the status it must get, and what it may leave.

Every refused upload leaves no file and no job; every accepted one is stored as
`<job id>.<ext>` inside UPLOAD_DIR, whatever name the client sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from rq import Queue

from api.keys.store import KeyStore
from common.contract import load_job
from config import Settings
from tests import hostile
from tests.audio import JFK, write_tone_wav
from tests.fakes import queued_jobs
from tests.unit.conftest import uploads_left

RANDOM_BYTES = random.Random(5).randbytes(4096)
HLS_LOCAL = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
HLS_REMOTE = b"#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/next.mp3\n#EXT-X-ENDLIST\n"
CONCAT = b"ffconcat version 1.0\nfile /etc/passwd\n"
CONCAT_SUBFILE = b"ffconcat version 1.0\nfile 'subfile,,start,0,end,10,,:/etc/passwd'\n"
SDP = b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
HTML = b"<!doctype html><html><body>not audio</body></html>"
ID3_ONLY = b"ID3\x04\x00\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class Media:
    """Real and hostile files, made once per session."""

    tone: bytes
    jfk: bytes
    bomb: bytes
    lying_bomb: bytes
    video: bytes


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """The session's media: a tone, jfk.flac, a 5-hour silent FLAC (with and without a lie)."""
    folder = tmp_path_factory.mktemp("hostile")
    bomb = hostile.silent_flac(folder / "bomb.flac", seconds=5 * 3600)
    return Media(
        tone=write_tone_wav(folder / "tone.wav").read_bytes(),
        jfk=JFK.read_bytes(),
        bomb=bomb.read_bytes(),
        lying_bomb=hostile.falsify_flac_duration(bomb, folder / "liar.flac", 10).read_bytes(),
        video=hostile.video_without_audio(folder / "video.mp4").read_bytes(),
    )


Send = Callable[[TestClient, Media], httpx2.Response]


def upload(
    filename: str,
    content: Callable[[Media], bytes],
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Send:
    """POST /transcribe with one file part and the given fields (engine whisperx by default)."""

    def send(client: TestClient, media: Media) -> httpx2.Response:
        return client.post(
            "/transcribe",
            files={"file": (filename, content(media), "application/octet-stream")},
            data={"engine": "whisperx"} if fields is None else fields,
            headers=headers,
        )

    return send


def tone(media: Media) -> bytes:
    return media.tone


def const(data: bytes) -> Callable[[Media], bytes]:
    """The same bytes whatever the session's media."""
    return lambda _media: data


def raw_post(body: bytes, content_type: str) -> Send:
    def send(client: TestClient, _media: Media) -> httpx2.Response:
        return client.post("/transcribe", content=body, headers={"content-type": content_type})

    return send


def get(path: str) -> Send:
    def send(client: TestClient, _media: Media) -> httpx2.Response:
        return client.get(path)

    return send


def two_files(client: TestClient, media: Media) -> httpx2.Response:
    return client.post(
        "/transcribe",
        files=[("file", ("a.wav", media.tone)), ("file", ("b.wav", media.tone))],
        data={"engine": "whisperx"},
    )


def field_flood(client: TestClient, media: Media) -> httpx2.Response:
    fields = {f"field{index}": "x" for index in range(40)}
    return client.post(
        "/transcribe", files={"file": ("a.wav", media.tone)}, data={"engine": "whisperx", **fields}
    )


def fields_only(client: TestClient, _media: Media) -> httpx2.Response:
    return client.post("/transcribe", files={"engine": (None, "whisperx")})


def nameless_file(client: TestClient, media: Media) -> httpx2.Response:
    return client.post(
        "/transcribe", files={"engine": (None, "whisperx"), "file": (None, media.tone)}
    )


def truncated_upload(client: TestClient, media: Media) -> httpx2.Response:
    body = (
        b'--cut\r\nContent-Disposition: form-data; name="engine"\r\n\r\nwhisperx\r\n'
        b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        + media.tone[: len(media.tone) // 2]
    )
    return client.post(
        "/transcribe", content=body, headers={"content-type": "multipart/form-data; boundary=cut"}
    )


MALFORMED_MULTIPART = (
    b'--frontier\r\nContent-Disposition: form-data; name="engine"\r\n\r\nwhisperx\r\n'
    b'--frontier\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
    b"\r\nRIFF\r\n--frontier-garbage\x00\xff"
)


@dataclass(frozen=True)
class Case:
    """One hostile request and the status it must get."""

    name: str
    send: Send
    status: int
    accepted_extension: str | None = field(default=None)


CATALOGUE: list[Case] = [
    # --- content that is not (only) audio --------------------------------------------------
    Case("empty file", upload("silence.wav", const(b"")), 415),
    Case("random bytes as mp3", upload("noise.mp3", const(RANDOM_BYTES)), 415),
    Case("random bytes as flac", upload("noise.flac", const(RANDOM_BYTES)), 415),
    Case("RIFF magic and zeros", upload("fake.wav", const(b"RIFF" + bytes(100))), 415),
    Case("truncated flac, 8 KiB", upload("cut.flac", lambda m: m.jfk[:8192]), 415),
    Case("truncated flac, 40 bytes", upload("cut.flac", lambda m: m.jfk[:40]), 415),
    # Real audio that stops early is accepted: the samples that are there get transcribed.
    Case("truncated wav, half", upload("half.wav", lambda m: m.tone[: len(m.tone) // 2]), 200),
    # A WAV header with no samples: accepted on its header's word; the worker fails it with a
    # readable reason ("decodes to no audio samples").
    Case("wav header, no samples", upload("hollow.wav", lambda m: m.tone[:44]), 200),
    Case("wav content named .mp3", upload("song.mp3", tone), 200, "mp3"),
    Case("HLS playlist named .mp3", upload("song.mp3", const(HLS_LOCAL)), 415),
    Case("HLS playlist with URL named .m4a", upload("song.m4a", const(HLS_REMOTE)), 415),
    Case("ffconcat script named .mp3", upload("song.mp3", const(CONCAT)), 415),
    Case("ffconcat subfile named .wav", upload("song.wav", const(CONCAT_SUBFILE)), 415),
    Case("SDP (RTP session) named .ogg", upload("song.ogg", const(SDP)), 415),
    Case("PNG named .mp3", upload("song.mp3", const(PNG)), 415),
    Case("HTML named .mp3", upload("song.mp3", const(HTML)), 415),
    Case("ID3 tag and nothing else", upload("song.mp3", const(ID3_ONLY)), 415),
    Case("video without audio", upload("clip.mp4", lambda m: m.video), 415),
    Case("decode bomb: 5 h of silence in 3 MB", upload("bomb.flac", lambda m: m.bomb), 413),
    # The header says 10 s: the API cannot know better; the worker stops decoding at the cap
    # (tests/unit/test_decode_limits.py).
    Case("decode bomb with a lying header", upload("liar.flac", lambda m: m.lying_bomb), 200),
    Case("file over MAX_FILE_SIZE", upload("big.wav", const(bytes(9 * 1024 * 1024))), 413),
    # --- file names --------------------------------------------------------------------------
    Case("text extension", upload("notes.txt", tone), 400),
    Case("no extension", upload("audio", tone), 400),
    Case("playlist extension", upload("list.m3u8", const(HLS_LOCAL)), 400),
    Case("double extension", upload("song.wav.exe", tone), 400),
    Case("path traversal", upload("../../../etc/cron.d/evil.wav", tone), 200, "wav"),
    Case("windows path", upload("C:\\Windows\\System32\\evil.WAV", tone), 200, "wav"),
    Case("unicode name", upload("日本語 ñ 🎵 Ωmega.wav", tone), 200, "wav"),
    Case("2000-character name", upload("a" * 2000 + ".wav", tone), 200, "wav"),
    Case("quotes and semicolons", upload('a";name="engine";.wav', tone), 200, "wav"),
    # --- form fields -------------------------------------------------------------------------
    Case("empty multipart body", raw_post(b"", "multipart/form-data; boundary=x"), 400),
    Case("upload cut off mid-file", truncated_upload, 400),
    Case("no file part", fields_only, 422),
    Case("file part without a filename", nameless_file, 422),
    Case("missing engine", upload("a.wav", tone, fields={"language": "en"}), 422),
    Case("unknown engine", upload("a.wav", tone, fields={"engine": "whisper.cpp"}), 422),
    Case(
        "unknown language",
        upload("a.wav", tone, fields={"engine": "whisperx", "language": "klingon"}),
        422,
    ),
    Case("unknown model", upload("a.wav", tone, fields={"engine": "whisperx", "model": "xl"}), 422),
    Case(
        "model as a path",
        upload("a.wav", tone, fields={"engine": "whisperx", "model": "../../models/large-v3"}),
        422,
    ),
    Case(
        "English-only model asked for German",
        upload("a.wav", tone, fields={"engine": "whisperx", "language": "de"}),
        422,
    ),
    Case("70 KB field", upload("a.wav", tone, fields={"engine": "w" * 70_000}), 400),
    Case("two file parts", two_files, 400),
    Case("forty fields", field_flood, 400),
    Case("JSON instead of multipart", raw_post(b'{"engine":"whisperx"}', "application/json"), 415),
    Case("multipart without boundary", raw_post(b"--x--", "multipart/form-data"), 415),
    Case(
        "malformed multipart",
        raw_post(MALFORMED_MULTIPART, "multipart/form-data; boundary=frontier"),
        400,
    ),
    Case(
        "Idempotency-Key with spaces",
        upload("a.wav", tone, headers={"Idempotency-Key": "a b"}),
        422,
    ),
    Case(
        "oversized Idempotency-Key",
        upload("a.wav", tone, headers={"Idempotency-Key": "k" * 300}),
        422,
    ),
    # --- absurd job ids ------------------------------------------------------------------------
    Case("traversal job id", get("/status/..%2F..%2Fetc%2Fpasswd"), 404),
    Case("10 000-character job id", get("/status/" + "f" * 10_000), 404),
    Case("Redis key as job id", get("/status/rq:job:anything"), 404),
    Case("glob as job id", get("/status/*"), 404),
    Case("SQL as job id", get("/result/' OR '1'='1"), 404),
    Case("unicode job id", get("/status/%E2%98%83"), 404),
    Case(
        "unknown result format", get("/result/00000000-0000-4000-8000-000000000000?format=exe"), 422
    ),
]


def test_the_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 25
    assert len({case.name for case in CATALOGUE}) == len(CATALOGUE)


@pytest.fixture(params=["keys off", "keys on"])
def sender(
    request: pytest.FixtureRequest, client: TestClient, settings: Settings, queue: Queue
) -> TestClient:
    """The API as it is by default, and with REQUIRE_API_KEY on and a valid key sent."""
    if request.param == "keys on":
        settings.require_api_key = True
        secret = KeyStore(queue.connection, queue.name).create("hostile")
        client.headers["Authorization"] = f"Bearer {secret}"
    return client


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_hostile_input_gets_its_status(
    case: Case, sender: TestClient, media: Media, settings: Settings, queue: Queue
) -> None:
    settings.max_file_size = 8 * 1024 * 1024
    response = case.send(sender, media)
    assert response.status_code == case.status, response.text
    assert "Traceback" not in response.text
    assert str(settings.upload_dir) not in response.text, "a server path leaked"
    if case.status != 200:
        assert uploads_left(settings) == []
        assert queued_jobs(queue) == 0
        return
    job = load_job(queue, response.json()["job_id"])
    assert job is not None
    saved = Path(job.kwargs["audio_path"])
    assert uploads_left(settings) == [saved]
    assert saved.parent == settings.upload_dir
    assert saved.name == f"{job.id}.{case.accepted_extension or saved.suffix[1:]}"
