"""The speech gate: which windows of audio hold speech (docs/speech-gate.md).

Silero VAD v6.2.3 (MIT, service/vad/LICENSE), its "16k sequence" ONNX export, run by
onnxruntime: frames of 32 ms, each with the 4 ms of audio before it, in one call per window,
so no torch and no Python loop per frame. All frames of a 3 s window would cost about 20 times
the student's forward pass; the gate reads every PASS1_STRIDE-th frame and reads more only
where that first look is unsure, which keeps it under the student's cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL = Path(__file__).resolve().parent / "vad" / "silero_vad_16k_sequence.onnx"
FRAME = 512            # Silero's frame at 16 kHz: 32 ms
CONTEXT = 64           # samples before each frame that the model reads with it
# Frames per onnxruntime call: past a few dozen frames a call costs more per frame (93 frames in
# one call: 0.19 ms a frame; 8: 0.064 ms, measured), so longer sequences go in calls of 8.
CALL_FRAMES = 8

# The window rule, chosen on RAVDESS, nEMO and TESS OAF together and on the generated non-speech set
# (docs/speech-gate.md): a first look at one frame in 16 (6 frames of a 3 s window); where it is
# unsure, one frame in 4. Lenient on purpose: a window is refused only when almost nothing in it
# sounds like speech, so that speech from recordings we do not have is not refused. A first look
# at one frame in 10 or 12 scored the same and costs more.
PASS1_STRIDE = 16
SURE_SPEECH = 0.5      # first look: a frame this likely speech -> the window holds speech
SURE_NOTHING = 0.02    # first look: no frame this likely -> it holds none
PASS2_STRIDE = 4
PASS2_MEAN = 0.07      # second look: holds speech when the frames' mean probability reaches this


class SpeechGate:
    """One onnxruntime session of the VAD; `window` is safe to call from several threads."""

    def __init__(self, *, intra_threads: int = 1):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3   # the export carries unused initializers; onnxruntime warns about each
        self.session = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
        self._state = np.zeros((1, 1, 128), np.float32)   # LSTM h and c, fresh per window

    def frame_probs(self, x: np.ndarray, stride: int) -> np.ndarray:
        """(N,) 16 kHz audio -> (F,) speech probabilities of the frames starting every `stride`
        frames (the first at 0), read in order as one sequence."""
        starts = np.arange(0, len(x) - FRAME + 1, stride * FRAME)
        if not len(starts):
            return np.zeros(0, np.float32)
        padded = np.concatenate([np.zeros(CONTEXT, np.float32), x.astype(np.float32, copy=False)])
        frames = padded[starts[:, None] + np.arange(CONTEXT + FRAME)]   # (F, CONTEXT + FRAME)
        h = c = self._state
        parts = []
        for i in range(0, len(frames), CALL_FRAMES):   # the LSTM state runs on from call to call
            p, h, c = self.session.run(None, {"input": frames[i:i + CALL_FRAMES], "h": h, "c": c})
            parts.append(p)
        return np.concatenate(parts)

    def holds_speech(self, x: np.ndarray) -> bool:
        """Whether the (N,) 16 kHz audio of one window holds speech: then it counts in the clip's
        answer. Only real audio: a window's padding is never passed here. Audio shorter than one
        frame holds none."""
        p = self.frame_probs(x, PASS1_STRIDE)
        if not len(p) or p.max() < SURE_NOTHING:
            return False
        if p.max() >= SURE_SPEECH:
            return True
        return bool(self.frame_probs(x, PASS2_STRIDE).mean() >= PASS2_MEAN)

    def warm_up(self) -> None:
        """Both looks once, so the first request does not pay for lazy initialisation."""
        self.frame_probs(np.zeros(FRAME * PASS1_STRIDE, np.float32), PASS1_STRIDE)
        self.frame_probs(np.zeros(FRAME * PASS2_STRIDE, np.float32), PASS2_STRIDE)

