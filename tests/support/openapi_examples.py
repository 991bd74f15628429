"""Write the OpenAPI document's response examples from a real clip and the shipped models.

    .venv/bin/python -m tests.support.openapi_examples [clip.flac]

The service's answers to one real RAVDESS clip (angry, actor 01), alone and in a batch beside
a PNG, and to 3 s of silence, become `service/static/openapi-examples.json`;
tests/service/test_openapi.py checks that they still match what the shipped student answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from devtools.audio import silence_file
from devtools.data import RAVDESS_CLIP

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "service" / "static" / "openapi-examples.json"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)   # a file that is not audio


def collect_examples(clip: Path) -> dict:
    """The service's real answers: /predict?top_k=3 and /predict/batch with the clip and a PNG,
    and /predict with 3 s of silence."""
    audio = clip.read_bytes()
    settings = Settings(intra_op_threads=1, inter_op_threads=1, allowed_hosts=["testserver"])   # TestClient's Host
    with TestClient(create_app(settings)) as c:
        one = c.post("/predict", files={"file": (clip.name, audio, "audio/flac")})
        batch = c.post("/predict/batch", files=[("files", (clip.name, audio, "audio/flac")),
                                                ("files", ("cover.png", PNG, "image/png"))])
        silent = c.post("/predict", files={"file": ("silence.wav", silence_file(3, 16_000, 1, "WAV"), "audio/wav")})
    for r in (one, batch, silent):
        r.raise_for_status()
    return {"clip": clip.name, "predict": one.json(), "batch": batch.json(), "no_speech": silent.json()}


if __name__ == "__main__":
    clip = Path(sys.argv[1]) if len(sys.argv) > 1 else RAVDESS_CLIP
    OUT.write_text(json.dumps(collect_examples(clip), indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} from {clip.name}")
