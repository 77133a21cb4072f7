"""Small worker parts: the model cache, transcript clean-up, job timeouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.jobs.queue import job_timeout_s
from config import Settings
from worker.cache import ModelCache
from worker.engines.base import Engine, ModelLoadError, ModelSpec, check_local_source
from worker.engines.mapping import RawWord, build_segment


class Loaded:
    """Stands for a loaded engine."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec


def spec(model: str) -> ModelSpec:
    return ModelSpec(engine="whisperx", model=model, device="cpu", compute_type="int8")


def test_cache_loads_once_and_evicts_least_recently_used() -> None:
    loaded: list[str] = []

    def loader(wanted: ModelSpec) -> Engine:
        loaded.append(wanted.model)
        return Loaded(wanted)  # type: ignore[return-value]

    cache = ModelCache(loader, capacity=2)
    first, load_s = cache.get(spec("a"))
    assert load_s >= 0.0
    again, warm_s = cache.get(spec("a"))
    assert again is first
    assert warm_s == 0.0
    cache.get(spec("b"))
    cache.get(spec("a"))
    cache.get(spec("c"))
    assert cache.loaded() == [spec("a"), spec("c")]
    assert loaded == ["a", "b", "c"]


def test_cache_key_includes_device_and_compute_type() -> None:
    cache = ModelCache(lambda wanted: Loaded(wanted), capacity=4)  # type: ignore[arg-type, return-value]
    cache.get(spec("a"))
    cache.get(ModelSpec(engine="whisperx", model="a", device="cuda", compute_type="float16"))
    cache.get(ModelSpec(engine="timestamped", model="a", device="cpu", compute_type="int8"))
    assert cache.loads == 3


def test_segment_words_are_monotonic_and_inside_the_audio() -> None:
    segment = build_segment(
        3,
        start=1.0,
        end=12.0,
        text="  hello big world ",
        words=[
            RawWord("hello", 1.2, 1.5, 0.9),
            RawWord("big", None, None, None),
            RawWord("world", 1.4, 11.5, 1.2),
            RawWord("  ", 2.0, 2.1, 0.5),
        ],
        duration=10.0,
    )
    assert segment.text == "hello big world"
    assert segment.end == 10.0
    assert [word.word for word in segment.words] == ["hello", "big", "world"]
    starts = [word.start for word in segment.words]
    assert starts == sorted(starts)
    for word in segment.words:
        assert segment.start <= word.start <= word.end <= 10.0
    assert segment.words[2].probability == 1.0


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(None, 300 + 4 * 3600), (0.0, 300), (60.0, 360), (100_000.0, 6 * 3600)],
)
def test_job_timeout_has_floor_allowance_and_ceiling(duration: float | None, expected: int) -> None:
    settings = Settings()
    assert job_timeout_s(settings, duration) == min(expected, settings.job_timeout_max_s)


def test_a_load_bound_to_fail_unloads_nothing_warm(tmp_path: Path) -> None:
    """A catalogue entry whose directory is gone must not cost the worker its warm model."""
    cache = ModelCache(lambda wanted: Loaded(wanted), capacity=1, check=check_local_source)  # type: ignore[arg-type, return-value]
    cache.get(spec("warm"))
    missing = ModelSpec("whisperx", "fine-tune", "cpu", "int8", source=str(tmp_path / "gone"))
    with pytest.raises(ModelLoadError, match=r"catalogue source .*gone does not exist"):
        cache.get(missing)
    assert cache.loaded() == [spec("warm")]
    present = ModelSpec("whisperx", "fine-tune", "cpu", "int8", source=str(tmp_path))
    cache.get(present)  # a path that is there loads, evicting the least recently used
    assert cache.loaded() == [present]
