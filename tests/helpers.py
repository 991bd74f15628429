"""Factories for tests: generated audio in any format, tiny real ONNX bundles, real clips."""

from __future__ import annotations

import contextlib
import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch

from export.onnx_export import bundle_meta, write_model_bundle
from scripts.hostile_corpus import encode  # noqa: F401  (tests import it from here)
from service.bundle import Bundle
from service.labels import LABELS
from training.student import LiteCNN, LiteCNNConfig, count_parameters

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
RAVDESS_DIR = SHARED_DATA / "ravdess"
RAVDESS_CLIP = RAVDESS_DIR / "Actor_01" / "03-01-05-01-01-01-01.flac"   # angry, normal intensity

TINY_CONFIG = LiteCNNConfig(n_filters=8, filter_len=101, channels=[8, 8], bottleneck=8, hidden=8)


def voice(seconds: float = 1.0, sr: int = 16_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like signal: a gliding harmonic tone with a syllable-rate envelope.
    Returns (N,) for mono, (N, channels) otherwise, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    x = 0.25 * x / np.abs(x).max() + 0.002 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1)


def wav_bytes(seconds: float = 1.0, sr: int = 16_000) -> bytes:
    return encode(voice(seconds, sr), sr, "WAV", "PCM_16")


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
    meta = bundle_meta(name=name or f"tiny-{role}", role=role, window_s=window_s, hop_s=hop_s,
                       trim_silence=True, parameters=count_parameters(model),
                       metrics={"test": {"ua": 0.5}}, license={"weights": "test only"})
    windows = np.stack([voice(window_s, seed=i) for i in range(2)])
    return write_model_bundle(model, folder, meta, f"# {meta['name']}\n", windows, tolerance=1e-4)


def make_manifest_corpus(root: Path, speakers: int = 8, seconds: float = 1.2) -> Path:
    """`speakers` x 6 emotions, one generated clip each, as a generic CSV manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(speakers):
        for i, label in enumerate(LABELS):
            path = root / f"spk{s}_{label}.wav"
            sf.write(path, voice(seconds, seed=s * 10 + i), 16_000)
            rows.append({"path": path.name, "label": label, "speaker": f"spk{s}", "sex": "male" if s % 2 else "female"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "speaker", "sex"])
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(student: Bundle | None, teacher: Bundle | None = None, timeout_s: float = 60,
                   settings: dict[str, str] | None = None, *,
                   ser: tuple[str, ...] = (sys.executable, "-m", "service.cli"), cwd: Path | None = None):
    """`ser serve` in a subprocess on a free 127.0.0.1 port, with more SER_ `settings` if given;
    yields (base url, process) once /readyz answers, and kills the process afterwards. With
    `student` None the service finds its bundles itself (models/ in `cwd`)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SER_")}
    if student is not None:
        env.update(SER_STUDENT_BUNDLE=str(student.path), SER_TEACHER_BUNDLE=str(teacher.path) if teacher else "/nonexistent")
    env.update(settings or {})
    proc = subprocess.Popen([*ser, "serve", "--port", str(port)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{proc.stdout.read()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready in {timeout_s} s")
            time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
