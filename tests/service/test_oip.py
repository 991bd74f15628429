"""The Open Inference Protocol (KServe V2) at /v2, called by its own client, `tritonclient.http`,
against `ser serve` with the shipped models: the answers are /predict's for the same audio."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.audio import load_audio
from service.bundle import load_bundle
from service.errors import ERRORS, ApiError, protocol_error_body
from service.fallback import DEFAULT_THRESHOLD
from service.oip import HEADER_LENGTH, parse_infer
from service.settings import Settings
from service.shipped import STUDENT
from devtools.audio import encode, voice, wav_bytes
from tests.support.client import client_for
from devtools.server import running_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef0123"
FUZZ = settings(max_examples=int(os.environ.get("SER_FUZZ_EXAMPLES", "60")), deadline=None)   # as test_fuzz.py


@pytest.fixture(scope="module")
def served():
    """`ser serve` with the shipped student and teacher: (base url, tritonclient)."""
    bundles = [load_bundle(ROOT / "models" / name) for name in (STUDENT, "teacher")]
    with running_server(*bundles) as (base, proc):
        threading.Thread(target=proc.stdout.read, daemon=True).start()   # a full pipe would block the server
        client = triton.InferenceServerClient(base.removeprefix("http://"), network_timeout=120)
        yield base, client
        client.close()


def audio_input(*files: bytes) -> triton.InferInput:
    """Encoded files as a BYTES tensor [B]; tritonclient sends it in binary form."""
    tensor = triton.InferInput("audio", [len(files)], "BYTES")
    tensor.set_data_from_numpy(np.array(files, dtype=object))
    return tensor


def waveform_input(x: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("waveform", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x.astype(np.float32), binary_data=binary)
    return tensor


def outputs(binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "label", "model")]


def text(values) -> list[str]:
    """BYTES outputs come back as bytes in binary form and as str in JSON."""
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def test_server_and_model_health_and_metadata(served):
    base, client = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    labels = ",".join(load_bundle(ROOT / "models" / STUDENT).labels)
    for name in ("student", "teacher", "auto"):
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert meta["name"] == name and meta["parameters"]["labels"] == labels
        assert {(t["name"], t["datatype"]) for t in meta["inputs"]} == {("audio", "BYTES"), ("waveform", "FP32")}
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
            ("probabilities", "FP32", [-1, -1]), ("label", "BYTES", [-1]), ("model", "BYTES", [-1])]
    assert client.get_model_metadata("auto")["parameters"]["fallback_threshold"] == DEFAULT_THRESHOLD
    assert not client.is_model_ready("foo123")


@pytest.mark.parametrize("name", ["student", "teacher", "auto"])
def test_binary_audio_gives_predicts_answer(served, ravdess_clip, name):
    base, client = served
    data = ravdess_clip.read_bytes()
    result = client.infer(name, [audio_input(data)])
    expected = httpx.post(f"{base}/predict?model={name}", content=data, headers={"content-type": "audio/flac"},
                          timeout=120).json()
    assert result.get_response()["model_name"] == name
    assert text(result.as_numpy("label")) == [expected["label"]]
    assert text(result.as_numpy("model")) == [expected["model"]["role"]]
    probs = result.as_numpy("probabilities")
    assert probs.shape == (1, 6) and probs.dtype == np.float32
    labels = client.get_model_metadata(name)["parameters"]["labels"].split(",")
    # /predict rounds to 4 digits
    assert probs[0] == pytest.approx([expected["probabilities"][n] for n in labels], abs=6e-5)


def test_json_and_binary_waveforms_give_the_same_answer(served, ravdess_clip):
    _, client = served
    x = load_audio(ravdess_clip.read_bytes())[None, :]   # (1, N) at 16 kHz
    binary = client.infer("student", [waveform_input(x, True)], outputs=outputs(True))
    as_json = client.infer("student", [waveform_input(x, False)], outputs=outputs(False))
    assert as_json.get_response()["outputs"][0]["data"]   # it really went as JSON both ways
    np.testing.assert_array_equal(binary.as_numpy("probabilities"), as_json.as_numpy("probabilities"))
    assert text(binary.as_numpy("label")) == text(as_json.as_numpy("label"))
    # the decoded file and its samples take the same path from the windows on
    from_file = client.infer("student", [audio_input(ravdess_clip.read_bytes())])
    np.testing.assert_array_equal(binary.as_numpy("probabilities"), from_file.as_numpy("probabilities"))


def test_a_batch_answers_each_row_as_alone(served, ravdess_clip):
    _, client = served
    files = [ravdess_clip.read_bytes(), encode(voice(2.0, seed=3), 16_000, "OGG", "VORBIS"), wav_bytes(1.5)]
    batch = client.infer("student", [audio_input(*files)])
    alone = [client.infer("student", [audio_input(f)]) for f in files]
    assert batch.as_numpy("probabilities").shape == (3, 6)
    np.testing.assert_array_equal(batch.as_numpy("probabilities"), np.concatenate([a.as_numpy("probabilities")
                                                                                    for a in alone]))
    assert text(batch.as_numpy("label")) == [text(a.as_numpy("label"))[0] for a in alone]
    waves = np.stack([voice(1.5, seed=1), voice(1.5, seed=2)])   # (2, N)
    rows = client.infer("student", [waveform_input(waves, True)]).as_numpy("probabilities")
    singles = [client.infer("student", [waveform_input(w[None], True)]).as_numpy("probabilities")[0] for w in waves]
    np.testing.assert_array_equal(rows, np.stack(singles))


@pytest.mark.parametrize("tensor,status,message", [
    (lambda: waveform_input(np.zeros((1, 800), np.float32), True), "400", "audio_too_short: the clip lasts 0.050 s"),
    (lambda: audio_input(b"\x89PNG\r\n\x1a\n" + bytes(100)), "415", "unsupported_audio: could not decode"),
    (lambda: audio_input(wav_bytes(1.0), b""), "400", "empty_audio: row 1: the uploaded file is empty"),
], ids=["too-short", "not-audio", "empty-row"])
def test_a_bad_input_is_a_4xx_the_client_prints(served, tensor, status, message):
    _, client = served
    with pytest.raises(InferenceServerException) as e:
        client.infer("student", [tensor()])
    assert e.value.status() == status and e.value.message().startswith(message), str(e.value)


def test_an_unknown_model_is_refused_and_adds_no_metric_series(served):
    base, client = served
    with pytest.raises(InferenceServerException) as e:
        client.infer("foo123", [audio_input(wav_bytes(1.0))])
    assert e.value.status() == "404" and e.value.message() == f"model_not_found: {ERRORS['model_not_found'].example}"
    for path in ("/v2/models/foo123", "/v2/models/foo123/ready", "/v2/models/foo123/versions/1/infer"):
        r = httpx.get(base + path)
        assert r.status_code == 404 and r.json()["error"].split(":")[0] in ("model_not_found", "not_found")
    metrics = httpx.get(f"{base}/metrics").text
    assert "foo123" not in metrics and 'route="/v2/models/{model_name}/infer"' in metrics
    assert 'ser_predictions_total{label=' in metrics


# In process, with the tiny bundles: the protocol's edges.

@pytest.fixture(scope="module")
def client(student_bundle, teacher_bundle):
    with client_for(student_bundle, teacher_bundle) as c:
        yield c


def infer_json(c: TestClient, name: str, request: dict, **kwargs) -> httpx.Response:
    return c.post(f"/v2/models/{name}/infer", content=json.dumps(request), **kwargs)


def test_json_audio_is_base64(client):
    data = wav_bytes(1.5)
    request = {"id": "r1", "inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1, 1],
                                       "data": [base64.b64encode(data).decode()]}]}
    r = infer_json(client, "teacher", request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "r1" and body["model_name"] == "teacher" and r.headers["content-type"] == "application/json"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["label"]["data"] == ["sad"] and out["probabilities"]["shape"] == [1, 6]
    expected = client.post("/predict/teacher", content=data, headers={"content-type": "audio/wav"}).json()
    assert out["probabilities"]["data"] == pytest.approx(list(expected["probabilities"].values()), abs=6e-5)
    request["inputs"][0]["data"] = ["not base64!"]
    assert infer_json(client, "teacher", request).json()["error"].startswith(
        "invalid_inference_request: input 'audio': element 0 is not base64")


def test_the_declared_example_is_the_real_answer(client):
    request = {"inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, 16000], "data": [0.0, 0.1, 0.2]}]}
    r = infer_json(client, "student", request)
    assert r.status_code == ERRORS["invalid_inference_request"].status
    declared = client.app.openapi()["paths"]["/v2/models/{model_name}/infer"]["post"]["responses"]["400"]
    assert declared["content"]["application/json"]["examples"]["invalid_inference_request"]["value"] == r.json()


def binary(header: dict, blob: bytes, length: int | str | None = None) -> tuple[bytes, dict[str, str]]:
    """A body and headers with the binary-data extension; `length` overrides the true header length."""
    raw = json.dumps(header).encode()
    return raw + blob, {HEADER_LENGTH.lower(): str(len(raw) if length is None else length)}


def plain(header: dict) -> tuple[bytes, dict[str, str]]:
    return json.dumps(header).encode(), {}


WAVE = {"name": "waveform", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}
AUDIO = {"name": "audio", "datatype": "BYTES", "shape": [1]}
ONE_AUDIO = {"inputs": [{**AUDIO, "data": [""]}]}


@pytest.mark.parametrize("request_,message", [
    ((b"", {}), "the body is empty"),
    ((b"\x00\x01", {}), "body: Invalid JSON"),
    (binary({"inputs": [WAVE]}, bytes(16), length=10 ** 6), "Inference-Header-Content-Length is '1000000'"),
    (binary({"inputs": [WAVE]}, bytes(16), length="\u00b2"), "Inference-Header-Content-Length is '\u00b2'"),
    (binary({"inputs": [WAVE]}, bytes(16), length="9" * 5000), "expected the byte length of the JSON header"),
    (binary({"inputs": [WAVE]}, bytes(20)), "4 bytes follow the tensors"),
    (binary({"inputs": [{**WAVE, "parameters": {"binary_data_size": 8}}]}, bytes(8)), "needs 16 bytes"),
    (binary({"inputs": [{**WAVE, "data": [0, 0, 0, 0]}]}, bytes(16)), "has both 'data' and"),
    (binary({"inputs": [{**WAVE, "shape": [17, 1], "parameters": {"binary_data_size": 68}}]}, bytes(68)),
     "has 17 rows; send 1 to 16"),
    (binary({"inputs": [{**AUDIO, "parameters": {"binary_data_size": 40_000}}]}, bytes(40_000)),
     "holds 1 elements but the data has more"),
    (binary({"inputs": [{**AUDIO, "parameters": {"binary_data_size": 6}}]}, b"\x09\x00\x00\x00ab"),
     "element 0 announces 9 bytes but 2 are left"),
    (plain({"inputs": [{**AUDIO, "datatype": "FP32", "data": [1.0]}]}), "is BYTES, got FP32"),
    (plain({"inputs": [{**AUDIO, "shape": [1, 2], "data": ["", ""]}]}), "expected [B] or [B, 1]"),
    (plain({"inputs": [{**WAVE, "parameters": {}, "data": [0, 0, "x", 0]}]}), "not numbers"),
    ((b'{"inputs": [{"name": "waveform", "datatype": "FP32", "shape": [1, 2], "data": [1' + b"0" * 400 + b', 0]}]}',
      {}), "an integer too large for FP32"),
    (plain({"inputs": [WAVE, WAVE]}), "body.inputs: List should have at most 1 item"),
    (plain({"inputs": [{**AUDIO, "shape": ["1"], "data": [""]}]}), "body.inputs.0.shape.0: Input should be a valid integer"),
    (plain({"inputs": [AUDIO]}), "has neither 'data' nor"),
    (plain({**ONE_AUDIO, "outputs": [{"name": "label"}] * 2}), "name an output twice"),
    (plain({**ONE_AUDIO, "parameters": {"binary_data_output": "yes"}}), "parameter 'binary_data_output' is 'yes'"),
])
def test_malformed_requests_name_what_is_wrong(request_, message):
    body, headers = request_
    with pytest.raises(ApiError) as e:
        parse_infer(body, headers, max_rows=16)
    assert e.value.code == "invalid_inference_request" and message in e.value.message, e.value.message


def test_errors_under_v2_take_the_protocol_form(client, student_bundle):
    assert client.get("/v2/nothing").json() == protocol_error_body("not_found", "Not Found")
    r = client.delete("/v2/models/student/infer")
    assert r.status_code == 405 and r.json()["error"].startswith("method_not_allowed: ")
    r = client.post("/v2/models/student/infer", content=bytes(10_000_001))
    assert r.status_code == 413 and r.json()["error"].startswith("upload_too_large: the upload exceeds")
    r = infer_json(client, "student", ONE_AUDIO, headers={"content-encoding": "gzip"})
    assert r.status_code == 415 and r.json()["error"].startswith("unsupported_media_type: Content-Encoding 'gzip'")
    assert client.post("/predict", content=b"").json()["error"]["code"] == "missing_audio"   # REST keeps its form
    with client_for(student_bundle) as student_only:
        for r in (student_only.get("/v2/models/teacher"), student_only.get("/v2/models/teacher/ready")):
            assert r.status_code == 503 and r.json()["error"].startswith("teacher_unavailable: ")
        assert student_only.get("/v2/models/auto").json()["parameters"]["fallback"] == "none"


def test_not_ready_until_loaded(student_bundle):
    c = TestClient(create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None)))   # no lifespan
    assert c.get("/v2/health/live").status_code == 200
    for r in (c.get("/v2/health/ready"), c.get("/v2/models/student/ready")):
        assert r.status_code == 503 and r.json() == protocol_error_body("not_ready", ERRORS["not_ready"].example)


def test_the_api_key_guards_inference_not_the_probes(student_bundle):
    with client_for(student_bundle, api_key=KEY) as c:
        assert c.get("/v2/health/ready").status_code == 200 and c.get("/v2/models/student").status_code == 200
        request = {"inputs": [{**AUDIO, "data": [base64.b64encode(wav_bytes(1.0)).decode()]}]}
        r = infer_json(c, "student", request)
        assert r.status_code == 401 and r.json() == protocol_error_body("unauthorized", ERRORS["unauthorized"].example)
        assert infer_json(c, "student", request, headers={"x-api-key": KEY}).status_code == 200


def test_overload_answers_503_in_the_protocol_form(student_bundle):
    app = create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None, max_concurrency=1, max_queue=0))
    x = voice(30.0)[None, :]   # long enough that requests overlap
    header = json.dumps({"inputs": [{"name": "waveform", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()

    async def run():
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
                return await asyncio.gather(*[c.post("/v2/models/student/infer", content=header + x.tobytes(),
                                                     headers={HEADER_LENGTH: str(len(header))}) for _ in range(6)])

    rs = asyncio.run(run())
    assert sorted({r.status_code for r in rs}) == [200, 503], [r.text for r in rs]
    refused = next(r for r in rs if r.status_code == 503)
    assert refused.json()["error"].startswith("overloaded: ") and refused.headers["retry-after"] == "1"


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


@st.composite
def inference_requests(draw) -> tuple[bytes, dict[str, str]]:
    """Near-valid requests: real field names with drawn shapes, data, sizes and trailing bytes."""
    tensor = {"name": draw(st.sampled_from(["audio", "waveform", "other"])),
              "datatype": draw(st.sampled_from(["BYTES", "FP32", "INT8"])),
              "shape": draw(st.lists(st.integers(-2, 20), max_size=3))}
    if draw(st.booleans()):
        tensor["data"] = draw(st.lists(JSON_VALUES, max_size=6))
    if draw(st.booleans()):
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-1, 64) | JSON_VALUES)}
    request = {"inputs": [tensor], "parameters": draw(st.dictionaries(st.sampled_from(["binary_data_output", "x"]),
                                                                        JSON_VALUES, max_size=2))}
    header = json.dumps(request).encode()
    blob = draw(st.binary(max_size=64))
    length = draw(st.sampled_from([str(len(header)), str(len(header) + 3), "", "x"]) | st.none())
    return header + blob, {} if length is None else {HEADER_LENGTH.lower(): length}


@FUZZ
@given(request_=inference_requests())
def test_any_request_is_parsed_or_refused_with_a_code(request_):
    body, headers = request_
    try:
        req = parse_infer(body, headers, max_rows=16)
    except ApiError as e:
        assert e.code in ("invalid_inference_request", "unsupported_media_type") and e.message
        return
    assert 1 <= len(req.rows) <= 16
