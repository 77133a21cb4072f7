"""Which files a command line names, and where their transcripts go."""

from __future__ import annotations

from pathlib import Path

import pytest
from transcribe_client.inputs import FORMATS, MEDIA_EXTENSIONS, UsageError, find_sources, plan

from api.intake.multipart import ALLOWED_EXTENSIONS
from common.formats import OutputFormat


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


def test_the_client_knows_the_servers_extensions_and_formats() -> None:
    assert MEDIA_EXTENSIONS == ALLOWED_EXTENSIONS
    assert set(FORMATS) == {fmt.value for fmt in OutputFormat}


def test_folders_are_searched_for_media(tmp_path: Path) -> None:
    for name in ("b.flac", "a.MP3", "sub/c.mkv", "notes.txt", ".hidden.wav", ".cache/d.wav"):
        touch(tmp_path / "recordings" / name)
    sources = find_sources([str(tmp_path / "recordings")])
    assert [source.label for source in sources] == ["a.MP3", "b.flac", "sub/c.mkv"]
    assert sources[2].subfolder == Path("sub")


def test_files_globs_and_urls_are_taken_as_given_and_once(tmp_path: Path) -> None:
    memo = touch(tmp_path / "memo.xyz")
    for name in ("one.wav", "two.wav"):
        touch(tmp_path / name)
    url = "https://example.com/a.mp3"
    sources = find_sources([str(memo), str(tmp_path / "*.wav"), str(tmp_path / "one.wav"), url])
    assert [source.path.name if source.path else source.url for source in sources] == [
        "memo.xyz", "one.wav", "two.wav", url,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argument", "message"),
    [("missing.wav", "no such file"), ("*.nothing", "no files match"), (".", "no audio")],
)
def test_what_cannot_be_found_is_a_usage_error(
    argument: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message):
        find_sources([argument])


def test_outputs_go_next_to_the_input_or_under_out(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "sub" / "talk.m4a")
    sources = find_sources([str(tmp_path / "in")])
    beside = plan(sources, ("srt", "json"), None)[0]
    assert dict(beside.outputs) == {
        "srt": tmp_path / "in" / "sub" / "talk.srt",
        "json": tmp_path / "in" / "sub" / "talk.json",
    }
    under = plan(sources, ("vtt",), tmp_path / "out")[0]
    assert dict(under.outputs) == {"vtt": tmp_path / "out" / "sub" / "talk.vtt"}
    url = plan(find_sources(["https://host/a/Keynote%202025.mp3?x=1"]), ("txt",), None)[0]
    assert dict(url.outputs) == {"txt": Path("Keynote 2025.txt")}


def test_two_inputs_writing_one_file_is_a_usage_error(tmp_path: Path) -> None:
    touch(tmp_path / "take.wav")
    touch(tmp_path / "take.mp3")
    with pytest.raises(UsageError, match="would both write"):
        plan(find_sources([str(tmp_path)]), ("srt",), None)


def test_an_output_never_overwrites_its_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="would overwrite it"):
        plan(find_sources([str(touch(tmp_path / "odd.json"))]), ("json",), None)
