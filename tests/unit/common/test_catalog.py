"""The API's choices stay in sync with the worker's registry; the API imports no engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.catalog import EngineName
from tests.audio import REPO_ROOT
from worker.engines import ENGINES, UnknownEngineError, resolve_engine


def test_registry_matches_the_engines_the_api_accepts() -> None:
    assert set(ENGINES) == {engine.value for engine in EngineName}


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(UnknownEngineError, match="whisperx"):
        resolve_engine("nope")


HEAVY = ("torch", "whisperx", "whisper", "whisper_timestamped", "faster_whisper", "ctranslate2")


def loaded_after(code: str, names: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of `names` a fresh interpreter has imported after running `code`."""
    probe = (
        f"import json, sys\n{code}\nprint(json.dumps(sorted({set(names)!r} & set(sys.modules))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_api_loads_no_engine_library() -> None:
    assert loaded_after("import api.http.app", (*HEAVY, "worker")) == []


def test_the_unit_tier_loads_no_engine_library() -> None:
    """Collecting the unit tests imports no torch or engine: they stay fast and engine-free."""
    arguments = ["--collect-only", "-q", "-p", "no:cacheprovider", "tests/unit"]
    assert loaded_after(f"import pytest\npytest.main({arguments!r})") == []
