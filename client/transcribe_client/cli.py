"""`transcribe`: the command line (being written)."""

from __future__ import annotations


def main() -> int:
    """Entry point of the `transcribe` console script."""
    raise SystemExit("transcribe: not written yet")
