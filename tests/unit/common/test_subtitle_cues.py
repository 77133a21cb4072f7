"""Readable subtitles from word timings, speakers in every format, and rttm: each read back by
parsers we did not write (srt, webvtt-py, ffmpeg, pyannote.database's RTTM loader)."""

from __future__ import annotations

import html
import itertools
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import srt  # ships no type information
import webvtt
from pyannote.database.util import load_rttm

from common.formats import OutputFormat, SubtitleLayout, is_diarized, render
from common.transcript import Segment, Transcript, Word

_FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(_FFMPEG is None, reason="ffmpeg is not on PATH")
_ONE_MS = timedelta(milliseconds=1)

# What whisperx gives for jfk.flac (tiny.en): one segment of 105 characters over 10.7 s, its
# words timed by Whisper's cross-attention.
JFK_WORDS = [
    ("And", 0.301, 0.76), ("so", 0.76, 1.06), ("my", 1.06, 1.44), ("fellow", 1.44, 1.76),
    ("Americans", 1.76, 2.38), ("ask", 2.38, 3.88), ("not", 3.88, 4.64), ("what", 4.64, 5.7),
    ("your", 5.7, 6.02), ("country", 6.02, 6.36), ("can", 6.36, 6.76), ("do", 6.76, 7.02),
    ("for", 7.02, 7.26), ("you,", 7.26, 8.26), ("ask", 8.3, 8.66), ("what", 8.66, 8.96),
    ("you", 8.96, 9.28), ("can", 9.28, 9.5), ("do", 9.5, 9.72), ("for", 9.72, 9.92),
    ("your", 9.92, 10.22), ("country.", 10.22, 10.46),
]  # fmt: skip
JFK_TEXT = " ".join(word for word, _, _ in JFK_WORDS)


def words(*items: tuple[str, float, float], speaker: str | None = None) -> list[Word]:
    return [Word(word=text, start=start, end=end, speaker=speaker) for text, start, end in items]


def transcript(*segments: Segment, speakers: list[str] | None = None) -> Transcript:
    return Transcript(
        engine="whisperx",
        model="tiny.en",
        language="en",
        duration=max((segment.end for segment in segments), default=0.0),
        text=" ".join(segment.text for segment in segments),
        segments=list(segments),
        speakers=speakers or [],
    )


def jfk(speaker: str | None = None) -> Transcript:
    segment = Segment(
        id=0, start=0.301, end=10.983, text=JFK_TEXT, words=words(*JFK_WORDS), speaker=speaker
    )
    return transcript(segment, speakers=[speaker] if speaker else None)


def srt_cues(text: str) -> list[srt.Subtitle]:
    cues = list(srt.parse(text))
    assert [cue.index for cue in cues] == list(range(1, len(cues) + 1))
    return cues


