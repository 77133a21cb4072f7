"""Renderers of a transcript into the download formats: json, txt, srt, vtt, tsv and rttm."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import NamedTuple

from common.transcript import Segment, Transcript, Word


class OutputFormat(StrEnum):
    """The formats `GET /result/{job_id}?format=` can return; the value is the file extension."""

    JSON = "json"
    TXT = "txt"
    SRT = "srt"
    VTT = "vtt"
    TSV = "tsv"
    RTTM = "rttm"


@dataclass(frozen=True)
class SubtitleLayout:
    """How SRT and VTT cues are cut from word timings: at most `max_line_count` lines of at
    most `max_line_width` characters (a speaker's SRT label included; a single longer word
    keeps a line to itself), and at most `max_cue_duration_s` seconds (a single longer word
    keeps a cue to itself)."""

    max_line_width: int = 42
    max_line_count: int = 2
    max_cue_duration_s: float = 7.0


DEFAULT_LAYOUT = SubtitleLayout()

NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "yue", "bo"})
"""Languages written without spaces between words: their words join with nothing between."""


class _Cue(NamedTuple):
    """One cue ready to write: times in whole milliseconds, its lines, its speaker if known."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        """The cue's lines as one line."""
        return " ".join(self.lines)


_MEDIA_TYPES: dict[OutputFormat, str] = {
    OutputFormat.JSON: "application/json",
    OutputFormat.TXT: "text/plain; charset=utf-8",
    OutputFormat.SRT: "application/x-subrip; charset=utf-8",
    OutputFormat.VTT: "text/vtt; charset=utf-8",
    OutputFormat.TSV: "text/tab-separated-values; charset=utf-8",
    OutputFormat.RTTM: "text/plain; charset=utf-8",
}

# Any run of two or more hyphens before ">" still reads as a cue-timing arrow, so "--->" must not
# become "-->" after one replacement.
_ARROW = re.compile(r"-{2,}>")

_MS_PER_HOUR = 3_600_000
_MS_PER_MINUTE = 60_000
_MS_PER_SECOND = 1_000


def render(
    transcript: Transcript,
    fmt: OutputFormat,
    layout: SubtitleLayout = DEFAULT_LAYOUT,
    recording_id: str = "audio",
) -> str:
    """Return `transcript` as the text of a file in `fmt`.

    txt and tsv write one entry per segment, in the transcript's order, with the segment's
    text on a single line: line breaks inside it become one space and the ends are stripped;
    segments left with no text are omitted. srt and vtt do the same for segments without
    words; a segment with words is cut into cues at word boundaries by `layout`, and at every
    change of speaker. Times are rounded to the millisecond (halves up, from the decimal the
    float prints as), an end before its start is raised to the start, and a cue ends no later
    than the next one starts. A diarized transcript (`is_diarized`) labels its cues' speakers
    (srt `[SPEAKER_00] `, vtt `<v SPEAKER_00>`) and has a `speaker` column in tsv. rttm lists
    the speakers' turns (consecutive segments of one speaker that touch are one turn) under
    `recording_id`. A transcript with no segments gives a valid empty file of each format.

    Raises:
        ValueError: for any format but json, a segment's start or end is not finite.
    """
    return _RENDERERS[fmt](transcript, layout, recording_id)


def is_diarized(transcript: Transcript) -> bool:
    """Whether speakers were sought in this transcript (rttm exists only for such ones)."""
    return bool(transcript.speakers) or transcript.diarization_backend is not None


def media_type(fmt: OutputFormat) -> str:
    """Return the `Content-Type` header value for a file in `fmt`."""
    return _MEDIA_TYPES[fmt]


def download_filename(job_id: str, fmt: OutputFormat) -> str:
    """Return the file name to offer for job `job_id`'s result in `fmt`, e.g. `<job_id>.srt`."""
    return f"{job_id}.{fmt.value}"


def _render_json(transcript: Transcript, layout: SubtitleLayout, recording_id: str) -> str:
    """The whole transcript, as `Transcript.model_validate_json` reads it back."""
    del layout, recording_id
    return transcript.model_dump_json(indent=2)


def _render_txt(transcript: Transcript, layout: SubtitleLayout, recording_id: str) -> str:
    """One segment's text per line, each line ended by a newline."""
    del layout, recording_id
    return "".join(f"{cue.text}\n" for cue in _segment_cues(transcript))


def _srt_label(speaker: str | None) -> str:
    return f"[{speaker}] " if speaker else ""


