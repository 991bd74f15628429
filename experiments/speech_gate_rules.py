"""How the speech gate's window rule was chosen (docs/speech-gate.md): candidate rules against
the generated non-speech set and the speech of ../shared/data, on the shipped student's windows.

    python -m experiments.speech_gate_rules [--bundle BUNDLE] [--every 1]

Silero's probabilities are read once per window and frame stride (and webrtcvad's decisions
per window and mode); each rule is then scored from them: webrtcvad (a window holds speech when
a share of its 30 ms frames is voiced), "every k" (one look at one frame in k, speech when a
frame passes `prob`) and the shipped two-look rule with its first stride, its thresholds and the
second look's mean varied. Prints the
share of non-speech clips refused, the speech clips flagged per corpus (a clip is flagged when
none of its windows holds speech) and the share of speech windows that need the second look.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import csv
import itertools

import numpy as np

from service import shipped
from service.audio import SAMPLE_RATE, load_audio, window_starts
from service.bundle import load_bundle
from benchmarks.speech_gate import webrtc_shares
from service.speech import SpeechGate
from devtools.data import SHARED_DATA
from devtools.nonspeech import nonspeech_clips

CORPORA = ("ravdess", "nemo", "tess-oaf")
STRIDES = (1, 4, 8, 10, 12, 16)
WEBRTC_MODES = (0, 1, 2, 3)   # webrtcvad's aggressiveness; its rows need `pip install webrtcvad-wheels`


def window_probs(gate: SpeechGate, x: np.ndarray, bundle) -> dict:
    """{stride: [per window: Silero's speech probabilities of its frames]} for one clip, windowed
    as served, and {("webrtcvad", mode): [per window: the share of 30 ms frames it calls speech]}."""
    w = bundle.windowing
    x, win = w.trimmed(x), w.samples
    starts = window_starts(len(x), win, round(w.hop_s * SAMPLE_RATE), w.pad)
    out = {k: [gate.frame_probs(x[s:s + win], k) for s in starts] for k in STRIDES}
    for mode in WEBRTC_MODES if webrtc_shares() else ():
        share = webrtc_shares(mode)
        out["webrtcvad", mode] = [share(x[s:s + win]) for s in starts]
    return out


def one_look(p: np.ndarray, _second, prob: float) -> bool:
    return len(p) > 0 and p.max() >= prob


def two_looks(p: np.ndarray, second: np.ndarray, sure: float, nothing: float, mean: float) -> tuple[bool, bool]:
    """(holds speech, needed the second look)"""
    if not len(p) or p.max() < nothing:
        return False, False
    if p.max() >= sure:
        return True, False
    return bool(second.mean() >= mean), True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=shipped.MODELS_DIR / shipped.STUDENT)
    ap.add_argument("--every", type=int, default=1, help="every n-th clip of each corpus")
    args = ap.parse_args()
    bundle, gate = load_bundle(args.bundle), SpeechGate()
    sets = {"non-speech": [window_probs(gate, load_audio(c.wav), bundle) for c in nonspeech_clips()]}
    for corpus in CORPORA:
        rows = list(csv.DictReader((SHARED_DATA / corpus / "manifest.csv").open()))[::args.every]
        sets[corpus] = [window_probs(gate, load_audio(SHARED_DATA / corpus / r["path"]), bundle) for r in rows]

    def score(name: str, rule) -> None:
        held = {s: [[rule(clip, i) for i in range(len(clip[STRIDES[0]]))] for clip in clips] for s, clips in sets.items()}
        refused = np.mean([not any(h for h, _ in c) for c in held["non-speech"]])
        flagged = {c: np.mean([not any(h for h, _ in clip) for clip in held[c]]) for c in CORPORA}
        second = np.mean([s for c in CORPORA for clip in held[c] for _, s in clip])
        print(f"| {name} | {refused:.1%} | " + " | ".join(f"{flagged[c]:.2%}" for c in CORPORA)
              + f" | {np.mean(list(flagged.values())):.2%} | {second:.1%} |")

    print("| rule | non-speech refused | " + " | ".join(CORPORA) + " | mean flagged | 2nd look |")
    print("|---|---|" + "---|" * len(CORPORA) + "---|---|")
    for mode, share in itertools.product(WEBRTC_MODES if webrtc_shares() else (), (0.1, 0.5, 0.9)):
        score(f"webrtcvad mode {mode}, >= {share:.0%} of 30 ms frames voiced",
              lambda clip, i, mode=mode, share=share: (clip["webrtcvad", mode][i] >= share, False))
    for k, prob in itertools.product((1, 4, 8, 12), (0.3, 0.5)):
        score(f"every {k}, a frame >= {prob}", lambda clip, i, k=k, prob=prob: (one_look(clip[k][i], None, prob), False))
    for k, nothing, mean in itertools.product((10, 12, 16), (0.02, 0.05), (0.07, 0.1)):
        score(f"every {k}, then every 4 if unsure (< {nothing}: none; 2nd look mean >= {mean})",
              lambda clip, i, k=k, nothing=nothing, mean=mean: two_looks(clip[k][i], clip[4][i], 0.5, nothing, mean))


if __name__ == "__main__":
    main()
