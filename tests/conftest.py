"""Fixtures shared by every tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audio import write_tone_wav


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """One second of real audio as a WAV file."""
    return write_tone_wav(tmp_path / "tone.wav")
