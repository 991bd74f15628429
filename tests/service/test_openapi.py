"""The OpenAPI document is the contract: every error a route really gives is declared there,
with the table's status and a real example, and the declared limits are the enforced ones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import ERRORS, HTTP_CODES, ApiError
from service.routes.predict import AUDIO_TYPES
from service.schemas import EXAMPLES
from service.settings import Settings
from devtools.audio import encode, voice, wav_bytes
from devtools.data import RAVDESS_CLIP
from tests.support.openapi_examples import collect_examples

SERVICE = Path(__file__).resolve().parents[2] / "service"
WAV = wav_bytes(1.0)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)
KEY = "0123456789abcdef0123"


def raw(data: bytes, ctype: str = "audio/wav") -> dict:
    return {"content": data, "headers": {"content-type": ctype}}


def nan_wav() -> bytes:
    x = voice(1.0)
    x[100] = np.nan
    return encode(x, 16_000, "WAV", "FLOAT")


# (route, request, the code it must answer): one real bad request per code that a test can provoke.
BAD_REQUESTS = [
    ("/predict/batch", {"files": [("files", ("a.wav", WAV))] * 17}, "invalid_request"),
    ("/predict", {"files": {"other": ("a.wav", WAV)}}, "missing_audio"),
    ("/predict", {"files": {"file": ("a.wav", b"")}}, "empty_audio"),
    ("/predict", raw(WAV[:200]), "truncated_audio"),
    ("/predict", raw(wav_bytes(0.05)), "audio_too_short"),
    ("/predict", raw(nan_wav()), "invalid_audio"),
    ("/predict", raw(encode(voice(75.0), 16_000, "FLAC"), "audio/flac"), "audio_too_long"),
    ("/predict", raw(bytes(10_000_001)), "upload_too_large"),
    ("/predict", raw(b"hello", "text/plain"), "unsupported_media_type"),
    ("/predict", {"files": {"file": ("a.png", PNG, "image/png")}}, "unsupported_audio"),
    ("/predict?top_k=65", raw(WAV), "invalid_parameter"),
    ("/predict/teacher", raw(WAV), "teacher_unavailable"),
]


@pytest.fixture(scope="module")
def client(student_bundle):
    with TestClient(create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None))) as c:
        yield c


def assert_declared_as_answered(openapi: dict, route: str, r) -> None:
    """The answer's status and code are the table's, the route declares both, and the
    declared example is the very message the service gave."""
    code = r.json()["error"]["code"]
    spec = ERRORS[code]
    assert r.status_code == spec.status, r.text
    declared = openapi["paths"][route.split("?")[0]]
    [operation] = declared.values()
    examples = operation["responses"][str(spec.status)]["content"]["application/json"]["examples"]
    assert examples[code]["value"] == r.json()


@pytest.mark.parametrize("route,request_kwargs,code", BAD_REQUESTS, ids=[c for _, _, c in BAD_REQUESTS])
def test_each_error_is_declared_with_its_real_answer(client, route, request_kwargs, code):
    r = client.post(route, **request_kwargs)
    assert r.json()["error"]["code"] == code, r.text
    assert_declared_as_answered(client.app.openapi(), route, r)


def test_unauthorized_and_not_ready_are_declared(student_bundle):
    app = create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None, api_key=KEY))
    c = TestClient(app)   # not entered: the lifespan has not loaded the models
    for route, r in [("/predict", c.post("/predict", **raw(WAV))), ("/readyz", c.get("/readyz")),
                     ("/predict/batch", c.post("/predict/batch", headers={"x-api-key": KEY},
                                               files=[("files", ("a.wav", WAV))]))]:
        assert r.json()["error"]["code"] == ("unauthorized" if route == "/predict" else "not_ready")
        assert_declared_as_answered(app.openapi(), route, r)


def test_every_code_the_service_raises_is_in_the_table():
    raised = set(HTTP_CODES.values())
    for path in SERVICE.rglob("*.py"):
        raised.update(re.findall(r'(?:Api|Audio)Error\(\s*"(\w+)"', path.read_text()))
    assert len(raised) >= 15   # the scan finds the codes, or this test proves nothing
    assert raised - set(ERRORS) == set(), "raised but missing from service.errors.ERRORS"


def test_an_api_error_takes_its_status_and_fixed_wording_from_the_table():
    e = ApiError("overloaded", headers={"Retry-After": "1"})
    assert (e.status, e.message) == (503, ERRORS["overloaded"].example)
    assert ApiError("missing_audio", "the request body is empty").status == 400
    with pytest.raises(KeyError):
        ApiError("no_such_code")


def test_every_operation_has_a_description_and_a_success_response(client):
    for path, ops in client.app.openapi()["paths"].items():
        for method, op in ops.items():
            assert op.get("description", "").strip(), f"{method.upper()} {path} has no description"
            assert "200" in op["responses"]


@pytest.mark.parametrize("method,path,allowed", [("TRACE", "/readyz", "GET"), ("DELETE", "/predict", "POST")])
def test_405_names_the_allowed_methods(client, method, path, allowed):
    r = client.request(method, path)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == allowed


@pytest.mark.parametrize("max_files", [2, 16])
def test_batch_size_bounds_are_declared_and_enforced(student_bundle, max_files):
    settings = Settings(student_bundle=student_bundle.path, teacher_bundle=None, max_batch_files=max_files)
    with TestClient(create_app(settings)) as c:
        form = c.app.openapi()["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]
        files = form["schema"]["properties"]["files"]
        assert (files["minItems"], files["maxItems"]) == (1, max_files)
        assert c.post("/predict/batch", files=[("files", ("a.wav", WAV))] * max_files).status_code == 200
        over = c.post("/predict/batch", files=[("files", ("a.wav", WAV))] * (max_files + 1))
        assert over.status_code == 400 and over.json()["error"] == {
            "code": "invalid_request", "message": f"more than {max_files} files in one request (SER_MAX_BATCH_FILES)"}
        assert c.post("/predict/batch", data={"note": "no files"}).json()["error"]["code"] == "missing_audio"


def test_declared_audio_media_types_are_accepted(client):
    body = client.app.openapi()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["encoding"]["file"]["contentType"].split(", ") == AUDIO_TYPES
    formats = {"audio/flac": "FLAC", "audio/ogg": "OGG", "audio/mpeg": "MP3"}
    for ctype in AUDIO_TYPES:
        assert ctype in body
        data = encode(voice(1.0), 16_000, formats.get(ctype, "WAV"))
        r = client.post("/predict", **raw(data, ctype))
        assert r.status_code == 200, (ctype, r.text)
        r = client.post("/predict", files={"file": ("clip", data, ctype)})
        assert r.status_code == 200, (ctype, r.text)


def test_response_examples_are_the_shipped_students_real_answer():
    """The examples were written by `python -m tests.support.openapi_examples`; rerun it when
    the shipped student changes."""
    if not RAVDESS_CLIP.is_file():
        pytest.skip(f"real RAVDESS audio not present at {RAVDESS_CLIP}")
    now = collect_examples(RAVDESS_CLIP)
    for got, documented in [(now["predict"], EXAMPLES["predict"]),
                            (now["batch"]["results"][0]["result"], EXAMPLES["batch"]["results"][0]["result"])]:
        assert {k: v for k, v in got.items() if k not in ("probabilities", "top_k", "inference_ms")} == \
            {k: v for k, v in documented.items() if k not in ("probabilities", "top_k", "inference_ms")}
        assert got["probabilities"] == pytest.approx(documented["probabilities"], abs=1e-3)
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in documented["top_k"]]
    assert now["batch"]["results"][1] == EXAMPLES["batch"]["results"][1]   # the PNG's error entry
    assert {k: v for k, v in now["no_speech"].items() if k != "inference_ms"} == \
        {k: v for k, v in EXAMPLES["no_speech"].items() if k != "inference_ms"}
