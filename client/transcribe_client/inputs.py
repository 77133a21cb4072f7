"""What a batch works on: the files and URLs the command line names, and where each one's
transcripts go."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

MEDIA_EXTENSIONS: frozenset[str] = frozenset(
    {
        "mp3", "wav", "m4a", "flac", "ogg", "oga", "opus", "webm", "mp4", "aac", "mka",
        "aif", "aiff", "aifc", "caf", "wma", "amr", "3gp", "3g2",
        "mov", "m4v", "mkv", "avi", "wmv",
    }
)  # fmt: skip
"""The extensions the server accepts, picked from folders (a test keeps them equal to the
server's); a file named on the command line is sent whatever its extension."""

FORMATS: tuple[str, ...] = ("srt", "vtt", "txt", "tsv", "json", "rttm")
"""The output formats the server renders (GET /result/{id}?format=); rttm for diarized jobs."""

GLOB_CHARACTERS = frozenset("*?[")
URL_SCHEMES = ("http://", "https://")


class UsageError(Exception):
    """The command line cannot be carried out as written (exit status 2)."""


@dataclass(frozen=True)
class Source:
    """One file or URL to transcribe, with the folder its outputs mirror under `--out`."""

    label: str
    """How it is named on screen: the path as given, or relative to the folder it was found in."""
    path: Path | None = None
    url: str | None = None
    subfolder: Path = Path()
    """Where under a folder argument it was found, kept below `--out`."""


@dataclass(frozen=True)
class Item:
    """A source and the file each requested format is written to."""

    source: Source
    outputs: tuple[tuple[str, Path], ...]

    @property
    def label(self) -> str:
        return self.source.label

    def missing_outputs(self) -> dict[str, Path]:
        """The formats whose file does not exist yet, in the order asked for."""
        return {fmt: path for fmt, path in self.outputs if not path.exists()}


def is_url(argument: str) -> bool:
    return argument.lower().startswith(URL_SCHEMES)


def _media_in(folder: Path) -> Iterator[Path]:
    """Media files under `folder`, in name order, hidden files and folders left out."""
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            _, dot, extension = name.rpartition(".")
            if dot and not name.startswith(".") and extension.lower() in MEDIA_EXTENSIONS:
                yield Path(root) / name


def find_sources(arguments: Sequence[str]) -> list[Source]:
    """Expand files, folders (searched recursively for media), globs and URLs, each once."""
    sources: list[Source] = []
    seen: set[str] = set()

    def add(source: Source) -> None:
        identity = source.url or str(source.path.resolve() if source.path else "")
        if identity not in seen:
            seen.add(identity)
            sources.append(source)

    for argument in arguments:
        if is_url(argument):
            add(Source(label=argument, url=argument))
            continue
        path = Path(argument)
        if path.is_dir():
            found = list(_media_in(path))
            if not found:
                raise UsageError(f"{argument}: no audio or video files in this folder")
            for file in found:
                add(
                    Source(
                        str(file.relative_to(path)), file, subfolder=file.parent.relative_to(path)
                    )
                )
        elif path.is_file():
            add(Source(argument, path))
        elif GLOB_CHARACTERS & set(argument):
            matches = sorted(Path(match) for match in glob.glob(argument, recursive=True))
            files = [match for match in matches if match.is_file()]
            if not files:
                raise UsageError(f"{argument}: no files match")
            for file in files:
                add(Source(str(file), file))
        else:
            raise UsageError(f"{argument}: no such file or folder")
    return sources


def _url_stem(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    stem = name.rpartition(".")[0] if "." in name else name
    return stem.strip() or "download"


def plan(sources: Sequence[Source], formats: Sequence[str], out_dir: Path | None) -> list[Item]:
    """Each source's output files, `<name>.<format>` next to the input or under `out_dir`;
    a UsageError when two sources would write the same file or one would overwrite its input."""
    items: list[Item] = []
    writers: dict[Path, str] = {}
    for source in sources:
        if source.path is not None:
            stem = source.path.stem
            folder = source.path.parent if out_dir is None else out_dir / source.subfolder
        else:
            stem = _url_stem(source.url or "")
            folder = out_dir or Path()
        outputs = tuple((fmt, folder / f"{stem}.{fmt}") for fmt in formats)
        for _, output in outputs:
            key = output.resolve()
            if source.path is not None and key == source.path.resolve():
                raise UsageError(f"{source.label}: its {output.suffix} output would overwrite it")
            if key in writers:
                raise UsageError(
                    f"{writers[key]} and {source.label} would both write {output}; "
                    "rename one, or transcribe them into different --out folders"
                )
            writers[key] = source.label
        items.append(Item(source, outputs))
    return items
