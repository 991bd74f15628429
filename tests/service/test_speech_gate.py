"""The speech gate on the shipped student: non-speech is answered "no speech", speech keeps its
label, and windows without speech do not count (docs/speech-gate.md)."""

from __future__ import annotations


import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import shipped
from service.answer import Models
from service.app import create_app
from service.audio import SAMPLE_RATE, load_audio
from service.bundle import load_bundle
from service.inference import OnnxModel
from service.settings import Settings
from service.speech import FRAME, SpeechGate
from devtools.audio import encode
from devtools.nonspeech import nonspeech_clips

SHIPPED_STUDENT = shipped.MODELS_DIR / shipped.STUDENT


@pytest.fixture(scope="module")
def gate():
    return SpeechGate()


@pytest.fixture(scope="module")
def student():
    return OnnxModel(load_bundle(SHIPPED_STUDENT))


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(student_bundle=SHIPPED_STUDENT, teacher_bundle=None))) as c:
        yield c


def three_seconds(kind: str) -> bytes:
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    x = {"silence": np.zeros_like(t), "tone": 0.3 * np.sin(2 * np.pi * 440 * t),
         "noise": 0.1 * np.random.default_rng(1).standard_normal(len(t))}[kind]
    return encode(x.astype(np.float32), SAMPLE_RATE, "WAV", "PCM_16")


def test_the_nonspeech_set_is_fixed_and_covers_what_the_issue_names():
    clips = nonspeech_clips()
    assert [c.wav for c in clips[:5]] == [c.wav for c in nonspeech_clips()[:5]]   # one seed, the same bytes
    names = " ".join(c.name for c in clips)
    for kind in ("silence", "white -20", "pink -40", "tone 100 Hz", "tone 4000 Hz", "DTMF #", "chord"):
        assert kind in names
    assert {c.sample_rate for c in clips} == {16_000, 48_000}
    assert {c.name.split(", ")[1] for c in clips} == {"1 s", "3 s", "10 s"}


@pytest.mark.slow
def test_the_gate_refuses_the_nonspeech_set(student, gate):
    heard = [c.name for c in nonspeech_clips() if not student.predict(load_audio(c.wav), gate=gate).no_speech]
    assert len(heard) <= 0.01 * len(nonspeech_clips()), heard


@pytest.mark.parametrize("kind", ["silence", "tone", "noise"])
def test_predict_answers_no_speech(client, kind):
    r = client.post("/predict?segments=true", files={"file": (f"{kind}.wav", three_seconds(kind), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["no_speech"] is True and body["label"] is None and body["confidence"] is None
    assert body["probabilities"] == {} and body["top_k"] == [] and body["speech_share"] == 0
    assert body["fell_back"] is False and all(s["no_speech"] and s["label"] is None for s in body["segments"])


def test_batch_entries_answer_no_speech_beside_speech(client, ravdess_clip):
    files = [("files", ("quiet.wav", three_seconds("silence"), "audio/wav")),
             ("files", (ravdess_clip.name, ravdess_clip.read_bytes(), "audio/flac"))]
    quiet, talk = [item["result"] for item in client.post("/predict/batch", files=files).json()["results"]]
    assert quiet["no_speech"] is True and quiet["label"] is None and quiet["probabilities"] == {}
    assert talk["no_speech"] is False and talk["label"] and talk["speech_share"] == 1


def test_speech_after_two_seconds_of_silence_keeps_its_label(student, gate, ravdess_clip):
    x = load_audio(ravdess_clip)
    alone = student.predict(x, gate=gate)
    later = student.predict(np.concatenate([np.zeros(2 * SAMPLE_RATE, np.float32), x]), gate=gate)
    assert not alone.no_speech and later.label == alone.label == student.predict(x).label


def test_windows_without_speech_do_not_count(student, gate, ravdess_clip):
    """Speech, 8 s of silence, speech: the windows of silence are answered as such, and the
    clip's answer is the mean of the others."""
    x = load_audio(ravdess_clip)
    p = student.predict(np.concatenate([x, np.zeros(8 * SAMPLE_RATE, np.float32), x]), gate=gate)
    assert not p.no_speech and p.window_speech.any() and not p.window_speech.all()
    assert np.isnan(p.window_probs[~p.window_speech]).all()
    assert list(p.probabilities.values()) == pytest.approx(p.window_probs[p.window_speech].mean(axis=0))
    assert p.speech_share == pytest.approx(p.window_speech.mean())


def test_no_fallback_for_a_clip_without_speech(student, gate):
    """An unsure student would ask the teacher; without speech there is nothing to ask about."""
    models = Models(student, student, fallback_threshold=100.0, gate=gate)   # any margin is below it
    a = models.answer(three_seconds("silence"), "auto", max_duration_s=None)
    assert a.prediction.no_speech and not a.fell_back


def test_the_gate_reads_only_whole_frames_of_real_audio(gate):
    assert gate.holds_speech(np.zeros(FRAME - 1, np.float32)) is False
    assert gate.frame_probs(np.zeros(FRAME * 25, np.float32), 10).shape == (3,)   # frames at 0, 10 and 20


def test_the_inference_protocol_answers_a_clip_without_speech(client):
    body = {"inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, 16_000], "data": [0.0] * 16_000}]}
    r = client.post("/v2/models/student/infer", json=body)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert outputs["label"] == [""] and outputs["probabilities"] == [0.0] * 6
