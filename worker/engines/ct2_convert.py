"""Convert a CTranslate2 Whisper model (model.bin) into an openai-whisper checkpoint."""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import re
import struct
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from whisper.model import Whisper

logger = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSIONS = range(4, 7)
"""model.bin layouts this reader knows: 4 to 6 share one layout (typed variables, then aliases)."""

WHISPER_SPEC_NAME = "WhisperSpec"

ALIGNMENT_HEADS_KEY = "alignment_heads"
"""Checkpoint key holding `[[layer, head], ...]` from config.json; openai-whisper ignores it."""

CHECKPOINT_FORMAT = 1
"""Bumped whenever the checkpoint this module writes changes, so cached conversions are redone."""

# CTranslate2's DataType enum (include/ctranslate2/types.h), indexed by the id stored in model.bin.
# bfloat16 has no numpy type: its raw 16 bits are read as uint16 and widened on dequantization.
_DTYPE_BY_ID: tuple[np.dtype[Any], ...] = (
    np.dtype("<f4"),
    np.dtype("i1"),
    np.dtype("<i2"),
    np.dtype("<i4"),
    np.dtype("<f2"),
    np.dtype("<u2"),
)
_BFLOAT16_ID = 5

# CTranslate2's Activation.GELU: the erf form, which openai-whisper's nn.GELU computes.
_GELU_ACTIVATION = 3
_HEAD_DIM = 64  # every Whisper size uses 64-wide attention heads; fallback when num_heads is absent

Array = npt.NDArray[Any]


class ConversionError(ValueError):
    """The model directory cannot be read, or is not a Whisper model this converter can map."""


@dataclass(frozen=True)
class Ct2Model:
    """The contents of a CTranslate2 model.bin: raw variables as stored, and their aliases."""

    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, Array]
    dtypes: dict[str, str]
    aliases: dict[str, str]

    def resolve(self, name: str) -> str | None:
        """The stored variable `name` refers to, following aliases; None when there is none.

        Like CTranslate2's loader, an alias `A -> V` also makes `A_scale` refer to `V_scale`.
        """
        seen: set[str] = set()
        while name not in self.variables:
            if name in seen:
                raise ConversionError(f"alias cycle through {name!r}")
            seen.add(name)
            if name in self.aliases:
                name = self.aliases[name]
            elif name.endswith("_scale") and name.removesuffix("_scale") in self.aliases:
                name = self.aliases[name.removesuffix("_scale")] + "_scale"
            else:
                return None
        return name

    def has(self, name: str) -> bool:
        """Whether `name` (directly or through an alias) is a stored variable."""
        return self.resolve(name) is not None

    def scalar(self, name: str) -> int | float | None:
        """The value of a stored scalar (a flag or a count), None when absent."""
        stored = self.resolve(name)
        if stored is None:
            return None
        value = self.variables[stored]
        if value.size != 1:
            raise ConversionError(f"{name} is not a scalar: shape {value.shape}")
        return value.reshape(()).item()  # type: ignore[no-any-return]

    def weight(self, name: str) -> Array:
        """Variable `name` as floats: float16 kept as is, everything else widened to float32.

        Integer weights are dequantized with their `<name>_scale` (int8: one scale per output row,
        int16: one scale for the tensor), the inverse of CTranslate2's quantization.
        """
        stored = self.resolve(name)
        if stored is None:
            raise ConversionError(f"model.bin has no variable {name!r}")
        value = self.variables[stored]
        dtype = self.dtypes[stored]
        if dtype in ("float16", "float32"):
            return value
        if dtype == "bfloat16":
            return (value.astype(np.uint32) << 16).view(np.float32)
        if dtype not in ("int8", "int16"):
            raise ConversionError(f"{name} has dtype {dtype}, which is not a weight type")
        if self.has(f"{name}_zero"):
            raise ConversionError(f"{name} is AWQ-quantized, which this converter does not support")
        if not self.has(f"{name}_scale"):
            raise ConversionError(f"{name} is {dtype} but model.bin has no {name}_scale")
        scale = self.weight(f"{name}_scale").astype(np.float32)
        if scale.size == 1:
            return value.astype(np.float32) / scale.reshape(())
        if scale.shape == (value.shape[0],):
            return value.astype(np.float32) / scale.reshape((-1,) + (1,) * (value.ndim - 1))
        raise ConversionError(f"{name}_scale has shape {scale.shape}, weight has {value.shape}")


@dataclass(frozen=True)
class ConvertedWhisper:
    """An openai-whisper model's parts: `ModelDimensions` fields, state dict, alignment heads."""

    dims: dict[str, int]
    state_dict: dict[str, Array]
    alignment_heads: list[tuple[int, int]] | None


