"""The corpora beside a checkout (../shared/data), and the one real clip tests and benchmarks use."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
RAVDESS_DIR = SHARED_DATA / "ravdess"
RAVDESS_CLIP = RAVDESS_DIR / "Actor_01" / "03-01-05-01-01-01-01.flac"   # angry, normal intensity
CREMAD_META_DIR = SHARED_DATA / "crema-d-meta"
NEMO_DIR = SHARED_DATA / "nemo"
