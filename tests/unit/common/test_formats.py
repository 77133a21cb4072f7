"""The download formats, read back by parsers we did not write: srt, webvtt-py and ffmpeg."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

import pytest
import srt  # ships no type information
import webvtt

from common.formats import OutputFormat, download_filename, media_type, render
from common.transcript import Segment, Transcript, Word

# (start_ms, end_ms, text) of one cue as a reader of the file sees it.
Cue: TypeAlias = tuple[int, int, str]

# Kept apart from Latin text: ruff reads Hebrew letters beside Latin ones as look-alikes (RUF001).
HEBREW = " שלום עולם "
_ONE_MS = timedelta(milliseconds=1)
_SRT_TIMING = re.compile(r"\d{2,}:[0-5]\d:[0-5]\d,\d{3} --> \d{2,}:[0-5]\d:[0-5]\d,\d{3}")
_VTT_TIMING = re.compile(r"\d{2,}:[0-5]\d:[0-5]\d\.\d{3} --> \d{2,}:[0-5]\d:[0-5]\d\.\d{3}")
_FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(_FFMPEG is None, reason="ffmpeg is not on PATH")


def _transcript(*segments: tuple[float, float, str]) -> Transcript:
    """A transcript with these (start, end, text) segments."""
    return Transcript(
        engine="whisperx",
        model="tiny",
        language="en",
        duration=max((end for _, end, _ in segments), default=0.0),
        text=" ".join(text.strip() for _, _, text in segments),
        segments=[
            Segment(id=index, start=start, end=end, text=text)
            for index, (start, end, text) in enumerate(segments)
        ],
    )


@dataclass(frozen=True)
class Case:
    """Segments to render and the cues a reader must find in the srt and vtt files."""

    segments: tuple[tuple[float, float, str], ...]
    cues: tuple[Cue, ...]
    # Where SubRip, which has no escapes, must show different text from WebVTT.
    srt_cues: tuple[Cue, ...] | None = None

    @property
    def expected_srt(self) -> tuple[Cue, ...]:
        return self.cues if self.srt_cues is None else self.srt_cues


CASES: dict[str, Case] = {
    "two_segments": Case(
        segments=((0.0, 2.5, " Hello there."), (2.5, 5.04, " General Kenobi!")),
        cues=((0, 2500, "Hello there."), (2500, 5040, "General Kenobi!")),
    ),
    "empty": Case(segments=(), cues=()),
    "unicode": Case(
        segments=(
            (0.0, 1.0, " 日本語のテキストです。"),
            (1.0, 2.0, " Emoji 🎉👍🏽 ok"),
            (2.0, 3.0, HEBREW),
            (3.0, 4.0, " مرحبا بالعالم"),
            (4.0, 5.0, " Cafe\u0301 déjà vu"),
        ),
        cues=(
            (0, 1000, "日本語のテキストです。"),
            (1000, 2000, "Emoji 🎉👍🏽 ok"),
            (2000, 3000, HEBREW.strip()),
            (3000, 4000, "مرحبا بالعالم"),
            (4000, 5000, "Cafe\u0301 déjà vu"),
        ),
    ),
    "past_one_hour": Case(
        segments=(
            (3725.5, 3727.25, "an hour in"),
            (36_000.0, 36_001.0, "ten hours in"),
            (90_000.0, 90_000.5, "past a day"),
            (360_000.0, 360_001.0, "past ninety-nine hours"),
        ),
        cues=(
            (3_725_500, 3_727_250, "an hour in"),
            (36_000_000, 36_001_000, "ten hours in"),
            (90_000_000, 90_000_500, "past a day"),
            (360_000_000, 360_001_000, "past ninety-nine hours"),
        ),
    ),
    "rounding_carry": Case(
        segments=(
            (1.0005, 1.0015, "halves round up as written"),
            (59.9996, 119.9995, "carries into the minute"),
            (3599.9999, 3600.0004, "carries into the hour"),
        ),
        cues=(
            (1001, 1002, "halves round up as written"),
            (60_000, 120_000, "carries into the minute"),
            (3_600_000, 3_600_000, "carries into the hour"),
        ),
    ),
    "end_before_start": Case(
        segments=((5.0, 4.0, "end clamped to start"), (6.0, 7.0, "next")),
        cues=((5000, 5000, "end clamped to start"), (6000, 7000, "next")),
    ),
    "blank_segment_skipped": Case(
        segments=((0.0, 1.0, "kept"), (1.0, 2.0, " \n\n "), (2.0, 3.0, "also kept")),
        cues=((0, 1000, "kept"), (2000, 3000, "also kept")),
    ),
    "arrows_and_newlines": Case(
        segments=(
            (0.0, 1.0, "a --> b"),
            (1.0, 2.0, "first line\n\nsecond line"),
            (2.0, 3.0, "x ---> y"),
            (3.0, 4.0, "\r\nwindows\r\nline breaks\r\n"),
            (4.0, 5.0, "1\n00:00:09,000 --> 00:00:10,000\nfake cue"),
            (5.0, 6.0, "WEBVTT\nNOTE not a comment"),
            (6.0, 7.0, "fish & chips < 5 > 4"),
        ),
        cues=(
            (0, 1000, "a --> b"),
            (1000, 2000, "first line second line"),
            (2000, 3000, "x ---> y"),
            (3000, 4000, "windows line breaks"),
            (4000, 5000, "1 00:00:09,000 --> 00:00:10,000 fake cue"),
            (5000, 6000, "WEBVTT NOTE not a comment"),
            (6000, 7000, "fish & chips < 5 > 4"),
        ),
        srt_cues=(
            (0, 1000, "a -> b"),
            (1000, 2000, "first line second line"),
            (2000, 3000, "x -> y"),
            (3000, 4000, "windows line breaks"),
            (4000, 5000, "1 00:00:09,000 -> 00:00:10,000 fake cue"),
            (5000, 6000, "WEBVTT NOTE not a comment"),
            (6000, 7000, "fish & chips < 5 > 4"),
        ),
    ),
}

case_params = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


def _srt_cues(text: str) -> list[Cue]:
    """The cues `srt.parse` reads from SubRip text, checking they are numbered from 1."""
    subtitles = list(srt.parse(text))
    assert [subtitle.index for subtitle in subtitles] == list(range(1, len(subtitles) + 1))
    return [
        (subtitle.start // _ONE_MS, subtitle.end // _ONE_MS, subtitle.content)
        for subtitle in subtitles
    ]


def _ffmpeg_as_srt(path: Path, demuxer: str | None = None) -> list[Cue]:
    """The cues ffmpeg reads from a subtitle file, written back out by ffmpeg as SubRip.

    Fails the test if ffmpeg exits non-zero or reports any error.
    """
    assert _FFMPEG is not None
    forced = ["-f", demuxer] if demuxer else []
    command = [_FFMPEG, "-nostdin", "-v", "error", *forced, "-i", str(path)]
    completed = subprocess.run(
        [*command, "-map", "0", "-c:s", "srt", "-f", "srt", "-"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    stderr = completed.stderr.decode("utf-8", "replace")
    assert (completed.returncode, stderr) == (0, "")
    return _srt_cues(completed.stdout.decode("utf-8"))


@case_params
def test_srt_reads_back_with_srt_package(case: Case) -> None:
    rendered = render(_transcript(*case.segments), OutputFormat.SRT)

    assert _srt_cues(rendered) == list(case.expected_srt)
    timing_lines = rendered.splitlines()[1::4]
    assert all(_SRT_TIMING.fullmatch(line) for line in timing_lines)
    assert rendered.count("\n\n") == max(len(case.cues) - 1, 0)


@case_params
def test_vtt_reads_back_with_webvtt_py(case: Case) -> None:
    rendered = render(_transcript(*case.segments), OutputFormat.VTT)

    captions = webvtt.from_string(rendered, strict=True).captions
    read = [
        (
            caption.start_time.in_milliseconds(),
            caption.end_time.in_milliseconds(),
            html.unescape(caption.text),
        )
        for caption in captions
    ]
    assert read == list(case.cues)
    assert all(len(caption.lines) == 1 for caption in captions)
    assert rendered.startswith("WEBVTT\n")
    timing_lines = rendered.splitlines()[2::3]
    assert all(_VTT_TIMING.fullmatch(line) for line in timing_lines)


@needs_ffmpeg
@case_params
def test_ffmpeg_reads_srt(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "result.srt"
    path.write_text(render(_transcript(*case.segments), OutputFormat.SRT), encoding="utf-8")

    # ffmpeg cannot probe an empty file's format, so name the demuxer; a valid file needs no hint.
    demuxer = "srt" if not case.cues else None

    assert _ffmpeg_as_srt(path, demuxer) == list(case.expected_srt)


@needs_ffmpeg
@case_params
def test_ffmpeg_reads_vtt(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "result.vtt"
    path.write_text(render(_transcript(*case.segments), OutputFormat.VTT), encoding="utf-8")

    assert _ffmpeg_as_srt(path) == list(case.cues)


_LAYOUT_TRANSCRIPT = _transcript((0.0, 2.5, " Hello there."), (3725.5, 3727.0, " General Kenobi!"))


def test_srt_layout() -> None:
    rendered = render(_LAYOUT_TRANSCRIPT, OutputFormat.SRT)

    assert rendered == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n"
        "\n"
        "2\n01:02:05,500 --> 01:02:07,000\nGeneral Kenobi!\n"
    )


def test_vtt_layout() -> None:
    rendered = render(_LAYOUT_TRANSCRIPT, OutputFormat.VTT)

    assert rendered == (
        "WEBVTT\n"
        "\n00:00:00.000 --> 00:00:02.500\nHello there.\n"
        "\n01:02:05.500 --> 01:02:07.000\nGeneral Kenobi!\n"
    )


def test_empty_transcript_renders_empty_files() -> None:
    empty = _transcript()

    assert render(empty, OutputFormat.SRT) == ""
    assert render(empty, OutputFormat.VTT) == "WEBVTT\n"
    assert render(empty, OutputFormat.TSV) == "start\tend\ttext\n"
    assert render(empty, OutputFormat.TXT) == ""


def test_txt_is_one_stripped_segment_per_line() -> None:
    transcript = _transcript(
        (0.0, 1.0, " Hello there. "),
        (1.0, 2.0, " 日本語\n🎉"),
        (2.0, 3.0, "\n"),
        (3.0, 4.0, HEBREW),
    )

    assert render(transcript, OutputFormat.TXT) == f"Hello there.\n日本語 🎉\n{HEBREW.strip()}\n"


def test_tsv_has_header_and_integer_milliseconds() -> None:
    transcript = _transcript(
        (0.0, 2.5, " Hello\tthere. "),
        (3725.5, 59.9996 + 3600, "a\nb"),
        (4000.0005, 4001.0, " 日本語 "),
    )

    rendered = render(transcript, OutputFormat.TSV)

    assert rendered == (
        "start\tend\ttext\n0\t2500\tHello there.\n3725500\t3725500\ta b\n4000001\t4001000\t日本語\n"
    )
    assert all(len(row.split("\t")) == 3 for row in rendered.splitlines())


def test_json_round_trips_the_whole_transcript() -> None:
    transcript = _transcript((0.0, 1.5, " 日本語 🎉"), (1.5, 2.0, f"{HEBREW}\nworld"))
    transcript.segments[0].words = [Word(word="日本語", start=0.0, end=0.7, probability=0.9)]
    transcript.notes.append("aligned")

    rendered = render(transcript, OutputFormat.JSON)

    assert Transcript.model_validate_json(rendered) == transcript
    assert "日本語" in rendered


@pytest.mark.parametrize("fmt", [fmt for fmt in OutputFormat if fmt is not OutputFormat.JSON])
def test_non_finite_time_is_refused(fmt: OutputFormat) -> None:
    transcript = _transcript((0.0, float("inf"), "forever"))

    with pytest.raises(ValueError, match="not a finite number"):
        render(transcript, fmt)


def test_output_formats_are_the_query_values() -> None:
    assert [fmt.value for fmt in OutputFormat] == ["json", "txt", "srt", "vtt", "tsv", "rttm"]
    assert OutputFormat("srt") is OutputFormat.SRT


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (OutputFormat.JSON, "application/json"),
        (OutputFormat.TXT, "text/plain; charset=utf-8"),
        (OutputFormat.SRT, "application/x-subrip; charset=utf-8"),
        (OutputFormat.VTT, "text/vtt; charset=utf-8"),
        (OutputFormat.TSV, "text/tab-separated-values; charset=utf-8"),
        (OutputFormat.RTTM, "text/plain; charset=utf-8"),
    ],
)
def test_media_type(fmt: OutputFormat, expected: str) -> None:
    assert media_type(fmt) == expected


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_download_filename_uses_the_format_as_extension(fmt: OutputFormat) -> None:
    assert download_filename("0f1e2d3c", fmt) == f"0f1e2d3c.{fmt}"