class _Reader:
    """Sequential little-endian reads from model.bin that fail loudly on a truncated file."""

    def __init__(self, stream: io.BufferedIOBase, path: Path) -> None:
        self._stream = stream
        self._path = path

    def _exact(self, size: int) -> bytearray:
        buffer = bytearray(size)
        if self._stream.readinto(buffer) != size:
            raise ConversionError(f"{self._path} is truncated")
        return buffer

    def uint(self, fmt: str) -> int:
        (value,) = struct.unpack("<" + fmt, self._exact(struct.calcsize(fmt)))
        return int(value)

    def string(self) -> str:
        raw = self._exact(self.uint("H"))
        if not raw or raw[-1] != 0:
            raise ConversionError(f"{self._path}: malformed string (no NUL terminator)")
        return raw[:-1].decode("utf-8")

    def array(self, dtype: np.dtype[Any], shape: tuple[int, ...], num_bytes: int) -> Array:
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if num_bytes != expected:
            raise ConversionError(
                f"{self._path}: variable of shape {shape} and dtype {dtype} has {num_bytes} bytes"
            )
        # A bytearray keeps the array writable, which torch.from_numpy wants.
        return np.frombuffer(self._exact(num_bytes), dtype=dtype).reshape(shape)

    def at_end(self) -> bool:
        return self._stream.read(1) == b""


def read_ct2_model(path: Path) -> Ct2Model:
    """Parse a CTranslate2 model.bin (binary versions 4 to 6) without importing ctranslate2.

    The layout, as `ModelSpec._serialize` writes it: uint32 version, string spec name, uint32
    revision, uint32 count, then per variable a string name, uint8 rank, uint32 per dimension,
    uint8 dtype id, uint32 byte count and the raw bytes; then uint32 count and (alias, target)
    string pairs. Strings are a uint16 length that counts a trailing NUL, then UTF-8 bytes.
    """
    with path.open("rb") as stream:
        reader = _Reader(stream, path)
        version = reader.uint("I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise ConversionError(
                f"{path}: CTranslate2 binary version {version} is not supported "
                f"(known: {SUPPORTED_BINARY_VERSIONS.start}-{SUPPORTED_BINARY_VERSIONS.stop - 1})"
            )
        spec_name = reader.string()
        revision = reader.uint("I")
        variables: dict[str, Array] = {}
        dtypes: dict[str, str] = {}
        for _ in range(reader.uint("I")):
            name = reader.string()
            shape = tuple(reader.uint("I") for _ in range(reader.uint("B")))
            type_id = reader.uint("B")
            if type_id >= len(_DTYPE_BY_ID):
                raise ConversionError(f"{path}: {name} has unknown dtype id {type_id}")
            variables[name] = reader.array(_DTYPE_BY_ID[type_id], shape, reader.uint("I"))
            dtypes[name] = "bfloat16" if type_id == _BFLOAT16_ID else str(_DTYPE_BY_ID[type_id])
        aliases = {reader.string(): reader.string() for _ in range(reader.uint("I"))}
        if not reader.at_end():
            raise ConversionError(f"{path}: unexpected bytes after the alias table")
    return Ct2Model(version, spec_name, revision, variables, dtypes, aliases)


