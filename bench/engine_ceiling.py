"""The engine's own scaling, with no service around it: the ceiling for part 5's target.

Each measuring process is `python -m bench.engine_ceiling ENGINE MODEL JOBS` with CPU_THREADS
set as a worker's would be. It loads and warms the engine, prints `ready`, waits for a line on
stdin so that concurrent processes start together, then decodes and transcribes the short file
JOBS times and prints the seconds it took.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from bench.harness import SHORT_AUDIO, Options

READY = "ready"


def measure(engine: str, model: str, jobs: int) -> float:
    """Seconds for `jobs` warm direct calls in this process, after the go-ahead on stdin."""
    from bench.direct import DirectEngines
    from config import get_settings

    direct = DirectEngines(get_settings())
    direct.load(engine, model)
    direct.transcribe(engine, model, SHORT_AUDIO)
    _say(READY)
    sys.stdin.readline()
    started = time.perf_counter()
    for _ in range(jobs):
        direct.transcribe(engine, model, SHORT_AUDIO)
    return time.perf_counter() - started


def makespan(options: Options, engine: str, processes: int, threads: int, jobs: int) -> float:
    """Seconds for `processes` concurrent processes on `threads` threads each to run `jobs`
    direct calls between them, all started at the same moment."""
    # The repository first, then whatever the caller's environment already puts on the path.
    python_path = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        **options.env(),
        "CPU_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, python_path)),
    }
    command = [sys.executable, "-m", "bench.engine_ceiling", engine, options.model]
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(processes)]
        procs = [
            subprocess.Popen(
                [*command, str(jobs // processes)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            for log in logs
        ]
        try:
            for proc, log in zip(procs, logs, strict=True):
                _await_ready(proc, engine, log)
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            seconds = []
            for proc, log in zip(procs, logs, strict=True):
                out, _ = proc.communicate(timeout=900)
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"direct {engine} process exited {proc.returncode}:\n{_tail(log)}"
                    )
                # Libraries may print to stdout too; the figure is the last line.
                seconds.append(float(out.strip().splitlines()[-1]))
            return max(seconds)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def _say(line: str) -> None:
    """A line of the protocol with the parent process (stdout, at once)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def _await_ready(proc: subprocess.Popen[str], engine: str, stderr: IO[bytes]) -> None:
    """Read the process's output until it says it is warm (libraries may print first)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == READY:
            return
    code = proc.wait()
    raise RuntimeError(
        f"direct {engine} process exited {code} before it was ready:\n{_tail(stderr)}"
    )


def _tail(stderr: IO[bytes]) -> str:
    """The end of what a measuring process wrote to its stderr file."""
    stderr.seek(0)
    return stderr.read().decode("utf-8", "replace")[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("engine")
    parser.add_argument("model")
    parser.add_argument("jobs", type=int)
    args = parser.parse_args()
    from config import get_settings
    from worker.models import cpu_threads, limit_native_threads

    # As `python -m worker` does before anything loads a native library.
    limit_native_threads(cpu_threads(get_settings()))
    _say(f"{measure(args.engine, args.model, args.jobs):.6f}")


if __name__ == "__main__":
    main()
