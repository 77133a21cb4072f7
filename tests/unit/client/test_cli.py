"""The command line's own checks and exit statuses, before any server is involved."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from transcribe_client.cli import build_parser, connection_of, main

from tests.audio import REPO_ROOT
from tests.services import free_port

SERVICE_PACKAGES = ("api", "common", "worker", "config", "torch", "fastapi", "redis", "rq")


def test_the_client_imports_nothing_of_the_service() -> None:
    """`pip install ./client` must be enough: the client reaches the service only over HTTP."""
    probe = (
        "import json, sys\n"
        "import transcribe_client.cli, transcribe_client.display\n"
        "transcribe_client.cli.build_parser()\n"
        f"print(json.dumps(sorted({set(SERVICE_PACKAGES)!r} & set(sys.modules))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
    project = tomllib.loads((REPO_ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert [dependency.split(">")[0] for dependency in project["dependencies"]] == ["httpx", "rich"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["submit"],
        ["submit", "a.wav", "--option", "beam_size"],
        ["submit", "a.wav", "--option", "model=small"],
        ["submit", "a.wav", "--jobs", "0"],
        ["result", "job", "--format", "docx"],
        ["frobnicate"],
    ],
)
def test_a_bad_command_line_is_exit_status_2(argv: list[str]) -> None:
    assert main(argv) == 2


def test_an_unknown_format_and_a_missing_file_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"\0")
    assert main(["submit", str(audio), "--format", "srt,docx"]) == 2
    assert "unknown format 'docx'" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "missing.wav")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_an_unreachable_server_is_said_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"\0")
    server = f"http://127.0.0.1:{free_port()}"
    assert main(["--server", server, "submit", str(audio)]) == 1
    assert f"cannot reach the server at {server}" in capsys.readouterr().err
    assert main(["jobs", "--server", server]) == 1


def test_options_win_over_the_environment_which_wins_over_the_default() -> None:
    parser = build_parser()
    environ = {"TRANSCRIBE_URL": "http://env:1", "TRANSCRIBE_API_KEY": "env-key"}
    given = parser.parse_args(["--server", "http://a:1", "jobs", "--api-key", "k"])
    assert connection_of(given, environ) == ("http://a:1", "k")
    assert connection_of(parser.parse_args(["jobs"]), environ) == ("http://env:1", "env-key")
    assert connection_of(parser.parse_args(["jobs"]), {}) == ("http://localhost:8000", None)
    assert isinstance(given, argparse.Namespace)
