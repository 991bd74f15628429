"""The HTTP API in-process, on real ONNX bundles built by the tests."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import soundfile as sf

from service.app import create_app
from service.settings import Settings
from devtools.audio import encode, voice, wav_bytes
from tests.support.client import client_for


@pytest.fixture(scope="module")
def client(student_bundle, teacher_bundle):
    with client_for(student_bundle, teacher_bundle) as c:
        yield c


def assert_error(r, status: int, code: str):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


def test_predict_multipart(client, student_bundle):
    r = client.post("/predict?model=student", files={"file": ("a.wav", wav_bytes(1.5), "audio/wav")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in student_bundle.labels
    assert set(body["probabilities"]) == set(student_bundle.labels)
    # rounded to 4 digits, as `ser predict` prints them: six roundings move the sum by < 3e-4
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=3e-4)
    numbers = [body["confidence"], *body["probabilities"].values(), *(s["probability"] for s in body["top_k"])]
    assert all(round(v, 4) == v for v in numbers), numbers
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
    assert body["model"] == {"name": "tiny-student", "version": "0.1.0", "role": "student", "precision": "float32"}
    assert body["duration_s"] == pytest.approx(1.5, abs=0.01)
    assert len(body["top_k"]) == 3 and body["top_k"][0]["label"] == body["label"]
    assert r.headers["x-request-id"]


def test_predict_raw_body_real_clip(client, ravdess_clip):
    r = client.post("/predict", content=ravdess_clip.read_bytes(), headers={"content-type": "audio/flac"})
    assert r.status_code == 200, r.text
    assert r.json()["duration_s"] == pytest.approx(sf.info(ravdess_clip).duration, abs=0.001)


def test_segments_cover_long_audio(client):
    r = client.post("/predict?model=student&segments=true&top_k=6",
                    files={"file": ("a.wav", wav_bytes(4.0), "audio/wav")})
    body = r.json()
    assert len(body["top_k"]) == 6
    segs = body["segments"]
    assert len(segs) >= 6 and segs[0]["start_s"] < segs[-1]["start_s"] and segs[-1]["end_s"] <= 4.0 + 1e-6


def test_teacher_route_and_auto_without_fallback(client):
    r = client.post("/predict/teacher", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert r.json()["model"]["role"] == "teacher" and r.json()["label"] == "sad"


def test_auto_falls_back_to_the_teacher_when_the_student_is_unsure(unsure_student_bundle, teacher_bundle):
    with client_for(unsure_student_bundle, teacher_bundle, fallback_threshold=0.5) as c:
        body = c.post("/predict", files={"file": ("a.wav", wav_bytes(), "audio/wav")}).json()
        assert body["fell_back"] is True and body["model"]["role"] == "teacher" and body["label"] == "sad"
        body = c.post("/predict?model=student", files={"file": ("a.wav", wav_bytes(), "audio/wav")}).json()
        assert body["fell_back"] is False and body["model"]["role"] == "student"
        assert "ser_fallbacks_total 1.0" in c.get("/metrics").text


def test_student_only_service(student_bundle):
    with client_for(student_bundle) as c:
        assert_error(c.post("/predict/teacher", files={"file": ("a.wav", wav_bytes(), "audio/wav")}),
                     503, "teacher_unavailable")
        r = c.post("/predict", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
        assert r.status_code == 200 and r.json()["fell_back"] is False


def test_batch_mixes_good_and_bad_files(client):
    files = [("files", ("good.wav", wav_bytes(), "audio/wav")),
             ("files", ("bad.txt", b"not audio at all" * 20, "text/plain")),
             ("files", ("short.wav", wav_bytes(0.05), "audio/wav"))]
    r = client.post("/predict/batch?model=student", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["good.wav", "bad.txt", "short.wav"]
    assert results[0]["result"]["label"] and results[0]["error"] is None
    assert results[1]["error"]["code"] == "unsupported_audio"
    assert results[2]["error"]["code"] == "audio_too_short"


def test_batch_takes_file_fields_too(client):
    """`file`, the field /predict takes, works for a batch as well, mixed with `files` in form order."""
    files = [("file", ("a.wav", wav_bytes(), "audio/wav")), ("files", ("b.wav", wav_bytes(), "audio/wav")),
             ("file", ("c.wav", wav_bytes(), "audio/wav"))]
    r = client.post("/predict/batch?model=student", files=files)
    assert r.status_code == 200, r.text
    assert [x["filename"] for x in r.json()["results"]] == ["a.wav", "b.wav", "c.wav"]
    r = client.post("/predict/batch", data={"x": "1"}, files=[("other", ("a.wav", wav_bytes(), "audio/wav"))])
    assert_error(r, 400, "missing_audio")
    assert "'files' or 'file'" in r.json()["error"]["message"]


def test_models_listing(client, student_bundle, teacher_bundle):
    models = client.get("/v1/models").json()
    assert [m["role"] for m in models] == ["student", "teacher"]
    assert models[0]["sha256"] == student_bundle.sha256 and models[0]["labels"] == list(student_bundle.labels)
    assert models[0]["metrics"] == {"test": {"ua": 0.5}}


def test_health_ready_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_the_service(client, page):
    """No CDN: every script, stylesheet and icon the page names is served by the service itself."""
    html = client.get(page).text
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html)
    assert assets and all(a.startswith("/") for a in assets), assets
    assert "http" not in html.replace("http-equiv", "")   # nor a URL built in a script
    for a in assets:
        r = client.get(a)
        assert r.status_code == 200 and len(r.content) > 1000, a


BAD_INPUTS = [
    ("no body", dict(), 400, "missing_audio"),
    ("form without file", dict(data={"x": "1"}), 400, "missing_audio"),
    ("empty file", dict(files={"file": ("a.wav", b"", "audio/wav")}), 400, "empty_audio"),
    ("text", dict(files={"file": ("a.txt", b"hello world" * 50, "text/plain")}), 415, "unsupported_audio"),
    ("truncated", dict(files={"file": ("a.wav", wav_bytes(1.0)[:9000], "audio/wav")}), 400, "truncated_audio"),
    ("too short", dict(files={"file": ("a.wav", wav_bytes(0.05), "audio/wav")}), 400, "audio_too_short"),
    ("too long", dict(files={"file": ("a.flac", encode(voice(61.0, 8000), 8000, "FLAC"), "audio/flac")}),
     413, "audio_too_long"),
    ("json body", dict(content=b"{}", headers={"content-type": "application/json"}), 415, "unsupported_media_type"),
    ("empty raw", dict(content=b"", headers={"content-type": "audio/wav"}), 400, "missing_audio"),
]


@pytest.mark.parametrize("name,kw,status,code", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_json_error_and_the_service_keeps_answering(client, name, kw, status, code):
    assert_error(client.post("/predict", **kw), status, code)
    assert client.post("/predict", files={"file": ("a.wav", wav_bytes(), "audio/wav")}).status_code == 200


@pytest.mark.parametrize("path,params,status,code", [
    ("/predict", "?model=nope", 422, "invalid_parameter"),
    ("/predict", "?top_k=0", 422, "invalid_parameter"),
    ("/nowhere", "", 404, "not_found"),
])
def test_bad_requests(client, path, params, status, code):
    assert_error(client.post(path + params, files={"file": ("a.wav", wav_bytes(), "audio/wav")}), status, code)


def test_method_not_allowed(client):
    assert_error(client.get("/predict"), 405, "method_not_allowed")


def test_upload_limit_by_content_length(student_bundle):
    with client_for(student_bundle, max_upload_bytes=20_000) as c:
        assert_error(c.post("/predict", files={"file": ("a.wav", wav_bytes(2.0), "audio/wav")}), 413, "upload_too_large")
        assert c.post("/predict", files={"file": ("a.wav", wav_bytes(0.5), "audio/wav")}).status_code == 200


def test_upload_limit_holds_against_a_lying_client(student_bundle):
    """A client that announces a small Content-Length and then streams more is cut off at the limit."""
    app = create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None, max_upload_bytes=20_000))
    chunks = [b"\0" * 8_000] * 10   # 80 kB in all, far over the limit
    received = []

    async def receive():
        chunk = chunks.pop(0)
        received.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
             "headers": [(b"content-type", b"audio/wav"), (b"content-length", b"100")], "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": "", "app": app}

    async def run():
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert start["status"] == 413 and body["error"]["code"] == "upload_too_large"
    assert sum(received) <= 20_000 + 8_000   # stopped within one chunk of the limit


def test_api_key(student_bundle):
    key = "k" * 32
    with client_for(student_bundle, api_key=key) as c:
        files = {"file": ("a.wav", wav_bytes(), "audio/wav")}
        assert_error(c.post("/predict", files=files), 401, "unauthorized")
        assert_error(c.post("/predict", files=files, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert c.post("/predict", files=files, headers={"X-API-Key": key}).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(open_path).status_code == 200


def test_metrics_count_requests(student_bundle):
    with client_for(student_bundle) as c:
        c.post("/predict", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
        c.post("/predict", files={"file": ("a.wav", b"", "audio/wav")})
        text = c.get("/metrics").text
    assert 'ser_request_duration_seconds_count{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'ser_errors_total{code="empty_audio"} 1.0' in text
    assert 'ser_inference_duration_seconds_count{model="student"} 1.0' in text
    assert 'ser_predictions_total{label=' in text and 'ser_audio_duration_seconds_count 1.0' in text
    assert 'ser_model_info{name="tiny-student"' in text and "ser_requests_in_flight" in text
    assert "_created" not in text   # one creation-time series per metric is noise unless asked for


def test_overload_answers_503_with_retry_after(student_bundle):
    """With one inference slot and no queue, concurrent requests beyond capacity are refused at once."""
    app = create_app(Settings(student_bundle=student_bundle.path, teacher_bundle=None, max_concurrency=1, max_queue=0))
    import httpx

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                data = wav_bytes(30.0)   # long enough that requests overlap
                rs = await asyncio.gather(*[c.post("/predict", content=data, headers={"content-type": "audio/wav"})
                                            for _ in range(6)])
        return rs

    rs = asyncio.run(run())
    codes = sorted(r.status_code for r in rs)
    assert 200 in codes and 503 in codes, codes
    refused = next(r for r in rs if r.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "1"
