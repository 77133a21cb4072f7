"""gunicorn's settings for the API (`gunicorn -c python:api.gunicorn_conf api.main:app`): every
worker process records its metrics where a scrape of any of them finds them all.

prometheus-client picks its multiprocess mode when first imported, from PROMETHEUS_MULTIPROC_DIR:
this module sets it in the master, before any worker process exists, to a fresh folder (or, when
the operator named one, empties it), and tells the library when a worker process has gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client's own variable, read by the library itself, not a setting of config.py.
_OWN_FOLDER = _VARIABLE not in os.environ
if _OWN_FOLDER:
    os.environ[_VARIABLE] = tempfile.mkdtemp(prefix="transcribe-api-metrics-")
_FOLDER = Path(os.environ[_VARIABLE])
_FOLDER.mkdir(parents=True, exist_ok=True)
for _stale in _FOLDER.glob("*.db"):  # counts of an earlier run would be added to this one's
    _stale.unlink()


def child_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """A worker process has exited: its live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:  # noqa: ARG001 - gunicorn's hook signature
    """The master is leaving: the folder it made goes with it."""
    if _OWN_FOLDER:
        shutil.rmtree(_FOLDER, ignore_errors=True)
