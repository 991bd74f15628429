"""The naive baseline: FastAPI with the student in PyTorch, in-process, as a first version is
often served. No limits, no thread settings (torch picks its own), no queue bound, a plain
blocking `def` endpoint that FastAPI runs in its thread pool; the whole file decoded at once
(libsndfile, soxr) and the service's windowing, so what differs is the serving stack and the
service's bounded, block-by-block decoding (the same samples for the benchmark's 16 kHz WAV).

    python -m benchmarks.naive_server --port 8100 [--bundle models/student]

The network is the shipped ONNX student rebuilt in torch (benchmarks/torch_student.py),
checked against onnxruntime at start-up.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile

from benchmarks.torch_student import load_torch_student
from export.onnx_export import check_parity
from service.audio import windows_for
from service.bundle import MODEL_FILE
from service.labels import LABELS

PARITY_TOLERANCE = 1e-3   # max |logit difference|: the rebuilt network must be the shipped one


def build_app(bundle: Path) -> FastAPI:
    model = load_torch_student(bundle)
    rng = np.random.default_rng(0)
    delta = check_parity(model, bundle / MODEL_FILE, (0.1 * rng.standard_normal((2, 48_000))).astype(np.float32))
    if delta > PARITY_TOLERANCE:
        raise ValueError(f"{bundle}: the torch model differs from {MODEL_FILE} by {delta:.2e} (> {PARITY_TOLERANCE})")
    app = FastAPI()

    @app.post("/predict")
    def predict(file: UploadFile = File(...)):
        x, sr = sf.read(io.BytesIO(file.file.read()), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if sr != 16_000:
            x = soxr.resample(x, sr, 16_000)
        windows, _ = windows_for(x.astype(np.float32), 3.0, 1.0, trim=True)
        with torch.no_grad():
            probs = torch.softmax(model(torch.from_numpy(windows)), dim=-1).mean(0)
        return {"label": LABELS[int(probs.argmax())], "probabilities": dict(zip(LABELS, probs.tolist()))}

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--bundle", type=Path, default=Path("models/student"))
    args = ap.parse_args()
    uvicorn.run(build_app(args.bundle), host="127.0.0.1", port=args.port, log_level="warning")
