"""Where one file's CPU time goes in `ser score` (one process, one thread, no HTTP): decoding and
resampling, the speech gate, the student (float32 and int8), on 200 RAVDESS clips (48 kHz FLAC,
about 3.7 s). Best of 3 passes, CPU ms per file.

    python -m benchmarks.file_cost
"""

from __future__ import annotations

import numpy as np

from devtools.data import RAVDESS_DIR
from devtools.process import cpu_s
from service.audio import load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from service.shipped import MODELS_DIR
from service.speech import SpeechGate


def per_file_ms(fn, n_files: int, passes: int = 3) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = cpu_s()
        fn()
        best = min(best, cpu_s() - t0)
    return round(1000 * best / n_files, 3)


def main() -> None:
    files = sorted(RAVDESS_DIR.glob("Actor_0[1-4]/*.flac"))[:200]
    if not files:
        raise SystemExit(f"no RAVDESS clips under {RAVDESS_DIR}")
    raw = [f.read_bytes() for f in files]
    audio = [load_audio(r) for r in raw]
    student = OnnxModel(load_bundle(MODELS_DIR / "student"), intra_threads=1)
    int8 = OnnxModel(load_bundle(MODELS_DIR / "student-int8"), intra_threads=1)
    gate = SpeechGate(intra_threads=1)
    n = len(files)
    print(f"{n} files, {np.mean([len(a) for a in audio]) / 16_000:.2f} s each on average; CPU ms per file:")
    print("| step | ms |\n|---|---|")
    print(f"| decode + resample to 16 kHz | {per_file_ms(lambda: [load_audio(r) for r in raw], n)} |")
    print(f"| student float32, no gate | {per_file_ms(lambda: [student.predict(a) for a in audio], n)} |")
    print(f"| student int8, no gate | {per_file_ms(lambda: [int8.predict(a) for a in audio], n)} |")
    print(f"| student float32 behind the speech gate (served) | "
          f"{per_file_ms(lambda: [student.predict(a, gate=gate) for a in audio], n)} |")


if __name__ == "__main__":
    main()
