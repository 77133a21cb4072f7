"""Renderers of a transcript into the download formats: json, txt, srt, vtt and tsv."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import NamedTuple

from common.transcript import Transcript


class OutputFormat(StrEnum):
    """The formats `GET /result/{job_id}?format=` can return; the value is the file extension."""

    JSON = "json"
    TXT = "txt"
    SRT = "srt"
    VTT = "vtt"
    TSV = "tsv"


class _Cue(NamedTuple):
    """One segment ready to write: times in whole milliseconds, text on a single line."""

    start_ms: int
    end_ms: int
    text: str


_MEDIA_TYPES: dict[OutputFormat, str] = {
    OutputFormat.JSON: "application/json",
    OutputFormat.TXT: "text/plain; charset=utf-8",
    OutputFormat.SRT: "application/x-subrip; charset=utf-8",
    OutputFormat.VTT: "text/vtt; charset=utf-8",
    OutputFormat.TSV: "text/tab-separated-values; charset=utf-8",
}

# Any run of two or more hyphens before ">" still reads as a cue-timing arrow, so "--->" must not
# become "-->" after one replacement.
_ARROW = re.compile(r"-{2,}>")

_MS_PER_HOUR = 3_600_000
_MS_PER_MINUTE = 60_000
_MS_PER_SECOND = 1_000


def render(transcript: Transcript, fmt: OutputFormat) -> str:
    """Return `transcript` as the text of a file in `fmt`.

    Every format but json writes one entry per segment, in the transcript's order, with the
    segment's text on a single line: line breaks inside it become one space and the ends are
    stripped; segments left with no text are omitted. Times are rounded to the millisecond (halves
    up, from the decimal the float prints as), and an end before its start is raised to the start.
    A transcript with no segments gives a valid empty file of each format.

    Raises:
        ValueError: for any format but json, a segment's start or end is not finite.
    """
    return _RENDERERS[fmt](transcript)


def media_type(fmt: OutputFormat) -> str:
    """Return the `Content-Type` header value for a file in `fmt`."""
    return _MEDIA_TYPES[fmt]


def download_filename(job_id: str, fmt: OutputFormat) -> str:
    """Return the file name to offer for job `job_id`'s result in `fmt`, e.g. `<job_id>.srt`."""
    return f"{job_id}.{fmt.value}"


def _render_json(transcript: Transcript) -> str:
    """The whole transcript, as `Transcript.model_validate_json` reads it back."""
    return transcript.model_dump_json(indent=2)


def _render_txt(transcript: Transcript) -> str:
    """One segment's text per line, each line ended by a newline."""
    return "".join(f"{cue.text}\n" for cue in _cues(transcript))


def _render_srt(transcript: Transcript) -> str:
    """SubRip: cues numbered from 1, `HH:MM:SS,mmm` times, a blank line between cues.

    SubRip has no escape for its arrow, so `-->` (or any longer run of hyphens before `>`) in
    the text is written as `->`, as openai-whisper's writer does.
    """
    blocks = (
        f"{number}\n"
        f"{_clock(cue.start_ms, ',')} --> {_clock(cue.end_ms, ',')}\n"
        f"{_ARROW.sub('->', cue.text)}\n"
        for number, cue in enumerate(_cues(transcript), start=1)
    )
    return "\n".join(blocks)


def _render_vtt(transcript: Transcript) -> str:
    """WebVTT: the `WEBVTT` header, then cues with `HH:MM:SS.mmm` times after a blank line each.

    The text is escaped as WebVTT cue text requires (`&`, `<`, `>` as character references), which
    also keeps `-->` out of it; a WebVTT reader shows the original characters.
    """
    blocks = (
        f"\n{_clock(cue.start_ms, '.')} --> {_clock(cue.end_ms, '.')}\n{_escape_vtt(cue.text)}\n"
        for cue in _cues(transcript)
    )
    return "WEBVTT\n" + "".join(blocks)


def _render_tsv(transcript: Transcript) -> str:
    """A `start`, `end`, `text` header, then one row per segment with times in integer ms."""
    rows = (f"{cue.start_ms}\t{cue.end_ms}\t{_tsv_field(cue.text)}\n" for cue in _cues(transcript))
    return "start\tend\ttext\n" + "".join(rows)


_RENDERERS: dict[OutputFormat, Callable[[Transcript], str]] = {
    OutputFormat.JSON: _render_json,
    OutputFormat.TXT: _render_txt,
    OutputFormat.SRT: _render_srt,
    OutputFormat.VTT: _render_vtt,
    OutputFormat.TSV: _render_tsv,
}


def _cues(transcript: Transcript) -> Iterator[_Cue]:
    """The segments with text, as single-line cues whose end is never before their start."""
    for segment in transcript.segments:
        text = _single_line(segment.text)
        if not text:
            continue
        start_ms = _milliseconds(segment.start)
        end_ms = max(_milliseconds(segment.end), start_ms)
        yield _Cue(start_ms, end_ms, text)


def _single_line(text: str) -> str:
    """`text` on one line: each line break and the blanks around it become one space.

    Line breaks are all those `str.splitlines` knows; the ends are stripped and every other
    character is kept as it is.
    """
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _milliseconds(seconds: float) -> int:
    """`seconds` rounded to whole milliseconds, halves up, as the float prints (1.0005 -> 1001).

    Rounding the total first, then splitting it into fields, is what carries 59.9996 s to
    00:01:00.000 instead of writing 00:00:59.1000.
    """
    value = Decimal(repr(seconds))
    if not value.is_finite():
        raise ValueError(f"time {seconds!r} s is not a finite number of seconds")
    return int(value.scaleb(3).to_integral_value(rounding=ROUND_HALF_UP))


def _clock(total_ms: int, decimal_mark: str) -> str:
    """`HH:MM:SS<mark>mmm`, hours at least two digits and never wrapped at a day."""
    hours, rest = divmod(total_ms, _MS_PER_HOUR)
    minutes, rest = divmod(rest, _MS_PER_MINUTE)
    seconds, millis = divmod(rest, _MS_PER_SECOND)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal_mark}{millis:03d}"


def _tsv_field(text: str) -> str:
    """`text` with its tabs, which would split the row, written as spaces."""
    return text.replace("\t", " ")


def _escape_vtt(text: str) -> str:
    """`text` with the characters WebVTT cue text reserves written as character references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
