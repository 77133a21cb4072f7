"""The shared-folder backend: uploads are files in UPLOAD_DIR, which every host mounts."""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

from common.contract import INCOMING_PREFIX, UPLOAD_NAME
from common.storage import AudioMissing, AudioTooLarge, Listed, StorageConfig


def write_all(handle: int, data: bytes) -> None:
    """Write every byte of `data` to the open file `handle`."""
    view = memoryview(data)
    while view:
        view = view[os.write(handle, view) :]


def sync_and_close(handle: int) -> None:
    """Flush the file to disk and close it (closed even when the flush fails)."""
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class FileSink:
    """Writes an upload into one open file; the descriptor is closed once, by `finish` or
    `close`, whichever comes first."""

    def __init__(self, handle: int) -> None:
        self._handle: int | None = handle

    def write(self, data: bytes) -> None:
        if self._handle is None:
            raise ValueError("the upload's file is closed")
        write_all(self._handle, data)

    def finish(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            raise ValueError("the upload's file is closed")
        sync_and_close(handle)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            os.close(handle)


class StagedFile:
    """One file in the uploads folder, first under a temporary name (`.incoming-…`), then
    renamed to `<job id>.<extension>` by `commit`."""

    keep_audio = False

    def __init__(self, upload_dir: Path, job_id: str | None = None) -> None:
        self.job_id = job_id or str(uuid.uuid4())
        self.path = upload_dir / f"{INCOMING_PREFIX}{secrets.token_hex(16)}"
        self.kept = False

    def create(self) -> int:
        """Create the file (it must not exist) and return a descriptor open for writing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)

    def open_sink(self) -> FileSink:
        return FileSink(self.create())

    def probe_target(self) -> Path:
        return self.path

    def commit(self, extension: str) -> str:
        final_path = self.path.parent / f"{self.job_id}.{extension}"
        os.rename(self.path, final_path)
        self.path = final_path
        return str(final_path)

    def keep(self) -> None:
        self.kept = True

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class LocalStore:
    """UPLOAD_DIR as the uploads' store; a reference is the file's absolute path."""

    def __init__(self, config: StorageConfig) -> None:
        self.upload_dir = config.upload_dir

    def stage(self) -> StagedFile:
        return StagedFile(self.upload_dir)

    def holds(self, ref: str) -> bool:
        return Path(ref).parent.resolve() == self.upload_dir.resolve()

    def exists(self, ref: str) -> bool:
        return Path(ref).is_file()

    @contextlib.contextmanager
    def local_copy(self, ref: str, max_bytes: int) -> Iterator[Path]:
        """The upload itself: the folder is local already."""
        path = Path(ref)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise AudioMissing("the uploaded file is gone") from None
        if size > max_bytes:
            raise AudioTooLarge(f"the file is larger than the {max_bytes} byte limit")
        yield path

    def delete(self, ref: str) -> None:
        Path(ref).unlink(missing_ok=True)

    def listing(self) -> Iterator[Listed]:
        """Accepted uploads (`<job id>.<ext>`) and incoming ones (`.incoming-*`); nothing else."""
        try:
            entries = list(os.scandir(self.upload_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                modified_at = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            if entry.name.startswith(INCOMING_PREFIX):
                yield Listed(entry.path, None, modified_at)
            elif match := UPLOAD_NAME.match(entry.name):
                yield Listed(entry.path, match["job_id"], modified_at)

    def remove(self, listed: Listed) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listed.location)
