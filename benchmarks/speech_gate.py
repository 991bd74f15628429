"""The speech gate against its bars (docs/speech-gate.md), through the service's own path.

    python -m benchmarks.speech_gate [--bundle BUNDLE] [--every 1] [--iterations 300]

1. Refusal: the share of the generated non-speech set (devtools/nonspeech.py) answered
   "no speech".
2. Speech: per corpus of ../shared/data (RAVDESS, nEMO, TESS OAF; every `--every`-th clip), the
   clips answered "no speech" and the labels that differ from the ungated answer.
3. Cost: the gate and the student on the same 3 s windows, interleaved in one run, one thread
   each (speech; noise; a hum that the gate must look at twice); with webrtcvad-wheels
   installed, webrtcvad too, and Silero on every frame, the alternatives that were measured.
   And the mean over every window of each set, the gate and the student one after the other.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from service import shipped
from service.audio import SAMPLE_RATE, load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from service.speech import SpeechGate
from devtools.data import RAVDESS_CLIP, SHARED_DATA
from devtools.nonspeech import nonspeech_clips

CORPORA = ("ravdess", "nemo", "tess-oaf")
WINDOW = 3 * SAMPLE_RATE
HUM = "tone 200 Hz, 3 s, 16 kHz"   # a window of the non-speech set that needs the gate's second look


class WindowCost:
    """The gate and the student timed on every window of real clips, one after the other."""

    def __init__(self, model: OnnxModel, gate: SpeechGate):
        self.model, self.gate, self.gate_s, self.student_s, self.windows = model, gate, 0.0, 0.0, 0

    def add(self, x: np.ndarray) -> None:
        end = self.model.bundle.windowing.bounds(x)[1]
        windows, starts = self.model.windows(x)
        for w, s in zip(windows, np.round(starts * SAMPLE_RATE).astype(int)):
            t0 = time.perf_counter()
            self.gate.holds_speech(x[s:min(s + len(w), end)])
            t1 = time.perf_counter()
            self.model.logits(w[None])
            self.gate_s, self.student_s = self.gate_s + t1 - t0, self.student_s + time.perf_counter() - t1
        self.windows += len(windows)

    def summary(self) -> dict:
        return {"windows": self.windows, "gate_ms": round(1000 * self.gate_s / self.windows, 3),
                "student_ms": round(1000 * self.student_s / self.windows, 3),
                "x_student": round(self.gate_s / self.student_s, 2)}


def refusal(model: OnnxModel, gate: SpeechGate) -> dict:
    answers, cost = [], WindowCost(model, gate)
    for c in nonspeech_clips():
        x = load_audio(c.wav)
        answers.append((c.name, model.predict(x, gate=gate)))
        cost.add(x)
    heard = [name for name, p in answers if not p.no_speech]
    return {"clips": len(answers), "refused": round(1 - len(heard) / len(answers), 4), "heard_as_speech": heard,
            "mean_cost_per_window": cost.summary()}


def speech(model: OnnxModel, gate: SpeechGate, every: int) -> dict:
    out = {}
    for corpus in CORPORA:
        manifest = SHARED_DATA / corpus / "manifest.csv"
        if not manifest.is_file():
            continue
        rows = list(csv.DictReader(manifest.open()))[::every]
        flagged, changed, cost = [], [], WindowCost(model, gate)
        for r in rows:
            x = load_audio(SHARED_DATA / corpus / r["path"])
            gated, plain = model.predict(x, gate=gate), model.predict(x)
            cost.add(x)
            if gated.no_speech:
                flagged.append(r["path"])
            elif gated.label != plain.label:
                changed.append(r["path"])
        out[corpus] = {"clips": len(rows), "flagged": round(len(flagged) / len(rows), 4),
                       "label_changed": round(len(changed) / len(rows), 4), "flagged_clips": flagged,
                       "mean_cost_per_window": cost.summary()}
    return out


def webrtc_shares(mode: int = 3):
    """webrtcvad's share of 30 ms frames that it calls speech, as a function of (N,) 16 kHz
    audio; None when webrtcvad-wheels is not installed."""
    try:
        import webrtcvad
    except ImportError:
        return None
    frame = 480 * 2   # 30 ms of 16-bit samples

    def share(x: np.ndarray) -> float:
        vad, pcm = webrtcvad.Vad(mode), (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
        return float(np.mean([vad.is_speech(pcm[i:i + frame], SAMPLE_RATE) for i in range(0, len(pcm) - frame + 1, frame)]))
    return share


def cost(model: OnnxModel, gate: SpeechGate, iterations: int) -> list[dict]:
    """Median ms per 3 s window, every contender on the same window in rotating order."""
    talk = np.resize(load_audio(RAVDESS_CLIP)[SAMPLE_RATE // 2:], WINDOW).astype(np.float32)
    noise = (0.03 * np.random.default_rng(0).standard_normal(WINDOW)).astype(np.float32)
    hum = load_audio(next(c.wav for c in nonspeech_clips() if c.name == HUM))   # its first look is unsure
    runs = {"student (forward pass)": lambda x: model.logits(x[None]), "gate (as shipped)": gate.holds_speech,
            "Silero, every frame": lambda x: gate.frame_probs(x, 1)}
    if (webrtc := webrtc_shares()) is not None:
        runs["webrtcvad (mode 3)"] = webrtc
    rows = []
    for name, x in (("speech", talk), ("-30 dBFS white noise", noise), (HUM, hum)):
        times = {k: [] for k in runs}
        for f in runs.values():
            for _ in range(10):
                f(x)   # warm-up
        for it in range(iterations):
            for k in range(len(runs)):
                key = list(runs)[(it + k) % len(runs)]
                t0 = time.perf_counter()
                runs[key](x)
                times[key].append(time.perf_counter() - t0)
        base = np.median(times["student (forward pass)"])
        rows += [{"window": name, "run": k, "median_ms": round(float(np.median(t)) * 1000, 3),
                  "x_student": round(float(np.median(t) / base), 2)} for k, t in times.items()]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=shipped.MODELS_DIR / shipped.STUDENT)
    ap.add_argument("--every", type=int, default=1, help="every n-th clip of each corpus")
    ap.add_argument("--iterations", type=int, default=300)
    args = ap.parse_args()
    model, gate = OnnxModel(load_bundle(args.bundle)), SpeechGate()
    report = {"cost": cost(model, gate, args.iterations), "nonspeech": refusal(model, gate),
              "speech": speech(model, gate, args.every)}
    print("| window | run | median ms | x student |\n|---|---|---|---|")
    for r in report["cost"]:
        print(f"| {r['window']} | {r['run']} | {r['median_ms']} | {r['x_student']} |")
    ns = report["nonspeech"]
    print(f"\nnon-speech: {ns['refused']:.1%} of {ns['clips']} clips refused; heard as speech: {ns['heard_as_speech']}")
    print("\n| set | clips | flagged no speech | label changed | windows | gate ms / window | student ms / window | x student |"
          "\n|---|---|---|---|---|---|---|---|")
    for c, r in [*report["speech"].items(), ("non-speech", {**ns, "flagged": ns["refused"], "label_changed": 0})]:
        m = r["mean_cost_per_window"]
        print(f"| {c} | {r['clips']} | {r['flagged']:.2%} | {r['label_changed']:.2%} | {m['windows']} | "
              f"{m['gate_ms']} | {m['student_ms']} | {m['x_student']} |")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