def ffmpeg_as_srt(path: Path) -> list[tuple[int, int, str]]:
    """What ffmpeg reads from a subtitle file, written back out by ffmpeg as SubRip; fails on
    any error it reports."""
    assert _FFMPEG is not None
    completed = subprocess.run(
        [_FFMPEG, "-nostdin", "-v", "error", "-i", str(path), "-c:s", "srt", "-f", "srt", "-"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (completed.returncode, completed.stderr.decode()) == (0, "")
    return [
        (cue.start // _ONE_MS, cue.end // _ONE_MS, cue.content)
        for cue in srt_cues(completed.stdout.decode())
    ]


def assert_readable(cues: list[srt.Subtitle], layout: SubtitleLayout) -> None:
    """Every cue within the layout, except where one word alone is wider or longer."""
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= layout.max_line_count, cue
        assert all(
            len(line) <= layout.max_line_width or " " not in line.removeprefix("[SPEAKER_00] ")
            for line in lines
        ), cue
        one_word = len(cue.content.split()) == 1
        assert one_word or (cue.end - cue.start).total_seconds() <= layout.max_cue_duration_s, cue
        assert cue.start <= cue.end
    assert all(earlier.end <= later.start for earlier, later in itertools.pairwise(cues))


def test_jfk_is_cut_into_readable_cues_that_keep_every_word() -> None:
    layout = SubtitleLayout()
    cues = srt_cues(render(jfk(), OutputFormat.SRT))

    assert len(cues) > 1  # one 10.7 s cue of 105 characters before
    assert_readable(cues, layout)
    assert " ".join(cue.content.replace("\n", " ") for cue in cues) == JFK_TEXT
    assert cues[0].start == timedelta(seconds=0.301)
    assert cues[-1].end == timedelta(seconds=10.46)


def test_jfk_layout_exactly() -> None:
    assert render(jfk(), OutputFormat.SRT) == (
        "1\n00:00:00,301 --> 00:00:07,260\n"
        "And so my fellow Americans ask not what\nyour country can do for\n"
        "\n"
        "2\n00:00:07,260 --> 00:00:10,460\n"
        "you, ask what you can do for your country.\n"
    )


@pytest.mark.parametrize(
    "layout",
    [SubtitleLayout(), SubtitleLayout(20, 1, 3.0), SubtitleLayout(10, 3, 1.0)],
    ids=["default", "narrow-one-line", "tiny"],
)
def test_layout_parameters_bound_every_cue(layout: SubtitleLayout) -> None:
    rendered = render(jfk(), OutputFormat.SRT, layout)
    cues = srt_cues(rendered)

    assert_readable(cues, layout)
    vtt = webvtt.from_string(render(jfk(), OutputFormat.VTT, layout), strict=True).captions
    assert [(c.start_time.in_milliseconds(), c.end_time.in_milliseconds()) for c in vtt] == [
        (cue.start // _ONE_MS, cue.end // _ONE_MS) for cue in cues
    ]
    assert [caption.text for caption in vtt] == [cue.content for cue in cues]


def test_a_word_longer_than_a_line_has_a_line_of_its_own() -> None:
    long_word = "Donaudampfschifffahrtsgesellschaftskapitänsmütze"  # 48 characters
    segment = Segment(
        id=0,
        start=0.0,
        end=3.0,
        text=f"the {long_word} is here",
        words=words(("the", 0.0, 0.5), (long_word, 0.5, 2.0), ("is", 2.0, 2.5), ("here", 2.5, 3.0)),
    )

    cues = srt_cues(render(transcript(segment), OutputFormat.SRT))

    assert [cue.content for cue in cues] == [f"the\n{long_word}", "is here"]


def test_a_single_word_longer_than_a_cue_may_last_keeps_its_length() -> None:
    segment = Segment(
        id=0,
        start=0.0,
        end=9.0,
        text="Hmmm yes",
        words=words(("Hmmm", 0.0, 8.0), ("yes", 8.0, 9.0)),
    )

    cues = srt_cues(render(transcript(segment), OutputFormat.SRT))

    assert [(cue.content, cue.end - cue.start) for cue in cues] == [
        ("Hmmm", timedelta(seconds=8)),
        ("yes", timedelta(seconds=1)),
    ]


def test_segments_without_words_stay_one_cue_each() -> None:
    long_text = "a segment without word timings stays one cue on one line, however long it is"
    plain = transcript(Segment(id=0, start=0.0, end=12.0, text=long_text))

    assert render(plain, OutputFormat.SRT) == f"1\n00:00:00,000 --> 00:00:12,000\n{long_text}\n"
    assert render(plain, OutputFormat.VTT) == (
        f"WEBVTT\n\n00:00:00.000 --> 00:00:12.000\n{long_text}\n"
    )


def test_zero_duration_words_make_valid_cues() -> None:
    segment = Segment(
        id=0,
        start=1.0,
        end=1.0,
        text="all at once",
        words=words(("all", 1.0, 1.0), ("at", 1.0, 1.0), ("once", 1.0, 1.0)),
    )

    rendered = render(transcript(segment), OutputFormat.SRT)

    assert rendered == "1\n00:00:01,000 --> 00:00:01,000\nall at once\n"
    assert [(cue.start, cue.end) for cue in srt_cues(rendered)] == [
        (timedelta(seconds=1), timedelta(seconds=1))
    ]


def test_overlapping_words_never_make_overlapping_cues() -> None:
    segment = Segment(
        id=0,
        start=0.0,
        end=8.0,
        text="one two",
        words=words(("one", 0.0, 7.5), ("two", 6.5, 8.0)),
    )

    cues = srt_cues(render(transcript(segment), OutputFormat.SRT))

    assert [(cue.content, cue.start, cue.end) for cue in cues] == [
        ("one", timedelta(0), timedelta(seconds=6.5)),
        ("two", timedelta(seconds=6.5), timedelta(seconds=8)),
    ]


def two_speakers() -> Transcript:
    """One segment whose speaker changes mid-way (words labelled), then one of the first speaker."""
    first = Segment(
        id=0,
        start=0.0,
        end=4.0,
        text="Are you ready? I am.",
        speaker="SPEAKER_00",
        words=[
            *words(
                ("Are", 0.0, 0.4), ("you", 0.4, 0.7), ("ready?", 0.7, 1.5), speaker="SPEAKER_00"
            ),
            *words(("I", 2.0, 2.3), ("am.", 2.3, 4.0), speaker="SPEAKER_01"),
        ],
    )
    second = Segment(
        id=1,
        start=4.0,
        end=5.0,
        text="Good.",
        speaker="SPEAKER_00",
        words=words(("Good.", 4.0, 5.0)),  # the segment's speaker stands for its words'
    )
    return transcript(first, second, speakers=["SPEAKER_00", "SPEAKER_01"])


def test_a_change_of_speaker_starts_a_cue_with_its_label() -> None:
    rendered = render(two_speakers(), OutputFormat.SRT)

    assert [cue.content for cue in srt_cues(rendered)] == [
        "[SPEAKER_00] Are you ready?",
        "[SPEAKER_01] I am.",
        "[SPEAKER_00] Good.",
    ]


def test_speaker_labels_count_in_the_line_width() -> None:
    layout = SubtitleLayout(max_line_width=24, max_line_count=1)
    labelled = jfk(speaker="SPEAKER_00")

    cues = srt_cues(render(labelled, OutputFormat.SRT, layout))

    assert all(cue.content.startswith("[SPEAKER_00] ") for cue in cues)
    assert_readable(cues, layout)
    assert max(len(cue.content) for cue in cues) <= 24


def test_vtt_gives_each_cue_its_voice() -> None:
    captions = webvtt.from_string(render(two_speakers(), OutputFormat.VTT), strict=True).captions

    assert [(caption.voice, caption.text) for caption in captions] == [
        ("SPEAKER_00", "Are you ready?"),
        ("SPEAKER_01", "I am."),
        ("SPEAKER_00", "Good."),
    ]


@needs_ffmpeg
@pytest.mark.parametrize("fmt", [OutputFormat.SRT, OutputFormat.VTT])
def test_ffmpeg_reads_cut_and_labelled_cues(fmt: OutputFormat, tmp_path: Path) -> None:
    path = tmp_path / f"result.{fmt}"
    path.write_text(render(two_speakers(), fmt), encoding="utf-8")

    read = ffmpeg_as_srt(path)

    assert [(start, end) for start, end, _ in read] == [(0, 1500), (2000, 4000), (4000, 5000)]
    texts = [re.sub(r"<[^>]*>", "", html.unescape(text)) for _, _, text in read]
    assert [text.removeprefix("[SPEAKER_00] ").removeprefix("[SPEAKER_01] ") for text in texts] == [
        "Are you ready?",
        "I am.",
        "Good.",
    ]


@needs_ffmpeg
def test_ffmpeg_reads_jfk_cues(tmp_path: Path) -> None:
    path = tmp_path / "jfk.srt"
    path.write_text(render(jfk(), OutputFormat.SRT), encoding="utf-8")

    assert [text.replace("\n", " ") for _, _, text in ffmpeg_as_srt(path)] == [
        "And so my fellow Americans ask not what your country can do for",
        "you, ask what you can do for your country.",
    ]


def test_tsv_has_a_speaker_column_only_when_diarized() -> None:
    assert render(two_speakers(), OutputFormat.TSV) == (
        "start\tend\tspeaker\ttext\n"
        "0\t4000\tSPEAKER_00\tAre you ready? I am.\n"
        "4000\t5000\tSPEAKER_00\tGood.\n"
    )
    assert render(jfk(), OutputFormat.TSV).splitlines()[0] == "start\tend\ttext"


def test_labels_appear_only_when_diarized() -> None:
    assert not is_diarized(jfk())
    unlabelled = jfk().model_copy(update={"diarization_backend": "pyannote"})
    assert is_diarized(unlabelled)
    # Diarized but no speaker found for a segment: no label, an empty speaker field.
    assert "[" not in render(unlabelled, OutputFormat.SRT)
    assert render(unlabelled, OutputFormat.TSV).splitlines()[1].split("\t")[2] == ""


def test_rttm_turns_are_merged_per_speaker_and_read_by_pyannote(tmp_path: Path) -> None:
    segments = [
        Segment(id=0, start=0.0, end=1.5, text="a", speaker="SPEAKER_00"),
        Segment(id=1, start=1.5, end=3.25, text="b", speaker="SPEAKER_00"),  # touches: merged
        Segment(id=2, start=3.5, end=4.0, text="c", speaker="SPEAKER_01"),
        Segment(id=3, start=4.0, end=4.5, text="d"),  # no speaker: left out
        Segment(id=4, start=5.0, end=6.0, text="e", speaker="SPEAKER_00"),
        Segment(id=5, start=6.5, end=7.0, text="f", speaker="SPEAKER_00"),  # a gap: a new turn
    ]
    diarized = transcript(*segments, speakers=["SPEAKER_00", "SPEAKER_01"])

    rendered = render(diarized, OutputFormat.RTTM, recording_id="job 1")

    assert rendered == (
        "SPEAKER job_1 1 0.000 3.250 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER job_1 1 3.500 0.500 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
        "SPEAKER job_1 1 5.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER job_1 1 6.500 0.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    )
    path = tmp_path / "turns.rttm"
    path.write_text(rendered)
    annotation = load_rttm(path)["job_1"]
    assert [
        (round(turn.start, 3), round(turn.end, 3), label)
        for turn, _, label in annotation.itertracks(yield_label=True)
    ] == [
        (0.0, 3.25, "SPEAKER_00"),
        (3.5, 4.0, "SPEAKER_01"),
        (5.0, 6.0, "SPEAKER_00"),
        (6.5, 7.0, "SPEAKER_00"),
    ]


def test_rttm_of_no_speech_is_empty() -> None:
    assert render(transcript(speakers=[]), OutputFormat.RTTM) == ""
