"""Tiny real models: ONNX bundles of a tiny LiteCNN (or of a fixed-answer classifier), and
random-weight transformers teachers of every backbone family, small enough for CPU tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.onnx_export import bundle_meta, write_model_bundle
from service.audio import Windowing
from service.bundle import Bundle
from service.labels import LABELS
from devtools.audio import voice
from training.student import LiteCNN, LiteCNNConfig, count_parameters

TINY_CONFIG = LiteCNNConfig(n_filters=8, filter_len=101, channels=[8, 8], bottleneck=8, hidden=8)


class ConstantLogits(torch.nn.Module):
    """A waveform classifier whose answer is fixed: for testing confidence-dependent paths."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.register_buffer("logits", torch.tensor([logits], dtype=torch.float32))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.logits + 0.0 * wav.mean(dim=1, keepdim=True)   # (B, 6), keeps the input in the graph


def make_bundle(folder: Path, *, role: str = "student", model: torch.nn.Module | None = None,
                window_s: float = 1.0, hop_s: float = 0.5, name: str | None = None) -> Bundle:
    """A real ONNX bundle of a tiny model (a tiny LiteCNN unless `model` is given)."""
    torch.manual_seed(0)
    model = (model or LiteCNN(TINY_CONFIG)).eval()
    meta = bundle_meta(name=name or f"tiny-{role}", role=role, windowing=Windowing(window_s, hop_s, trim_silence=True),
                       parameters=count_parameters(model),
                       metrics={"test": {"ua": 0.5}}, license={"weights": "test only"})
    windows = np.stack([voice(window_s, seed=i) for i in range(2)])
    return write_model_bundle(model, folder, meta, f"# {meta['name']}\n", windows, tolerance=1e-4)


# wav2vec2-style conv stack: 3 layers, total stride 80 (200 frames per second).
_CONV = dict(conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                classifier_proj_size=16, num_labels=len(LABELS))
WHISPER_MAX_S = 4.0         # max_source_positions=200 -> 400 mel frames -> 4 s


def tiny_model(kind: str, **overrides):
    """A random-weight transformers audio classifier of `kind`, small enough for CPU tests."""
    import transformers as t

    if kind == "whisper":
        cfg = t.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                              decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                              classifier_proj_size=16, num_labels=len(LABELS),
                              **{"max_source_positions": int(WHISPER_MAX_S * 50), **overrides})
        model = t.WhisperForAudioClassification(cfg)
    else:
        cls = {"wav2vec2": (t.Wav2Vec2Config, t.Wav2Vec2ForSequenceClassification),
               "hubert": (t.HubertConfig, t.HubertForSequenceClassification),
               "wavlm": (t.WavLMConfig, t.WavLMForSequenceClassification)}[kind]
        extra = dict(num_buckets=16, max_bucket_distance=64) if kind == "wavlm" else {}
        model = cls[1](cls[0](**_CONV, **_ENCODER, **extra, **overrides))
    # Random init gives logits ~1e-3; widen the head so comparisons see O(1) logits.
    for layer in (model.projector, model.classifier):
        torch.nn.init.normal_(layer.weight, std=1.0)
    return model


def save_tiny(folder: Path, kind: str, seed: int = 0, **overrides) -> Path:
    """tiny_model(kind) saved with save_pretrained: a local backbone folder."""
    torch.manual_seed(seed)
    tiny_model(kind, **overrides).save_pretrained(folder)
    return folder
