"""The caller's label set: one rule (service.labels) behind /predict, /stream, `ser score` and /v2 infer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.labels import LABELS, LabelSetError, parse_label_set, restrict
from devtools.audio import voice, wav_bytes
from tests.support.client import client_for

FOUR = "angry,happy,neutral,sad"


def test_a_subset_is_taken_in_the_models_order():
    assert parse_label_set(FOUR, LABELS) == ("angry", "happy", "sad", "neutral")
    assert parse_label_set(" sad , angry", LABELS) == ("angry", "sad")
    assert parse_label_set(None, LABELS) is None and parse_label_set("", LABELS) is None


@pytest.mark.parametrize("text, says", [("angry,bogus", "unknown label 'bogus'"), ("angry", "at least 2"),
                                        ("angry,angry", "named twice"), ("Angry,sad", "unknown label 'Angry'")])
def test_a_bad_subset_names_the_valid_labels(text, says):
    with pytest.raises(LabelSetError) as e:
        parse_label_set(text, LABELS)
    assert says in str(e.value) and ", ".join(LABELS) in str(e.value)


def test_restrict_renormalises_over_the_subset():
    p = np.array([[0.1, 0.2, 0.3, 0.1, 0.2, 0.1], [0.5, 0.0, 0.0, 0.25, 0.25, 0.0]])
    got = restrict(p, LABELS, ("angry", "happy"))
    assert got == pytest.approx(np.array([[0.5, 0.5], [2 / 3, 1 / 3]]))
    assert restrict(p, LABELS, None) is p
    assert restrict(np.array([0.0, 1.0, 0, 0, 0, 0]), LABELS, ("angry", "sad")) == pytest.approx([0.5, 0.5])


@pytest.fixture(scope="module")
def client(unsure_student_bundle, teacher_bundle):
    """A student that is always unsure over six labels (it always says angry, at about 0.2)."""
    with client_for(unsure_student_bundle, teacher_bundle) as c:
        yield c


def test_predict_answers_over_exactly_the_labels_asked_for(client):
    r = client.post(f"/predict?model=student&segments=true&labels={FOUR}&top_k=6",
                    files={"file": ("a.wav", wav_bytes(2.0), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body["probabilities"]) == ["angry", "happy", "sad", "neutral"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["label"] in FOUR.split(",") and [t["label"] for t in body["top_k"]][0] == body["label"]
    assert len(body["top_k"]) == 4
    assert all(set(s["probabilities"]) == set(FOUR.split(",")) for s in body["segments"])


def test_the_fallback_is_decided_over_the_labels_asked_for(unsure_student_bundle, teacher_bundle):
    """The student's logits are angry 0.2, disgust 0.1, the others 0: a margin of 0.1 over all six
    labels, 0.2 over angry and fear."""
    wav = wav_bytes(2.0)
    with client_for(unsure_student_bundle, teacher_bundle, fallback_threshold=0.15) as c:
        six = c.post("/predict", files={"file": ("a.wav", wav, "audio/wav")}).json()
        two = c.post("/predict?labels=angry,fear", files={"file": ("a.wav", wav, "audio/wav")}).json()
    assert six["fell_back"] is True and six["model"]["role"] == "teacher"
    assert two["fell_back"] is False and two["model"]["role"] == "student" and two["label"] == "angry"


@pytest.mark.parametrize("path", ["/predict", "/predict/teacher", "/predict/batch"])
def test_an_unknown_label_is_a_422_that_names_the_valid_ones(client, path):
    field = "files" if path.endswith("batch") else "file"
    r = client.post(f"{path}?labels=angry,bogus", files={field: ("a.wav", wav_bytes(1.0), "audio/wav")})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_parameter" and "bogus" in error["message"]
    assert "valid labels: angry, disgust, fear, happy, sad, neutral" in error["message"]


def test_the_document_declares_the_models_labels(client):
    for path in ("/predict", "/predict/teacher", "/predict/batch"):
        [param] = [p for p in client.get("/openapi.json").json()["paths"][path]["post"]["parameters"]
                   if p["name"] == "labels"]
        assert param["style"] == "form" and param["explode"] is False
        assert param["schema"]["items"]["enum"] == list(LABELS) and param["schema"]["minItems"] == 2


def test_the_inference_protocol_takes_labels_as_a_request_parameter(client):
    x = voice(2.0).tolist()
    request = {"parameters": {"labels": FOUR},
               "inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, len(x)], "data": x}]}
    r = client.post("/v2/models/auto/infer", content=json.dumps(request))
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["probabilities"]["shape"] == [1, 4] and sum(out["probabilities"]["data"]) == pytest.approx(1, abs=1e-3)
    assert out["label"]["data"][0] in FOUR.split(",")
    meta = client.get("/v2/models/auto").json()
    assert meta["outputs"][0]["shape"] == [-1, -1] and meta["parameters"]["labels"] == ",".join(LABELS)
    request["parameters"]["labels"] = "angry,bogus"
    r = client.post("/v2/models/auto/infer", content=json.dumps(request))
    assert r.status_code == 400 and "valid labels: angry, disgust" in r.json()["error"]
