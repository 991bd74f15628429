"""The teacher: a transformers audio classifier behind a raw-waveform forward.

``TeacherModel(wav (B, S) float32, 16 kHz) -> logits (B, 6)``. Every bit of feature
extraction happens inside ``forward``, so the ONNX graph takes raw waveform like every
other bundle (docs/design.md, "Model bundle") and the service needs no front end of its own.

Two front ends, picked from ``config.model_type``:

``waveform`` (wav2vec2, HuBERT, WavLM)
    per-example zero-mean unit-variance normalisation (what ``Wav2Vec2FeatureExtractor``
    does with ``do_normalize=True``; skipped when the backbone's extractor says
    ``do_normalize=False``), then ``model(input_values=...).logits``.
``whisper`` (``WhisperForAudioClassification``)
    :class:`WhisperLogMel` (``WhisperFeatureExtractor`` on unpadded audio, in ONNX-exportable
    torch ops), then ``encode_short`` on the ``S // 160`` frames that the window really
    has (no padding to 30 s: a 3 s window costs 1/10 of the compute; an odd frame count
    is fine, conv2 gives ceil(T / 2) positions; more than 30 s is an error), then the head as
    ``WhisperForAudioClassification.forward`` applies it (optional weighted layer sum ->
    projector -> mean over time -> classifier).

A teacher folder (``save_teacher`` / ``load_teacher``) is a ``save_pretrained`` checkpoint
plus ``preprocessor_config.json`` (the equivalent transformers feature extractor) and
``teacher.json``::

    {"format": 1, "frontend": "waveform" | "whisper", "normalize": true,
     "labels": ["angry", ...], "sample_rate": 16000,
     "window": {"window_s": 3.0, "hop_s": 1.0, "trim_silence": true, "pad": "repeat"}}
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from service.audio import SAMPLE_RATE, Windowing
from service.labels import LABELS
from training.specaug import spec_augment

__all__ = [
    "WAVEFORM_MODEL_TYPES",
    "frontend_kind",
    "WhisperLogMel",
    "TeacherModel",
    "build_teacher",
    "save_teacher",
    "teacher_window",
    "load_teacher",
]

# Backbones that take the (normalised) waveform as `input_values`.
WAVEFORM_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
WHISPER_MODEL_TYPE = "whisper"
TEACHER_FILE = "teacher.json"
FORMAT = 1

# Whisper's front end (openai/whisper audio.py; WhisperFeatureExtractor defaults).
N_FFT = 400            # 25 ms analysis window
HOP_LENGTH = 160       # 10 ms hop -> 100 frames per second
LOG_FLOOR = 1e-10      # mel power floor before log10
DYNAMIC_RANGE = 8.0    # log10 units kept below each example's loudest bin (80 dB)
NORM_EPS = 1e-7        # Wav2Vec2FeatureExtractor's variance epsilon


def frontend_kind(config) -> str:
    """"waveform" or "whisper" for a transformers config; ValueError for anything else."""
    if config.model_type in WAVEFORM_MODEL_TYPES:
        return "waveform"
    if config.model_type == WHISPER_MODEL_TYPE:
        return "whisper"
    raise ValueError(f"unsupported teacher backbone type {config.model_type!r}; "
                     f"expected one of {(*WAVEFORM_MODEL_TYPES, WHISPER_MODEL_TYPE)}")


class WhisperLogMel(nn.Module):
    """(B, S) 16 kHz waveform -> (B, n_mels, S // 160) Whisper log-mel features.

    Equals ``WhisperFeatureExtractor(feature_size=n_mels)(x, padding="longest",
    truncation=False)`` on each unpadded example (measured max |diff| ~1e-5). The STFT is
    a strided Conv1d whose kernels are a fixed DFT basis times a periodic Hann window,
    after the reflect padding of ``torch.stft(center=True)``: every op exports to ONNX
    with the TorchScript exporter at opset 18 (``torch.stft`` does not). Needs S > 200.
    """

    def __init__(self, n_mels: int = 80):
        super().__init__()
        from transformers import WhisperFeatureExtractor

        n_bins = N_FFT // 2 + 1
        window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        k = torch.arange(n_bins, dtype=torch.float64)[:, None]
        n = torch.arange(N_FFT, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / N_FFT                            # (F, N_FFT)
        basis = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)])  # (2F, N_FFT)
        # Built in float64, stored float32; not persistent: derived, never trained or saved.
        self.register_buffer("dft", basis.float()[:, None, :], persistent=False)   # (2F, 1, N_FFT)
        mel = WhisperFeatureExtractor(feature_size=n_mels).mel_filters   # (F, n_mels), slaney
        self.register_buffer("mel", torch.from_numpy(mel.T.copy()).float(), persistent=False)  # (n_mels, F)
        self.n_bins = n_bins

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.pad(wav[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")   # (B, 1, S + N_FFT)
        spec = F.conv1d(x, self.dft, stride=HOP_LENGTH)[..., :-1]   # (B, 2F, S // hop); last frame dropped as HF does
        power = spec[:, : self.n_bins] ** 2 + spec[:, self.n_bins:] ** 2   # (B, F, T)
        log_spec = torch.clamp(torch.matmul(self.mel, power), min=LOG_FLOOR).log10()   # (B, n_mels, T)
        peak = log_spec.amax(dim=(1, 2), keepdim=True)                  # (B, 1, 1), per example
        log_spec = torch.maximum(log_spec, peak - DYNAMIC_RANGE)
        return (log_spec + 4.0) / 4.0


def _normalize(wav: torch.Tensor) -> torch.Tensor:
    """Per-example zero mean, unit variance (population variance, as numpy's .var())."""
    mean = wav.mean(dim=1, keepdim=True)
    var = ((wav - mean) ** 2).mean(dim=1, keepdim=True)
    return (wav - mean) / torch.sqrt(var + NORM_EPS)


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


def _encoder_states(encoder: nn.Module, feats: torch.Tensor) -> list[torch.Tensor]:
    """The hidden states WhisperEncoder returns with output_hidden_states, on short input:
    [embeddings, layer 1 .. layer L-1 outputs, layer_norm(layer L output)], each (B, T', D).

    Hooks collect them while ``encode_short`` runs, so the computation stays in one place.
    """
    states: list[torch.Tensor] = []
    handles = [encoder.layers[0].register_forward_pre_hook(lambda m, args: states.append(args[0]))]
    handles += [layer.register_forward_hook(lambda m, args, out: states.append(out)) for layer in encoder.layers]
    try:
        last = encode_short(encoder, feats)
    finally:
        for h in handles:
            h.remove()
    return states[:-1] + [last]


class TeacherModel(nn.Module):
    """Raw waveform (B, S) float32 at 16 kHz -> logits (B, num_labels).

    ``model`` is the transformers ``*ForAudioClassification``; ``normalize`` applies to
    waveform backbones only. Model code does no I/O: see build/save/load_teacher.
    """

    def __init__(self, model: nn.Module, *, normalize: bool = True):
        super().__init__()
        self.model = model
        self.frontend = frontend_kind(model.config)
        self.normalize = bool(normalize)
        self.log_mel = WhisperLogMel(model.config.num_mel_bins) if self.frontend == "whisper" else None
        # (freq_masks, freq_width, time_masks, time_width) on Whisper's log-mel while training;
        # set by the trainer, not saved (wav2vec2-type models mask in their own encoder).
        self.spec_augment: tuple[int, int, int, int] | None = None

    @property
    def config(self):
        return self.model.config

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.ndim != 2:
            raise ValueError(f"expected a waveform batch (batch, samples), got {tuple(wav.shape)}")
        # The front end stays in float32 under autocast: a bf16 DFT or log would be noise.
        with torch.autocast(wav.device.type, enabled=False):
            wav = wav.float()
            if self.frontend == "whisper":
                feats = self.log_mel(wav)                    # (B, n_mels, S // 160)
                if self.training and self.spec_augment:
                    feats = spec_augment(feats, *self.spec_augment)
            else:
                feats = _normalize(wav) if self.normalize else wav   # (B, S)
        if self.frontend == "waveform":
            return self.model(input_values=feats).logits     # (B, C)
        return self._whisper_head(feats)

    def _whisper_head(self, feats: torch.Tensor) -> torch.Tensor:
        """WhisperForAudioClassification.forward on unpadded features: (B, n_mels, T) -> (B, C)."""
        m = self.model
        if m.config.use_weighted_layer_sum:
            states = torch.stack(_encoder_states(m.encoder, feats), dim=1)   # (B, L+1, T', D)
            weights = F.softmax(m.layer_weights, dim=-1)                       # (L+1,)
            hidden = (states * weights.view(-1, 1, 1)).sum(dim=1)             # (B, T', D)
        else:
            hidden = encode_short(m.encoder, feats)                            # (B, T', D)
        pooled = m.projector(hidden).mean(dim=1)                               # (B, P)
        return m.classifier(pooled)                                            # (B, C)

    def freeze_lower(self, n: int) -> None:
        """Keep the encoder's input stage (convolutions, positions) and its lowest `n`
        transformer layers as pretrained: fine-tuning then adapts only the upper layers, and the
        general acoustics below cannot drift toward one corpus's speakers and sentences."""
        if self.frontend == "whisper":
            enc = self.model.encoder
            stem, layers = [enc.conv1, enc.conv2, enc.embed_positions], enc.layers
        else:
            enc = self.model.base_model
            stem, layers = [enc.feature_extractor, enc.feature_projection, enc.encoder.pos_conv_embed], enc.encoder.layers
        if not 0 <= n <= len(layers):
            raise ValueError(f"freeze_layers={n}; the encoder has {len(layers)} layers")
        if n == 0:
            return
        for module in [*stem, *layers[:n]]:
            module.requires_grad_(False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head) trainable parameters: the pretrained encoder, and what the
        classifier adds on top (projector, classifier, layer weights), which gets a
        higher learning rate."""
        backbone = self.model.encoder if self.frontend == "whisper" else self.model.base_model
        in_backbone = {id(p) for p in backbone.parameters()}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return ([p for p in trainable if id(p) in in_backbone],
                [p for p in trainable if id(p) not in in_backbone])


def _label_maps(num_labels: int) -> dict:
    if num_labels != len(LABELS):
        return {"num_labels": num_labels}
    return {"num_labels": num_labels, "id2label": dict(enumerate(LABELS)),
            "label2id": {lab: i for i, lab in enumerate(LABELS)}}


def _backbone_normalizes(backbone: str | Path) -> bool:
    """The backbone's own ``do_normalize`` (wav2vec2-base: True, WavLM-base+: False);
    True when the backbone ships no feature-extractor config."""
    from transformers import AutoFeatureExtractor

    try:
        fe = AutoFeatureExtractor.from_pretrained(str(backbone))
    except (OSError, ValueError):
        return True
    return bool(getattr(fe, "do_normalize", True))


def build_teacher(backbone: str | Path, num_labels: int = len(LABELS), *,
                  freeze_feature_encoder: bool = True, normalize: bool | None = None,
                  layer_sum: bool | None = None) -> TeacherModel:
    """A teacher to fine-tune, from a hub id or a local folder (a converted Whisper included).

    The classifier head is (re)initialised for ``num_labels`` classes named after LABELS.
    ``freeze_feature_encoder`` freezes the convolutional waveform encoder of wav2vec2-type
    backbones (as their fine-tuning recipes do); Whisper has no such stage and ignores it.
    ``normalize=None`` follows the backbone's feature-extractor config (default True).
    ``layer_sum`` classifies a learned softmax-weighted sum of all hidden states instead of
    the last one (``use_weighted_layer_sum``; SUPERB: paralinguistics live in middle layers);
    None keeps the backbone config's setting.
    """
    from transformers import AutoConfig, AutoModelForAudioClassification

    try:
        config = AutoConfig.from_pretrained(str(backbone))
        kind = frontend_kind(config)
        model = AutoModelForAudioClassification.from_pretrained(
            str(backbone), **_label_maps(num_labels), ignore_mismatched_sizes=True,
            **({} if layer_sum is None else {"use_weighted_layer_sum": layer_sum}))
    except OSError as e:
        raise OSError(f"cannot load teacher backbone {str(backbone)!r}: expected a hub id or a folder "
                      f"with config.json and weights ({e})") from e
    if freeze_feature_encoder and kind == "waveform":
        model.freeze_feature_encoder()
    if normalize is None:
        normalize = _backbone_normalizes(backbone) if kind == "waveform" else True
    return TeacherModel(model, normalize=normalize)


def save_teacher(model: TeacherModel, out_dir: str | Path, windowing: Windowing) -> Path:
    """Write ``save_pretrained`` weights + config, preprocessor_config.json and teacher.json,
    which also holds the `window` the teacher is served with (its Windowing)."""
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.model.save_pretrained(out)
    if model.frontend == "whisper":
        fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    else:
        fe = Wav2Vec2FeatureExtractor(do_normalize=model.normalize, return_attention_mask=False)
    fe.save_pretrained(out)   # what a transformers user would feed the checkpoint
    meta = {"format": FORMAT, "frontend": model.frontend, "normalize": model.normalize,
            "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
            "sample_rate": SAMPLE_RATE, "window": windowing.to_json()}
    (out / TEACHER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def teacher_window(path: str | Path) -> Windowing:
    """The windowing a teacher folder written by :func:`save_teacher` is served with."""
    return Windowing.from_json(json.loads((Path(path) / TEACHER_FILE).read_text())["window"])


def checkpoint_sha(folder: Path) -> str:
    """Checksum of a checkpoint folder's weights and JSON files: the key of what is cached from it."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.json")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_teacher(path: str | Path) -> TeacherModel:
    """Rebuild a teacher written by :func:`save_teacher`, in eval mode."""
    from transformers import AutoModelForAudioClassification

    path = Path(path)
    meta_path = path / TEACHER_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found; expected a folder written by save_teacher")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}; expected {FORMAT}")
    model = AutoModelForAudioClassification.from_pretrained(path)
    teacher = TeacherModel(model, normalize=meta["normalize"])
    if teacher.frontend != meta["frontend"]:
        raise ValueError(f"{meta_path}: front end {meta['frontend']!r} but the model is "
                         f"{model.config.model_type!r} ({teacher.frontend!r})")
    return teacher.eval()