def _layer_count(model: Ct2Model, scope: str) -> int:
    pattern = re.compile(rf"^{scope}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in model.variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise ConversionError(f"{scope} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _head_count(model: Ct2Model, scope: str, state: int) -> int:
    heads = model.scalar(f"{scope}/num_heads")
    count = int(heads) if heads is not None else state // _HEAD_DIM
    if count <= 0 or state % count:
        raise ConversionError(f"{scope}: {count} heads do not divide the width {state}")
    return count


def _check_flag(model: Ct2Model, name: str, expected: int) -> None:
    value = model.scalar(name)
    if value is not None and int(value) != expected:
        raise ConversionError(f"{name} is {value}; openai-whisper's architecture needs {expected}")


def _read_alignment_heads(src_dir: Path, dims: dict[str, int]) -> list[tuple[int, int]] | None:
    config_path = src_dir / "config.json"
    if not config_path.is_file():
        return None
    raw = json.loads(config_path.read_text(encoding="utf-8")).get("alignment_heads")
    if not raw:
        return None
    heads = [(int(layer), int(head)) for layer, head in raw]
    for layer, head in heads:
        if not (0 <= layer < dims["n_text_layer"] and 0 <= head < dims["n_text_head"]):
            raise ConversionError(f"{config_path}: alignment head ({layer}, {head}) out of range")
    return heads


def map_to_whisper(model: Ct2Model, src_dir: Path) -> ConvertedWhisper:
    """Rename, split and dequantize a CTranslate2 Whisper model into openai-whisper's layout.

    Raises ConversionError when model.bin holds anything openai-whisper's `Whisper` module cannot
    represent (another spec, an untied output projection, unknown non-scalar variables).
    """
    if model.spec_name != WHISPER_SPEC_NAME:
        raise ConversionError(f"model.bin holds a {model.spec_name!r}, not a {WHISPER_SPEC_NAME}")
    _check_flag(model, "decoder/activation", _GELU_ACTIVATION)
    _check_flag(model, "decoder/pre_norm", 1)
    _check_flag(model, "decoder/scale_embeddings", 0)
    _check_flag(model, "decoder/start_from_zero_embedding", 0)

    used: set[str] = set()
    state: dict[str, Array] = {}

    def take(name: str) -> Array:
        stored = model.resolve(name)
        if stored is None:
            raise ConversionError(f"model.bin has no variable {name!r}")
        used.add(stored)
        scale = model.resolve(f"{name}_scale")
        if scale is not None:
            used.add(scale)
        return model.weight(name)

    def put(name: str, value: Array) -> None:
        state[name] = np.ascontiguousarray(value)

    def linear(src: str, dst: str) -> None:
        put(f"{dst}.weight", take(f"{src}/weight"))
        put(f"{dst}.bias", take(f"{src}/bias"))

    def norm(src: str, dst: str) -> None:
        put(f"{dst}.weight", take(f"{src}/gamma"))
        put(f"{dst}.bias", take(f"{src}/beta"))

    def split_linear(src: str, dsts: Sequence[str]) -> None:
        # CTranslate2 fuses q/k/v (or k/v) along the output rows; Whisper's key projection has no
        # bias and needs none: a key bias adds the same q.b to every score of a query, which the
        # softmax cancels, so dropping it (CTranslate2 stores zeros there) is exact.
        weights = np.split(take(f"{src}/weight"), len(dsts))
        biases = np.split(take(f"{src}/bias"), len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases, strict=True):
            put(f"{dst}.weight", weight)
            if not dst.endswith(".key"):
                put(f"{dst}.bias", bias)

    def block(src: str, dst: str, *, cross: bool) -> None:
        split_linear(
            f"{src}/self_attention/linear_0",
            [f"{dst}.attn.{part}" for part in ("query", "key", "value")],
        )
        linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        if cross:
            linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
            split_linear(
                f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"]
            )
            linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
            norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")

    conv1 = take("encoder/conv1/weight")
    audio_positions = take("encoder/position_encodings/encodings")
    embeddings = take("decoder/embeddings/weight")
    text_positions = take("decoder/position_encodings/encodings")
    n_audio_state, n_text_state = int(audio_positions.shape[1]), int(text_positions.shape[1])
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(audio_positions.shape[0]),
        "n_audio_state": n_audio_state,
        "n_audio_head": _head_count(model, "encoder", n_audio_state),
        "n_audio_layer": _layer_count(model, "encoder"),
        "n_vocab": int(embeddings.shape[0]),
        "n_text_ctx": int(text_positions.shape[0]),
        "n_text_state": n_text_state,
        "n_text_head": _head_count(model, "decoder", n_text_state),
        "n_text_layer": _layer_count(model, "decoder"),
    }

    put("encoder.conv1.weight", conv1)
    put("encoder.conv1.bias", take("encoder/conv1/bias"))
    linear("encoder/conv2", "encoder.conv2")
    put("encoder.positional_embedding", audio_positions)
    for index in range(dims["n_audio_layer"]):
        block(f"encoder/layer_{index}", f"encoder.blocks.{index}", cross=False)
    norm("encoder/layer_norm", "encoder.ln_post")

    put("decoder.token_embedding.weight", embeddings)
    put("decoder.positional_embedding", text_positions)
    for index in range(dims["n_text_layer"]):
        block(f"decoder/layer_{index}", f"decoder.blocks.{index}", cross=True)
    norm("decoder/layer_norm", "decoder.ln")

    # openai-whisper computes logits with the token embedding itself, so the output projection
    # must be that same matrix (CTranslate2 stores it as an alias when it is).
    if model.has("decoder/projection/weight"):
        projection = model.resolve("decoder/projection/weight")
        if projection != model.resolve("decoder/embeddings/weight") and not np.array_equal(
            take("decoder/projection/weight"), embeddings
        ):
            raise ConversionError("the output projection is not tied to the token embedding")
    if model.has("decoder/projection/bias") and np.any(take("decoder/projection/bias")):
        raise ConversionError("the output projection has a bias; openai-whisper has none")

    unused = sorted(
        name for name, value in model.variables.items() if name not in used and value.size > 1
    )
    if unused:
        raise ConversionError(
            f"model.bin has variables with no openai-whisper counterpart: {unused}"
        )
    return ConvertedWhisper(dims, state, _read_alignment_heads(src_dir, dims))