def _render_srt(transcript: Transcript, layout: SubtitleLayout, recording_id: str) -> str:
    """SubRip: cues numbered from 1, `HH:MM:SS,mmm` times, a blank line between cues.

    SubRip has no escape for its arrow, so `-->` (or any longer run of hyphens before `>`) in
    the text is written as `->`, as openai-whisper's writer does. A speaker is a label before
    the cue's first line.
    """
    del recording_id
    label = _srt_label if is_diarized(transcript) else _no_label
    blocks = (
        f"{number}\n"
        f"{_clock(cue.start_ms, ',')} --> {_clock(cue.end_ms, ',')}\n"
        + _ARROW.sub("->", label(cue.speaker) + "\n".join(cue.lines))
        + "\n"
        for number, cue in enumerate(_subtitle_cues(transcript, layout, label), start=1)
    )
    return "\n".join(blocks)


def _render_vtt(transcript: Transcript, layout: SubtitleLayout, recording_id: str) -> str:
    """WebVTT: the `WEBVTT` header, then cues with `HH:MM:SS.mmm` times after a blank line each.

    The text is escaped as WebVTT cue text requires (`&`, `<`, `>` as character references), which
    also keeps `-->` out of it; a WebVTT reader shows the original characters. A speaker is a
    voice span, `<v SPEAKER_00>`, around the cue's text.
    """
    del recording_id
    diarized = is_diarized(transcript)

    def text(cue: _Cue) -> str:
        body = "\n".join(_escape_vtt(line) for line in cue.lines)
        return f"<v {_escape_vtt(cue.speaker)}>{body}" if diarized and cue.speaker else body

    blocks = (
        f"\n{_clock(cue.start_ms, '.')} --> {_clock(cue.end_ms, '.')}\n{text(cue)}\n"
        for cue in _subtitle_cues(transcript, layout, _no_label)
    )
    return "WEBVTT\n" + "".join(blocks)


def _render_tsv(transcript: Transcript, layout: SubtitleLayout, recording_id: str) -> str:
    """A `start`, `end`, `text` header (`start`, `end`, `speaker`, `text` when diarized), then
    one row per segment with times in integer ms; an unknown speaker is an empty field."""
    del layout, recording_id
    cues = _segment_cues(transcript)
    if is_diarized(transcript):
        return "start\tend\tspeaker\ttext\n" + "".join(
            f"{cue.start_ms}\t{cue.end_ms}\t{_tsv_field(cue.speaker or '')}\t"
            f"{_tsv_field(cue.text)}\n"
            for cue in cues
        )
    rows = (f"{cue.start_ms}\t{cue.end_ms}\t{_tsv_field(cue.text)}\n" for cue in cues)
    return "start\tend\ttext\n" + "".join(rows)


class _Turn(NamedTuple):
    start_ms: int
    end_ms: int
    speaker: str


def _render_rttm(transcript: Transcript, layout: SubtitleLayout, recording_id: str) -> str:
    """NIST RTTM: one `SPEAKER <recording> 1 <onset> <duration> <NA> <NA> <speaker> <NA> <NA>`
    line per speaker turn, seconds with three decimals (blanks in names written as `_`);
    segments without a speaker are left out, and consecutive segments of one speaker that
    touch or overlap are one turn."""
    del layout
    turns: list[_Turn] = []
    for segment in transcript.segments:
        start_ms = _milliseconds(segment.start)
        end_ms = max(_milliseconds(segment.end), start_ms)
        if segment.speaker is None:
            continue
        last = turns[-1] if turns else None
        if last is not None and last.speaker == segment.speaker and start_ms <= last.end_ms:
            turns[-1] = last._replace(end_ms=max(last.end_ms, end_ms))
        else:
            turns.append(_Turn(start_ms, end_ms, segment.speaker))
    recording = _rttm_field(recording_id) or "audio"
    return "".join(
        f"SPEAKER {recording} 1 {_seconds(turn.start_ms)} "
        f"{_seconds(turn.end_ms - turn.start_ms)} <NA> <NA> {_rttm_field(turn.speaker)} "
        "<NA> <NA>\n"
        for turn in turns
    )


def _rttm_field(text: str) -> str:
    """`text` as one RTTM field: its blanks, which would split it, written as `_`."""
    return re.sub(r"\s", "_", text.strip())


_Renderer = Callable[[Transcript, SubtitleLayout, str], str]

_RENDERERS: dict[OutputFormat, _Renderer] = {
    OutputFormat.JSON: _render_json,
    OutputFormat.TXT: _render_txt,
    OutputFormat.SRT: _render_srt,
    OutputFormat.VTT: _render_vtt,
    OutputFormat.TSV: _render_tsv,
    OutputFormat.RTTM: _render_rttm,
}


def _no_label(speaker: str | None) -> str:
    del speaker
    return ""


def _segment_cues(transcript: Transcript) -> Iterator[_Cue]:
    """The segments with text, as single-line cues whose end is never before their start."""
    for segment in transcript.segments:
        cue = _segment_cue(segment)
        if cue is not None:
            yield cue


