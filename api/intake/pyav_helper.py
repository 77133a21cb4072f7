"""Reads an upload's container with PyAV in a child forked from a warm helper process."""

# Running ffprobe per upload isolates the demuxer from the API (a crash or a hang ends only that
# process), but each ffprobe exec links some 200 shared libraries: ~50 ms of CPU per upload, more
# than the rest of `POST /transcribe` together. Here one helper per API process imports PyAV once
# (`serve`) and forks a child per file, so the demuxer stays out of the API process at a few ms:
# the child answers and exits, a crash is reported as such, and an alarm ends a child that takes
# longer than its deadline. The helper inherits no settings or secrets and only reads what it is
# given.
#
# Protocol: the API writes one JSON line per file ({"id", "path" or "url", "timeout_s"}) to the
# helper's stdin; one JSON line per file comes back on its stdout ({"id", "format_name",
# "duration_s", "stream_types"} or {"id", "error"}), written by the child in one write below
# PIPE_BUF, so lines of concurrent children never interleave. A "url" is an object's presigned
# GET (object storage): the signature lets the child read that one object, and nothing else.

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from common.media import ALLOWED_DEMUXERS

log = logging.getLogger(__name__)

OPEN_OPTIONS = {
    "format_whitelist": ",".join(ALLOWED_DEMUXERS),
    "protocol_whitelist": "file",
}
"""What FFMPEG_SAFETY_ARGS are to ffprobe: one local file, in an allowed container."""

REMOTE_PROTOCOLS = "http,https,tcp,tls"
"""Protocols for an object read through its presigned URL (object storage), instead of `file`.
None of the allowed demuxers opens a second input, so the URL given is the only one read."""

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPER_ENVIRONMENT = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TMPDIR")
"""The only variables the helper inherits: none of the service's settings or secrets."""
ANSWER_MAX_BYTES = 4000
"""Below PIPE_BUF (4096 on Linux): one write(2) of an answer is atomic."""


@dataclass(frozen=True)
class ContainerReport:
    """What the child read: the container's format, duration and stream kinds."""

    format_name: str
    duration_s: float | None
    stream_types: tuple[str, ...]


class ContainerUnreadable(Exception):
    """The file is not media PyAV opens under OPEN_OPTIONS, or reading it crashed the child."""


class ProbeTimeout(Exception):
    """The child did not answer within its deadline."""


class HelperUnavailable(Exception):
    """The helper could not be started or stopped while a file was being read."""


@cache
def available() -> bool:
    """Whether PyAV is installed (it comes with the worker's extra); else the API uses ffprobe."""
    return importlib.util.find_spec("av") is not None


# --- The helper process -------------------------------------------------------------------------


def _answer(request_id: int, **fields: Any) -> None:
    line = json.dumps({"id": request_id, **fields}).encode()
    if len(line) >= ANSWER_MAX_BYTES:
        line = json.dumps({"id": request_id, "error": "the probe's answer was too long"}).encode()
    os.write(sys.stdout.fileno(), line + b"\n")