def alignment_heads_dump(heads: Sequence[tuple[int, int]], n_layer: int, n_head: int) -> bytes:
    """Heads in the form `Whisper.set_alignment_heads` takes: a base85, gzipped bool mask."""
    mask = np.zeros((n_layer, n_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


@contextlib.contextmanager
def _atomic_target(dst_file: Path) -> Iterator[Path]:
    """A temp file beside `dst_file` that replaces it when the block succeeds."""
    dst_file.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=dst_file.parent, prefix=f".{dst_file.name}.", suffix=".tmp"
    )
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        temp_path.chmod(0o644)  # mkstemp creates 0600; the cache is shared with other users
        os.replace(temp_path, dst_file)
    finally:
        temp_path.unlink(missing_ok=True)


def convert_ct2_to_whisper(src_dir: Path, dst_file: Path) -> Path:
    """Write `src_dir`'s CTranslate2 Whisper model as an openai-whisper checkpoint at `dst_file`.

    The checkpoint is what `whisper.load_model(path)` reads (`dims`, `model_state_dict`: float16
    tensors stay float16, all others float32), plus `alignment_heads` from config.json, which
    `load_converted_model` applies. The file appears atomically (temp file, then rename).
    Raises ConversionError when the model cannot be read or mapped.
    """
    import torch

    started = time.perf_counter()
    model_bin = src_dir / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"{src_dir} has no model.bin")
    converted = map_to_whisper(read_ct2_model(model_bin), src_dir)
    checkpoint: dict[str, object] = {
        "dims": converted.dims,
        "model_state_dict": {
            name: torch.from_numpy(value) for name, value in converted.state_dict.items()
        },
    }
    if converted.alignment_heads is not None:
        checkpoint[ALIGNMENT_HEADS_KEY] = [list(pair) for pair in converted.alignment_heads]
    with _atomic_target(dst_file) as temp_path:
        torch.save(checkpoint, temp_path)
    logger.info(
        "converted %s to %s in %.1f s (dims %s, %d alignment heads)",
        model_bin,
        dst_file,
        time.perf_counter() - started,
        converted.dims,
        len(converted.alignment_heads or ()),
    )
    return dst_file


def _cache_key(src_dir: Path) -> str:
    model_bin = (src_dir / "model.bin").resolve()
    stat = model_bin.stat()
    digest = hashlib.sha256()
    digest.update(f"{CHECKPOINT_FORMAT}|{model_bin}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    config = src_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    return digest.hexdigest()[:16]


def ensure_converted(src_dir: Path, cache_dir: Path) -> Path:
    """The cached checkpoint for `src_dir`, converting it first when absent.

    The cache file is keyed by model.bin's path, size and mtime, config.json's bytes and the
    checkpoint format. Concurrent callers (threads or processes) serialize on a lock file beside
    it, so the model is converted once; readers never see a partial file.
    """
    try:
        key = _cache_key(src_dir)
    except OSError as error:
        raise ConversionError(f"cannot read {src_dir / 'model.bin'}: {error}") from error
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"ct2-{key}.pt"
    if target.is_file():
        return target
    with (cache_dir / f"ct2-{key}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.is_file():
                convert_ct2_to_whisper(src_dir, target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def load_converted_model(checkpoint_file: Path, device: str) -> Whisper:
    """Load a checkpoint written by `convert_ct2_to_whisper` with its alignment heads applied.

    `whisper.load_model(path)` loads the same file but leaves openai-whisper's default heads
    (every head of the upper half of the decoder), which word timings would then use.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper

    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    dims = ModelDimensions(**checkpoint["dims"])
    model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"])
    heads = checkpoint.get(ALIGNMENT_HEADS_KEY)
    if heads:
        pairs = [(int(layer), int(head)) for layer, head in heads]
        model.set_alignment_heads(alignment_heads_dump(pairs, dims.n_text_layer, dims.n_text_head))
    return model.to(device)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert SRC_DIR's model.bin into the checkpoint DST_FILE."""
    parser = argparse.ArgumentParser(
        prog="python -m worker.engines.ct2_convert",
        description="Convert a CTranslate2 Whisper model into an openai-whisper checkpoint.",
    )
    parser.add_argument("src_dir", type=Path, help="folder with model.bin (and config.json)")
    parser.add_argument("dst_file", type=Path, help="checkpoint to write, e.g. tiny.en.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        convert_ct2_to_whisper(args.src_dir, args.dst_file)
    except ConversionError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
