"""The converted Whisper encoder checked against CTranslate2: Whisper's log-mel on a clip and
the bare ``WhisperEncoder`` of a converted checkpoint (tests only; the product runs the
teacher's own front end, training.teacher)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.audio import SAMPLE_RATE


def log_mel(audio: np.ndarray, n_mels: int = 80, pad_to_30s: bool = True) -> np.ndarray:
    """Whisper log-mel features, shape (1, n_mels, frames), float32.

    ``audio`` is 16 kHz mono float32. With ``pad_to_30s`` the clip is zero-padded (or
    truncated) to 3000 frames as both CTranslate2 and ``WhisperEncoder.forward`` require;
    without it the frame count follows the clip (for ``training.teacher.encode_short``).
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


def load_encoder(hf_dir: str | Path) -> nn.Module:
    """The ``WhisperEncoder`` of a converted checkpoint, in eval mode.

    Reads ``model.safetensors`` directly, so no decoder is built and no load report about
    unused decoder weights is printed. Strict: every encoder weight must be present.
    """
    from safetensors.torch import load_file
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    hf_dir = Path(hf_dir)
    config = WhisperConfig.from_pretrained(hf_dir)
    state = {k[len("encoder."):]: t for k, t in load_file(hf_dir / "model.safetensors").items()
             if k.startswith("encoder.")}
    with torch.device("meta"):
        encoder = WhisperEncoder(config)
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval()