def _read_in_child(request_id: int, target: str, remote: bool, timeout_s: float) -> None:
    """In the forked child: read the container, answer, exit. SIGALRM ends it at the deadline.

    `target` is a local path, or with `remote` an http(s) URL.
    """
    import av

    signal.alarm(max(1, math.ceil(timeout_s)))
    source = target if remote else f"file:{target}"
    options = {**OPEN_OPTIONS, "protocol_whitelist": REMOTE_PROTOCOLS} if remote else OPEN_OPTIONS
    try:
        with av.open(source, options=options) as container:
            duration = container.duration
            _answer(
                request_id,
                format_name=str(container.format.name),
                duration_s=None if duration is None else duration / 1_000_000,
                stream_types=[str(stream.type) for stream in container.streams],
            )
    except (av.FFmpegError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        # The error may quote the source: the server's path, or a signed URL. Neither is for
        # clients.
        _answer(request_id, error=str(reason).replace(source, "the file")[:300])


def serve() -> None:
    """The helper's loop: a forked child per request line; report children that die silently."""
    import av  # noqa: F401 - loaded once here, inherited by every child

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    stdin = sys.stdin.buffer
    children: dict[int, int] = {}
    pending = b""
    while True:
        # SIGCHLD's handler does nothing; its byte on the wakeup fd is what ends the select.
        readable, _, _ = select.select([stdin.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(children)
        if stdin.fileno() not in readable:
            continue
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            return  # the API process is gone
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    remote = "url" in request
                    target = request["url"] if remote else request["path"]
                    _read_in_child(request["id"], target, remote, request["timeout_s"])
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            children[pid] = request["id"]


def _reap(children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request_id = children.pop(pid, None)
        if request_id is None or os.waitstatus_to_exitcode(status) == 0:
            continue
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
            _answer(request_id, timeout=True)
        else:
            _answer(request_id, error="reading the file crashed the probe")


# --- The API side -------------------------------------------------------------------------------


class Prober:
    """The API process's handle on its helper: started on first use, restarted if it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: dict[int, tuple[subprocess.Popen[bytes], Future[ContainerReport]]] = {}
        self._ids = itertools.count()

    def _running(self) -> subprocess.Popen[bytes]:
        """The live helper, started if there is none (call with the lock held)."""
        if self._process is not None and self._process.poll() is None:
            return self._process
        command = (
            f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
            "from api.intake.pyav_helper import serve; serve()"
        )
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={name: os.environ[name] for name in HELPER_ENVIRONMENT if name in os.environ},
                cwd="/",
            )
        except OSError as error:
            raise HelperUnavailable(f"the probe helper could not start: {error}") from error
        threading.Thread(
            target=self._read_answers, args=(process,), name="av-probe-answers", daemon=True
        ).start()
        self._process = process
        return process

    def warm_up(self) -> None:
        """Start the helper now, so that the first upload does not wait for PyAV to load."""
        with self._lock:
            self._running()

    def submit(self, target: Path | str, timeout_s: float) -> Future[ContainerReport]:
        """Ask the helper to read `target` (a local file, or an http(s) URL given as a string);
        the future fails with one of the exceptions above."""
        future: Future[ContainerReport] = Future()
        where = {"path": str(target)} if isinstance(target, Path) else {"url": target}
        with self._lock:
            process = self._running()
            request_id = next(self._ids)
            line = json.dumps({"id": request_id, **where, "timeout_s": timeout_s})
            self._pending[request_id] = (process, future)
            try:
                assert process.stdin is not None
                process.stdin.write(line.encode() + b"\n")
                process.stdin.flush()
            except (OSError, ValueError) as error:  # ValueError: the pipe was closed
                del self._pending[request_id]
                raise HelperUnavailable(f"the probe helper stopped: {error}") from error
        future.add_done_callback(lambda _: self._forget(request_id))
        return future

    def _forget(self, request_id: int) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def _read_answers(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                log.error("the probe helper wrote something that is not an answer: %r", line[:200])
                continue
            with self._lock:
                _, future = self._pending.get(answer.get("id"), (None, None))
            if future is None or future.done():
                continue
            if answer.get("timeout"):
                future.set_exception(ProbeTimeout("the probe ran out of time"))
            elif "error" in answer:
                future.set_exception(ContainerUnreadable(str(answer["error"])))
            else:
                future.set_result(
                    ContainerReport(
                        format_name=str(answer["format_name"]),
                        duration_s=answer["duration_s"],
                        stream_types=tuple(answer["stream_types"]),
                    )
                )
        process.wait()
        with self._lock:
            for pipe in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            orphans = [future for owner, future in self._pending.values() if owner is process]
        for future in orphans:
            if not future.done():
                future.set_exception(HelperUnavailable("the probe helper exited"))


_prober: Prober | None = None
_prober_lock = threading.Lock()


def prober() -> Prober:
    """This process's prober (one helper per API process)."""
    global _prober
    with _prober_lock:
        if _prober is None:
            _prober = Prober()
        return _prober
