"""A file being received into UPLOAD_DIR: deleted on the way out unless its job took it."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from api.errors import ServiceError
from common.contract import INCOMING_PREFIX

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(error: BaseException) -> bool:
    """Whether `error` says the volume (or the quota) is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


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


class StagedFile:
    """Owns one file in the uploads folder, first under a temporary name, until `keep()`.

    Made by `staged_file`, which deletes it on the way out unless it was kept.
    """

    def __init__(self, upload_dir: Path) -> None:
        self.path = upload_dir / f"{INCOMING_PREFIX}{secrets.token_hex(16)}"
        self.kept = False

    def create(self) -> int:
        """Create the file (it must not exist) and return a descriptor open for writing."""
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)

    def move_to(self, final_path: Path) -> None:
        """Give the file its final name; it stays this object's until `keep()`."""
        os.rename(self.path, final_path)
        self.path = final_path

    def keep(self) -> None:
        """The file is a job's now: leaving `staged_file` no longer deletes it."""
        self.kept = True


@contextlib.contextmanager
def staged_file(
    upload_dir: Path, what: str = "upload", staged: StagedFile | None = None
) -> Iterator[StagedFile]:
    """A new StagedFile (or `staged`) for the block; deleted on leaving unless kept, whatever
    happened, and a full disk anywhere inside becomes a 507 about this `what`."""
    file = staged or StagedFile(upload_dir)
    try:
        yield file
    except OSError as error:
        if disk_full(error):
            raise ServiceError(507, f"the server has no space left for this {what}") from error
        raise
    finally:
        if not file.kept:
            with contextlib.suppress(FileNotFoundError):
                file.path.unlink()
