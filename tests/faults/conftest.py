"""Fixtures for fault-injection tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import hostile
from tests.audio import JFK


@pytest.fixture(scope="module", params=[False, True], ids=["keys-off", "keys-on"])
def keyed(request: pytest.FixtureRequest) -> bool:
    """Each fault test runs twice: the API open (as `make run` starts it) and with API keys
    required (as compose runs it), where every job waits in its key's list for its turn."""
    value: bool = request.param
    return value


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of jfk.flac: a real job that a warm worker finishes in well under a second."""
    return hostile.clip(
        JFK, tmp_path_factory.mktemp("clip") / "ask-not.flac", seconds=2.0, start_s=8.0
    )
