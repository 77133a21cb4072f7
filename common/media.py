"""ffmpeg/ffprobe arguments that confine decoding to one local file in an allowed container."""

from __future__ import annotations

# Demuxers allowed to open an upload. Playlist and script demuxers (hls, concat, ...) are absent,
# so a file that claims to be audio can never make ffmpeg open other files or URLs.
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mp3", "wav", "flac", "ogg", "matroska", "webm", "mov", "mp4", "m4a", "aac", "w64",
    "aiff", "caf", "asf", "amr", "avi",
)  # fmt: skip

FFMPEG_SAFETY_ARGS: tuple[str, ...] = (
    "-protocol_whitelist", "file,pipe",
    "-format_whitelist", ",".join(ALLOWED_DEMUXERS),
)  # fmt: skip
