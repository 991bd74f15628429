"""Evaluate a bundle (through the service's own front end) or a checkpoint on a split.

Writes metrics.json, report.md and confusion.png into an output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.audio import Windowing, load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from service.labels import LABELS
from service.speech import SpeechGate
from training.config import CPU_THREADS
from training.metrics import NO_ANSWER, classification_report, expected_calibration_error
from training.records import Utterance


def bundle_probs(bundle_dir: str | Path, records: list[Utterance], *, threads: int = CPU_THREADS,
                 speech_gate: bool = True) -> np.ndarray:
    """(N, C) calibrated utterance probabilities from the ONNX bundle, exactly as served: behind
    the speech gate, so a clip answered "no speech" is a row of NaN (an error in the report)."""
    model = OnnxModel(load_bundle(bundle_dir), intra_threads=threads)
    if tuple(model.bundle.labels) != LABELS:
        raise ValueError(f"bundle labels {model.bundle.labels} differ from the project's {LABELS}")
    gate = SpeechGate(intra_threads=threads) if speech_gate else None
    probs = [_row(model.predict(load_audio(r.path), gate=gate))
             for r in tqdm(records, desc=f"evaluate {model.bundle.name}", unit="clip", leave=False)]
    return np.asarray(probs)


def _row(p) -> list[float]:
    return [np.nan] * len(p.labels) if p.no_speech else list(p.probabilities.values())


def predict_probs(model, clips: list[np.ndarray], windowing: Windowing, *, device="cpu",
                  batch_size: int = 32) -> np.ndarray:
    """(N, C) utterance probabilities of a torch model as served: windowing.windows -> softmax ->
    mean per clip. Windows of several clips share a batch (float32, no autocast: the exported
    graph is float32 too). torch is imported here so bundle evaluation stays torch-free."""
    import torch

    model.eval()
    windows, owner = [], []
    for i, x in enumerate(clips):
        w, _ = windowing.windows(x)   # (W, S)
        windows.append(w)
        owner += [i] * len(w)
    windows, owner = np.concatenate(windows), np.asarray(owner)
    with torch.no_grad():
        probs = np.concatenate([
            torch.softmax(model(torch.from_numpy(windows[s:s + batch_size]).to(device)).float(), dim=1).cpu().numpy()
            for s in range(0, len(windows), batch_size)])   # (sum W, C)
    out = np.zeros((len(clips), probs.shape[1]))
    np.add.at(out, owner, probs)
    return (out / np.bincount(owner, minlength=len(clips))[:, None]).astype(np.float32)


def report_from_probs(probs: np.ndarray, records: list[Utterance]) -> dict:
    """The report of (N, C) probabilities; a NaN row (a speech clip answered "no speech") is an error."""
    y = np.array([LABELS.index(r.label) for r in records])
    flagged = np.isnan(probs).any(axis=1)
    rep = classification_report(y, np.where(flagged, NO_ANSWER, np.nan_to_num(probs).argmax(axis=1)), LABELS)
    rep["ece"] = expected_calibration_error(probs, y)
    return rep


def write_report(rep: dict, out_dir: str | Path, title: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(rep, indent=2))
    (out / "report.md").write_text(markdown_report(rep, title))
    plot_confusion(rep, out / "confusion.png", title)


def markdown_report(rep: dict, title: str) -> str:
    labels = rep["labels"]
    lines = [f"# {title}", "", f"{rep['n']} clips. accuracy {rep['accuracy']:.3f} · UA {rep['ua']:.3f} · "
             f"macro-F1 {rep['macro_f1']:.3f}" + (f" · ECE {rep['ece']:.3f}" if "ece" in rep else "")
             + (f" · {rep['no_speech']} answered \"no speech\" (counted as errors)" if rep.get("no_speech") else ""), "",
             "| true \\ predicted | " + " | ".join(labels) + " | recall |",
             "|---" * (len(labels) + 2) + "|"]
    for lab, row in zip(labels, rep["confusion"]):
        lines.append(f"| {lab} | " + " | ".join(map(str, row)) + f" | {rep['per_class_recall'][lab]:.2f} |")
    return "\n".join(lines) + "\n"


def plot_confusion(rep: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(rep["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    labels = rep["labels"]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nUA {rep['ua']:.3f}, accuracy {rep['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