def _segment_cue(segment: Segment) -> _Cue | None:
    text = _single_line(segment.text)
    start_ms = _milliseconds(segment.start)
    end_ms = max(_milliseconds(segment.end), start_ms)
    return _Cue(start_ms, end_ms, (text,), segment.speaker) if text else None


def _subtitle_cues(
    transcript: Transcript, layout: SubtitleLayout, label: Callable[[str | None], str]
) -> list[_Cue]:
    """The cues of srt and vtt: segments without words whole, as `_segment_cues`; segments with
    words cut by `_cut_words`; a cue that runs past the next one's start ends there."""
    joiner = "" if transcript.language in NO_SPACE_LANGUAGES else " "
    cues: list[_Cue] = []
    for segment in transcript.segments:
        whole = _segment_cue(segment)  # also refuses a segment's non-finite times
        if not segment.words:
            cues += [whole] if whole is not None else []
        else:
            cues += _cut_words(segment.words, segment.speaker, layout, label, joiner)
    for index in range(len(cues) - 1):
        cue, following = cues[index], cues[index + 1]
        if cue.start_ms <= following.start_ms < cue.end_ms:
            cues[index] = cue._replace(end_ms=following.start_ms)
    return cues


class _Timed(NamedTuple):
    text: str
    start_ms: int
    end_ms: int


# The full-width comma, question and exclamation marks are written as escapes: ruff reads them
# as look-alikes of the ASCII ones (RUF001).
CLAUSE_ENDS = (".", ",", "?", "!", ";", ":", "…", "。", "\uff0c", "\uff1f", "\uff01", "、")
"""Marks after which a cue that must end is preferably cut (the rest opens the next cue)."""


def _cut_words(
    words: Sequence[Word],
    speaker: str | None,
    layout: SubtitleLayout,
    label: Callable[[str | None], str] = _no_label,
    joiner: str = " ",
) -> list[_Cue]:
    """Words (of one segment, whose speaker is `speaker` where a word has none) as cues.

    A cue ends at a change of speaker, and before a word that would take it past
    `layout.max_line_count` lines or `layout.max_cue_duration_s` seconds; it then ends after
    its last word that closes a clause (`CLAUSE_ENDS`) when it has one, the words after that
    opening the next cue. Lines are filled word by word up to `layout.max_line_width`
    characters, `label(speaker)` counted on the first; words are joined by `joiner`; words with
    no text are skipped.
    """
    cues: list[_Cue] = []
    current: list[_Timed] = []
    current_speaker: str | None = None
    max_ms = _milliseconds(layout.max_cue_duration_s)

    def lines_of(items: Sequence[_Timed]) -> list[str]:
        texts = [item.text for item in items]
        return _wrap(texts, layout.max_line_width, label(current_speaker), joiner)

    def fits(items: Sequence[_Timed]) -> bool:
        duration_ms = max(item.end_ms for item in items) - items[0].start_ms
        return duration_ms <= max_ms and len(lines_of(items)) <= layout.max_line_count

    def close(items: Sequence[_Timed]) -> None:
        end_ms = max(items[0].start_ms, *(item.end_ms for item in items))
        cues.append(_Cue(items[0].start_ms, end_ms, tuple(lines_of(items)), current_speaker))

    for word in words:
        text = _single_line(word.word)
        if not text:
            continue
        who = word.speaker if word.speaker is not None else speaker
        timed = _Timed(text, _milliseconds(word.start), _milliseconds(word.end))
        if current and who != current_speaker:
            close(current)
            current = []
        elif current and not fits([*current, timed]):
            cut = next(
                (
                    index
                    for index in range(len(current) - 1, 0, -1)
                    if current[index - 1].text.endswith(CLAUSE_ENDS)
                ),
                len(current),
            )
            close(current[:cut])
            current = current[cut:]
            if current and not fits([*current, timed]):
                close(current)
                current = []
        current_speaker = who
        current.append(timed)
    if current:
        close(current)
    return cues


def _wrap(words: Sequence[str], width: int, label: str = "", joiner: str = " ") -> list[str]:
    """`words` filled into lines of at most `width` characters, `label` taking room on the
    first (and left out of the lines returned); a word longer than `width` has its own line."""
    lines: list[str] = []
    line = ""
    room = width - len(label)
    for word in words:
        candidate = f"{line}{joiner}{word}" if line else word
        if line and len(candidate) > room:
            lines.append(line)
            line, room = word, width
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


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


def _seconds(total_ms: int) -> str:
    """Whole milliseconds as seconds with three decimals, as RTTM writes times."""
    seconds, millis = divmod(total_ms, _MS_PER_SECOND)
    return f"{seconds}.{millis:03d}"


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
